/** Why opening a tunnel stream failed, as the reason label of the stream failure metric. */
import type { StreamFailureReason } from '../admin/metrics.js';

export class StreamOpenError extends Error {
  readonly reason: StreamFailureReason;
  constructor(reason: StreamFailureReason, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'StreamOpenError';
    this.reason = reason;
  }
}

/** This node's trust refuses the provider for the name (sidecar/trust/): it leaves the pool. */
export class ProviderUntrustedError extends StreamOpenError {
  constructor(message: string) {
    super('unauthorized', message);
    this.name = 'ProviderUntrustedError';
  }
}
