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
