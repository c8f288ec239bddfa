/**
 * Counts inbound streams refused because they asked for a protocol this node does not serve
 * (a service it does not expose). libp2p answers such a request with multistream-select's "na"
 * and never calls a handler, so the only trace is an inbound stream that closes without a
 * negotiated protocol: watch each connection's muxer for those.
 */
import type { Libp2p, Stream } from '@libp2p/interface';
import { connectionMuxer } from '../patches/libp2p.js';

export function watchRefusedStreams(
  libp2p: Pick<Libp2p, 'addEventListener'>,
  onRefused: (stream: Stream) => void,
): void {
  libp2p.addEventListener('connection:open', (evt) => {
    connectionMuxer(evt.detail).addEventListener('stream', (e) => {
      const stream = (e as CustomEvent<Stream>).detail;
      stream.addEventListener(
        'close',
        () => {
          if (stream.protocol === '' || stream.protocol === undefined) onRefused(stream);
        },
        { once: true },
      );
    });
  });
}
