/**
 * The names of the swarm keys a node may hold during a rollover (docs/architecture.md, Swarm-key
 * rollover): `current`, the network's key, and `next`, the one being rolled in. The node reports
 * each connection's key by these names; the operator reads them.
 */
export const SWARM_KEY_NAMES = ['current', 'next'] as const;
export type SwarmKeyName = (typeof SWARM_KEY_NAMES)[number];
