/**
 * Dialling during a swarm-key rollover (docs/architecture.md, Swarm-key rollover): a dial tries
 * the node's keys newest first, each on a new transport connection, and falls back to the older
 * one only when the responder did not answer under the newer (sidecar/crypto/pnet-connection.ts
 * says so on the attempt). Which key a dial uses travels in the dial's options, which libp2p hands
 * from `transport.dial` to the upgrader and on to the protector unchanged.
 */
import type { Transport } from '@libp2p/interface';
import type { SwarmKeyName } from './pnet-keys.js';

const ATTEMPT = Symbol.for('peertunnel.pnetDialAttempt');

/** One dial's key, and whether the responder turned it down. */
export interface PnetDialAttempt {
  key: SwarmKeyName;
  rejected: boolean;
}

/** The attempt a dial's options carry, if any. */
export function attemptOf(options: object | undefined): PnetDialAttempt | undefined {
  if (options === undefined) return undefined;
  const attempt = (options as { [ATTEMPT]?: PnetDialAttempt })[ATTEMPT];
  return attempt;
}

/** Options that make the protector dial with `key`; the attempt says how it went. */
export function withAttempt<T extends object>(options: T, key: SwarmKeyName): [T, PnetDialAttempt] {
  const attempt: PnetDialAttempt = { key, rejected: false };
  return [{ ...options, [ATTEMPT]: attempt }, attempt];
}

/**
 * Wraps a transport factory so each dial tries `keys()` in order (newest first), going on to the
 * next only after a rejection by the responder; with one key it is one plain dial.
 */
export function withSwarmKeyFallback<C>(
  factory: (components: C) => Transport,
  keys: () => readonly SwarmKeyName[],
  onFallback?: (from: SwarmKeyName) => void,
): (components: C) => Transport {
  return (components) => {
    const transport = factory(components);
    const dial = transport.dial.bind(transport);
    transport.dial = async (ma, options) => {
      const order = keys();
      for (let i = 0; ; i++) {
        const key = order[i];
        if (key === undefined || order.length < 2) return dial(ma, options);
        const [opts, attempt] = withAttempt(options, key);
        try {
          return await dial(ma, opts);
        } catch (err) {
          if (!attempt.rejected || i + 1 >= order.length || options.signal?.aborted === true) throw err;
          onFallback?.(key);
        }
      }
    };
    return transport;
  };
}
