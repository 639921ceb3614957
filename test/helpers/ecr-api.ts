import { randomUUID } from 'node:crypto'
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import { closeServer, listen } from './listen.js'
import type { TokenAuthority } from './token-authority.js'

export type EcrApiFailure = 'AccessDeniedException' | 'ThrottlingException' | 'ServerException' | 'UnrecognizedClientException'

export interface EcrApiCall { target: string, headers: IncomingHttpHeaders, body: unknown, /** From the SigV4 credential scope. */ region?: string }

export interface EcrApi {
  url: string
  authority: TokenAuthority
  calls: EcrApiCall[]
  failNext (failure: EcrApiFailure, times?: number): void
  setDown (down: boolean): void
  close (): Promise<void>
}

export interface EcrApiOptions {
  authority: TokenAuthority
  proxyEndpoint: string | (() => string)
  /**
   * Per region (read from the SigV4 credential scope, as AWS does): its own token authority and
   * proxyEndpoint, so a token of one region is refused by the registries of another.
   */
  regions?: Record<string, { authority: TokenAuthority, proxyEndpoint: string }>
  host?: string
  port?: number
}

const TARGET_PREFIX = 'AmazonEC2ContainerRegistry_V20150921.'
const GET_AUTHORIZATION_TOKEN = `${TARGET_PREFIX}GetAuthorizationToken`
const JSON_1_1 = 'application/x-amz-json-1.1'
const SIGV4_HEADER = /^AWS4-HMAC-SHA256 Credential=([^/\s]+)\/(\d{8})\/([a-z0-9-]+)\/([a-z0-9-]+)\/aws4_request, ?SignedHeaders=([a-z0-9;-]+), ?Signature=([a-f0-9]{64})$/

interface AwsError { status: number, type: string, message: string }

const FAILURES: Record<EcrApiFailure, AwsError> = {
  AccessDeniedException: {
    status: 400,
    type: 'AccessDeniedException',
    message: 'User: arn:aws:iam::600423610423:user/dev is not authorized to perform: ecr:GetAuthorizationToken on resource: * because no identity-based policy allows the ecr:GetAuthorizationToken action',
  },
  ThrottlingException: { status: 400, type: 'ThrottlingException', message: 'Rate exceeded' },
  ServerException: { status: 500, type: 'ServerException', message: 'We encountered an internal error. Please try again.' },
  UnrecognizedClientException: { status: 400, type: 'UnrecognizedClientException', message: 'The security token included in the request is invalid.' },
}

function sendJson (res: ServerResponse, status: number, payload: unknown, extra: Record<string, string> = {}): void {
  const body = JSON.stringify(payload)
  res.writeHead(status, {
    'content-type': JSON_1_1,
    'content-length': Buffer.byteLength(body),
    'x-amzn-requestid': randomUUID(),
    ...extra,
  })
  res.end(body)
}

function sendAwsError (res: ServerResponse, error: AwsError): void {
  sendJson(res, error.status, { __type: error.type, message: error.message }, { 'x-amzn-errortype': error.type })
}

async function readBody (req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = []
  for await (const chunk of req) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks).toString('utf8')
}

/** The SigV4 checks AWS makes before looking at the operation; undefined when acceptable. */
function signatureProblem (headers: IncomingHttpHeaders): AwsError | undefined {
  const authorization = headers.authorization
  if (authorization === undefined) {
    return { status: 400, type: 'MissingAuthenticationTokenException', message: 'Missing Authentication Token' }
  }
  const match = SIGV4_HEADER.exec(authorization)
  if (match === null) {
    return { status: 400, type: 'IncompleteSignatureException', message: `Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' parameters. Authorization=${authorization.split(' ')[0] ?? ''}` }
  }
  if (match[4] !== 'ecr') {
    return { status: 400, type: 'InvalidSignatureException', message: "Credential should be scoped to correct service: 'ecr'. " }
  }
  const signed = (match[5] as string).split(';')
  if (!signed.includes('host') || headers['x-amz-date'] === undefined || !signed.includes('x-amz-date')) {
    return { status: 400, type: 'IncompleteSignatureException', message: 'Date and host must be signed: x-amz-date and host are required SignedHeaders.' }
  }
  return undefined
}

function parseJson (text: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}

/**
 * The ECR control-plane API (AWS JSON 1.1) on a real socket, enough for the real
 * @aws-sdk/client-ecr to call GetAuthorizationToken against it.
 */
export async function startEcrApi (opts: EcrApiOptions): Promise<EcrApi> {
  const { authority } = opts
  const calls: EcrApiCall[] = []
  const pendingFailures: EcrApiFailure[] = []
  const sockets = new Set<Socket>()
  let down = false
  const proxyEndpoint = (): string => typeof opts.proxyEndpoint === 'function' ? opts.proxyEndpoint() : opts.proxyEndpoint

  async function handle (req: IncomingMessage, res: ServerResponse): Promise<void> {
    const text = await readBody(req)
    const body = parseJson(text) ?? text
    const target = String(req.headers['x-amz-target'] ?? '')
    const region = SIGV4_HEADER.exec(String(req.headers.authorization ?? ''))?.[3]
    calls.push({ target, headers: req.headers, body, ...(region === undefined ? {} : { region }) })

    if (req.method !== 'POST' || (req.url ?? '/').split('?')[0] !== '/') {
      sendAwsError(res, { status: 404, type: 'UnknownOperationException', message: '' })
      return
    }
    const signature = signatureProblem(req.headers)
    if (signature !== undefined) return sendAwsError(res, signature)
    if (target !== GET_AUTHORIZATION_TOKEN) {
      return sendAwsError(res, { status: 400, type: 'UnknownOperationException', message: '' })
    }
    if (!String(req.headers['content-type'] ?? '').startsWith(JSON_1_1) || typeof body !== 'object' || body === null) {
      return sendAwsError(res, { status: 400, type: 'SerializationException', message: 'Start of structure or map found where not expected.' })
    }
    const failure = pendingFailures.shift()
    if (failure !== undefined) return sendAwsError(res, FAILURES[failure])

    const regional = region === undefined ? undefined : opts.regions?.[region]
    if (opts.regions !== undefined && regional === undefined) {
      return sendAwsError(res, { status: 400, type: 'UnrecognizedClientException', message: `The security token included in the request is invalid in ${region ?? 'no region'}.` })
    }
    const token = (regional?.authority ?? authority).issue()
    sendJson(res, 200, {
      authorizationData: [{
        authorizationToken: token.authorizationToken,
        expiresAt: token.expiresAt / 1000,
        proxyEndpoint: regional?.proxyEndpoint ?? proxyEndpoint(),
      }],
    })
  }

  const server = createServer((req, res) => {
    if (down) {
      req.socket.destroy()
      return
    }
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) sendAwsError(res, { status: 500, type: 'InternalFailure', message: String(err) })
      else res.destroy()
    })
  })
  server.on('connection', (socket: Socket) => {
    if (down) {
      socket.destroy()
      return
    }
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
  })

  const url = await listen(server, opts.host, opts.port)

  return {
    url,
    authority,
    calls,
    failNext (failure, times = 1) {
      for (let i = 0; i < times; i++) pendingFailures.push(failure)
    },
    setDown (value) {
      down = value
      if (down) for (const socket of sockets) socket.destroy()
    },
    async close () {
      await closeServer(server)
    },
  }
}
