/** Named errors of the operator. Tests and callers check `name` and fields, never message text. */

/** Operator settings that cannot work; `field` names the setting. */
export class SettingsError extends Error {
  readonly field: string;
  constructor(field: string, reason: string) {
    super(`invalid operator settings: ${field}: ${reason}`);
    this.name = 'SettingsError';
    this.field = field;
  }
}

/** A JSON patch that does not fit the document it is applied to; `path` is the op's path. */
export class JsonPatchError extends Error {
  readonly path: string;
  constructor(path: string, reason: string) {
    super(`cannot apply JSON patch at ${path}: ${reason}`);
    this.name = 'JsonPatchError';
    this.path = path;
  }
}

/** A non-2xx answer of the API server (status 0: no answer at all). */
export class KubeApiError extends Error {
  readonly method: string;
  readonly path: string;
  readonly status: number;
  /** The API server's `Status.reason` (NotFound, AlreadyExists, Conflict, ...). */
  readonly reason: string;
  constructor(method: string, path: string, status: number, reason: string, detail: string) {
    super(`${method} ${path}: ${status} ${reason}: ${detail}`);
    this.name = 'KubeApiError';
    this.method = method;
    this.path = path;
    this.status = status;
    this.reason = reason;
  }
}

export const isNotFound = (err: unknown): boolean => err instanceof KubeApiError && err.status === 404;
export const isConflict = (err: unknown): boolean => err instanceof KubeApiError && err.status === 409;

/** A command-line flag of `peertunnel operator` that cannot work. */
export class OperatorUsageError extends Error {
  readonly flag: string;
  constructor(flag: string, reason: string) {
    super(`${flag}: ${reason}`);
    this.name = 'UsageError';
    this.flag = flag;
  }
}

/** The webhook's certificate material in its Secret cannot be used. */
export class CertificateError extends Error {
  constructor(reason: string) {
    super(`webhook certificate: ${reason}`);
    this.name = 'CertificateError';
  }
}

/** The sidecars' status token could not be stored in or read from its Secret. */
export class StatusTokenError extends Error {
  constructor(reason: string) {
    super(`status token: ${reason}`);
    this.name = 'StatusTokenError';
  }
}

/** The cluster signing key Secret holds something that is not a key: never replaced, only reported. */
export class ClusterKeySecretError extends Error {
  constructor(reason: string) {
    super(reason);
    this.name = 'ClusterKeySecretError';
  }
}
