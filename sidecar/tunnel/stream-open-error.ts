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
