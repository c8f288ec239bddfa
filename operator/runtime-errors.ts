/**
 * Named errors of the operator's I/O parts (the pure parts have theirs in `errors.ts`). Tests and
 * callers check `name` and fields, never message text.
 */

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
