/** What the hole puncher tells its owner (sidecar/node/nat-watch.ts): typed, with a `type` field. */
import type { Connection } from '@libp2p/interface';

export type HolePunchResult = 'success' | 'failure' | 'gave_up';

export type HolePunchEvent =
  /** A round ended (B), or a peer over its bound was refused (either side). */
  | { type: 'attempt'; peer: string; result: HolePunchResult; ms: number; error?: string }
  | { type: 'upgraded'; peer: string; connection: Connection; path: 'hole_punched' | 'direct' }
  | { type: 'relay_closed'; peer: string; waitedMs: number; streamsLeft: number };

export type HolePunchListener = (event: HolePunchEvent) => void;
