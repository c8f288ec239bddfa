/** `pipe` with the stream metrics every tunnel stream reports, on either side of a tunnel. */
import type { Socket } from 'node:net';
import type { Stream } from '@libp2p/interface';
import type { Side, SidecarMetrics } from '../admin/metrics.js';
import { type PipeResult, pipe } from './pipe.js';

export async function meteredPipe(
  socket: Socket,
  stream: Stream,
  metrics: SidecarMetrics,
  service: string,
  side: Side,
  /** Ends the tunnel; the caller counts why (an idle timeout, say). */
  signal?: AbortSignal,
): Promise<PipeResult> {
  const labels = { service, side };
  metrics.streamsOpened.inc(labels);
  metrics.streamsActive.inc(labels);
  const result = await pipe(socket, stream, {
    ...(signal === undefined ? {} : { signal }),
    onSent: (n) => metrics.bytes.inc({ ...labels, direction: 'sent' }, n),
    onReceived: (n) => metrics.bytes.inc({ ...labels, direction: 'received' }, n),
  });
  metrics.streamsActive.dec(labels);
  if (result.outcome !== 'closed' && result.outcome !== 'aborted') {
    metrics.streamsFailed.inc({
      ...labels,
      reason: result.outcome === 'reset_by_peer' ? 'reset_by_peer' : 'local_error',
    });
  }
  return result;
}
