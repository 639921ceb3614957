/** Error codes of the distribution spec, plus UNAVAILABLE (distribution's own). */
export type RegistryErrorCode =
  | 'BLOB_UNKNOWN' | 'BLOB_UPLOAD_INVALID' | 'BLOB_UPLOAD_UNKNOWN' | 'DIGEST_INVALID'
  | 'MANIFEST_BLOB_UNKNOWN' | 'MANIFEST_INVALID' | 'MANIFEST_UNKNOWN' | 'NAME_INVALID'
  | 'NAME_UNKNOWN' | 'SIZE_INVALID' | 'UNAUTHORIZED' | 'DENIED' | 'UNSUPPORTED'
  | 'TOOMANYREQUESTS' | 'UNAVAILABLE' | 'NOT_FOUND' | 'BAD_GATEWAY' | 'GATEWAY_TIMEOUT'

export interface RegistryErrorBody {
  errors: Array<{ code: RegistryErrorCode, message: string, detail?: unknown }>
}

export function registryErrorBody (code: RegistryErrorCode, message: string, detail?: unknown): RegistryErrorBody {
  return { errors: [detail === undefined ? { code, message } : { code, message, detail }] }
}

/** Answers in the registry's `{"errors":[…]}` envelope, as every registry client expects. */
/** The part of a Fastify reply an error needs; HTTP/1 and HTTP/2 replies both have it. */
export interface ErrorReply {
  code (status: number): ErrorReply
  header (name: string, value: string): ErrorReply
  send (payload: string): unknown
}

export function sendRegistryError (reply: ErrorReply, status: number, code: RegistryErrorCode, message: string, detail?: unknown): void {
  reply
    .code(status)
    .header('content-type', 'application/json; charset=utf-8')
    .header('docker-distribution-api-version', 'registry/2.0')
    .send(JSON.stringify(registryErrorBody(code, message, detail)))
}
