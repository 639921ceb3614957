import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http'
import type { Readable } from 'node:stream'

/** What a body is written to: a client's response, a cache file, anything with these methods. */
export interface BodyDestination {
  write (chunk: Buffer, callback: (err?: Error | null) => void): boolean
  end (): unknown
  on (event: 'drain' | 'close', listener: () => void): unknown
  off (event: 'drain' | 'close', listener: () => void): unknown
  readonly writableFinished: boolean
}

/** A response body, readable once, in one of three ways. */
export interface ResponseBody {
  /**
   * Writes the body into `destination` with backpressure and ends it. Rejects when the sender
   * fails mid-body, or with code ECLIENTGONE when the destination closes first.
   */
  pipeTo: (destination: BodyDestination) => Promise<void>
  /** The body as a stream. */
  stream: () => Readable
  /** Drops the body (the connection is reused when it can be). */
  discard: () => void
}

export interface TransportResponse {
  statusCode: number
  headers: IncomingHttpHeaders
  body: ResponseBody
  /** The body arrives in pooled read buffers: pipeTo is the cheap way to pass it on. */
  pooled: boolean
}

export interface TransportRequest {
  /** scheme://host[:port] */
  origin: string
  method: string
  /** Path and query, as sent. */
  path: string
  headers: OutgoingHttpHeaders
  /** A request body streamed as it arrives; undefined: none. */
  body?: Readable | undefined
}

/** One way of sending a request; failures reject with the transport's own error codes. */
export interface Transport {
  request: (request: TransportRequest) => Promise<TransportResponse>
}
