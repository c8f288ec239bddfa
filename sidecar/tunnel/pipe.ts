/**
 * Copies bytes between a TCP socket and a libp2p stream, both ways, with backpressure and
 * half-close, until both are done.
 *
 * Backpressure, per libp2p 3:
 * - socket → stream: `send()` returning false pauses the socket until the stream's `drain` event
 *   (a persistent listener, because `onDrain()` stops applying after the first drain).
 * - stream → socket: `write()` returning false pauses the stream until the socket drains. yamux
 *   keeps granting window while a stream is not paused, so pausing is the only real read
 *   backpressure; the muxer's window must stay at or below the stream's read buffer limit.
 *
 * Half-close: a FIN from the socket closes the stream's write side; the remote closing its write
 * side ends the socket, on the stream's `end` event, which comes only after every buffered byte
 * was delivered (`remoteCloseWrite` can overtake data that arrived before the pipe was attached). A reset on either side resets the other (RST on the socket), so a broken
 * tunnel is never mistaken for a clean end of data.
 */
import type { Socket } from 'node:net';
import type { Stream, StreamCloseEvent, StreamMessageEvent } from '@libp2p/interface';

export type PipeOutcome = 'closed' | 'reset_by_peer' | 'local_error' | 'aborted';

export interface PipeOptions {
  /** Aborts both directions at once. */
  signal?: AbortSignal;
  /** Bytes read from the socket and sent into the stream. */
  onSent?: (bytes: number) => void;
  /** Bytes received from the stream and written to the socket. */
  onReceived?: (bytes: number) => void;
}

export interface PipeResult {
  outcome: PipeOutcome;
  error?: Error;
  sent: number;
  received: number;
}

export function pipe(socket: Socket, stream: Stream, options: PipeOptions = {}): Promise<PipeResult> {
  const { signal, onSent, onReceived } = options;
  return new Promise<PipeResult>((resolve) => {
    let socketDone = socket.destroyed;
    let streamDone = stream.status !== 'open';
    let outcome: PipeOutcome = 'closed';
    let error: Error | undefined;
    let sent = 0;
    let received = 0;
    let socketPausedForStream = false;

    const settle = (next: PipeOutcome, err?: unknown) => {
      if (outcome !== 'closed') return;
      outcome = next;
      if (err !== undefined) error = err instanceof Error ? err : new Error(String(err));
    };

    const finish = () => {
      if (!socketDone || !streamDone) return;
      signal?.removeEventListener('abort', onAbort);
      stream.removeEventListener('message', onMessage);
      stream.removeEventListener('drain', onStreamDrain);
      stream.removeEventListener('end', onRemoteEnd);
      stream.removeEventListener('remoteCloseWrite', onRemoteCloseWrite);
      stream.removeEventListener('close', onStreamClose);
      resolve(error === undefined ? { outcome, sent, received } : { outcome, error, sent, received });
    };

    const resetSocket = () => {
      if (!socket.destroyed) socket.resetAndDestroy();
    };

    // socket -> stream
    const onData = (chunk: Buffer) => {
      sent += chunk.byteLength;
      onSent?.(chunk.byteLength);
      let more: boolean;
      try {
        more = stream.send(chunk);
      } catch (err) {
        settle('local_error', err);
        stream.abort(error ?? new Error('send failed'));
        resetSocket();
        return;
      }
      if (!more) {
        socketPausedForStream = true;
        socket.pause();
      }
    };
    const onStreamDrain = () => {
      if (socketPausedForStream) {
        socketPausedForStream = false;
        socket.resume();
      }
    };
    const onSocketEnd = () => {
      if (stream.writeStatus !== 'writable') return;
      stream.close().catch((err: unknown) => {
        settle('local_error', err);
        resetSocket();
      });
    };

    // stream -> socket
    const onMessage = (evt: StreamMessageEvent) => {
      if (!socket.writable) return;
      let more = true;
      const { data } = evt;
      if (data instanceof Uint8Array) {
        received += data.byteLength;
        more = socket.write(data);
      } else {
        for (const chunk of data) more = socket.write(chunk);
        received += data.byteLength;
      }
      onReceived?.(data.byteLength);
      if (!more && stream.readStatus === 'readable') stream.pause();
      // Bytes a protocol negotiation read ahead are pushed back after 'end' already fired.
      if (stream.readableEnded && stream.readBufferLength === 0) onRemoteEnd();
    };
    const onSocketDrain = () => {
      if (stream.readStatus === 'paused') stream.resume();
    };
    // Only a FIN from the remote means "no more data". A stream also ends, without error, when
    // its whole connection goes away (a relay dies, or cuts a limited circuit): that is a
    // truncation, and must reach the local peer as a reset.
    let remoteFin = stream.remoteWriteStatus === 'closed' && stream.status === 'open';
    const onRemoteCloseWrite = () => {
      remoteFin = true;
    };
    const onRemoteEnd = () => {
      // abort() and a remote reset also emit 'end' (before 'close'): those must reset, not FIN.
      if (stream.status === 'aborted' || stream.status === 'reset' || !remoteFin) return;
      if (!socket.writableEnded) socket.end();
    };

    const onStreamClose = (evt: StreamCloseEvent) => {
      streamDone = true;
      if (evt.error !== undefined) {
        settle(evt.local === true ? 'local_error' : 'reset_by_peer', evt.error);
        resetSocket();
      } else if (!remoteFin) {
        settle('reset_by_peer', new Error('connection closed before the remote finished'));
        resetSocket();
      } else if (stream.readBufferLength === 0) {
        // A clean close means no more data: end, do not reset. Buffered bytes end via 'end'.
        onRemoteEnd();
      }
      finish();
    };
    const onSocketError = (err: Error) => {
      settle('local_error', err);
      stream.abort(err);
    };
    const onSocketClose = () => {
      socketDone = true;
      if (stream.status === 'open' && (stream.writeStatus === 'writable' || stream.readStatus !== 'closed')) {
        // The socket went away before the stream finished: say so to the other end with a reset.
        if (outcome === 'closed' && !socket.readableEnded)
          settle('local_error', new Error('socket closed early'));
        if (outcome !== 'closed') stream.abort(error ?? new Error('socket closed'));
      }
      finish();
    };
    const onAbort = () => {
      settle('aborted', signal?.reason);
      stream.abort(error ?? new Error('aborted'));
      resetSocket();
    };

    socket.on('data', onData);
    socket.on('end', onSocketEnd);
    socket.on('drain', onSocketDrain);
    socket.on('error', onSocketError);
    socket.on('close', onSocketClose);
    stream.addEventListener('message', onMessage);
    stream.addEventListener('drain', onStreamDrain);
    stream.addEventListener('remoteCloseWrite', onRemoteCloseWrite);
    stream.addEventListener('end', onRemoteEnd);
    stream.addEventListener('close', onStreamClose);
    if (signal?.aborted === true) onAbort();
    else signal?.addEventListener('abort', onAbort, { once: true });
    if (streamDone) {
      // The stream ended (reset, aborted, its connection closed) before the pipe began, so its
      // 'close' will not come: do what it would have done, or the socket waits for its own peer.
      settle(
        stream.status === 'aborted' ? 'local_error' : 'reset_by_peer',
        new Error(`stream ${stream.status} before the pipe began`),
      );
      resetSocket();
    } else {
      if (stream.readStatus === 'paused') stream.resume();
      if (stream.readableEnded && stream.readBufferLength === 0) onRemoteEnd();
    }
    finish();
  });
}
