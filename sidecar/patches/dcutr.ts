/**
 * The @libp2p/dcutr patch: the stock DCUtR service built with components whose address manager
 * and connection manager the hole puncher supplies, and four of its steps replaced by own
 * properties (they shadow the prototype's methods, which the stock start() registers). What each
 * replacement does is in sidecar/nat/hole-punch.ts; why: ./inventory.ts.
 */
import { type DCUtRServiceComponents, dcutr } from '@libp2p/dcutr';
import type { Connection, Stream } from '@libp2p/interface';
import type { Multiaddr } from '@multiformats/multiaddr';
import { expectShape } from './patch.js';

export const DCUTR_PATCH = 'dcutr-steps';

/** dcutr marks its own dials with this priority (its source: DCUTR_DIAL_PRIORITY). */
export const DCUTR_DIAL_PRIORITY = 100;

/** The parts of DefaultDCUtRService this patch replaces or calls. */
export interface DcutrInternals {
  start(): Promise<void>;
  stop(): Promise<void>;
  isStarted(): boolean;
  upgradeInbound(connection: Connection): Promise<void>;
  handleIncomingUpgrade(stream: Stream, connection: Connection): Promise<void>;
  getDialableMultiaddrs(addrs: Array<Uint8Array | undefined>): Multiaddr[];
  attemptUnilateralConnectionUpgrade(connection: Connection): Promise<boolean>;
}

export const DCUTR_MEMBERS = {
  start: 'function',
  stop: 'function',
  isStarted: 'function',
  upgradeInbound: 'function',
  handleIncomingUpgrade: 'function',
  getDialableMultiaddrs: 'function',
  attemptUnilateralConnectionUpgrade: 'function',
} as const;

export interface DcutrSteps {
  /** B: the inbound side of a relayed connection runs a round; gets the stock round. */
  upgradeInbound(relayed: Connection, stock: (c: Connection) => Promise<void>): Promise<void>;
  /** A: answers B's Connect; gets the stock handler. */
  handleIncomingUpgrade(
    stream: Stream,
    relayed: Connection,
    stock: (s: Stream, c: Connection) => Promise<void>,
  ): Promise<void>;
  getDialableMultiaddrs(addrs: Array<Uint8Array | undefined>): Multiaddr[];
  attemptUnilateralConnectionUpgrade(relayed: Connection): Promise<boolean>;
}

/**
 * The stock service, built on `components` with `overrides` in front of them (libp2p's
 * components object is a proxy that throws on unset entries: it is never spread), its steps
 * replaced by `steps`. Throws PatchTargetMissingError when a step is missing.
 */
export function patchedDcutr(
  components: DCUtRServiceComponents,
  overrides: Partial<Pick<DCUtRServiceComponents, 'addressManager' | 'connectionManager'>>,
  init: { timeout: number; retries: number },
  steps: DcutrSteps,
): Pick<DcutrInternals, 'start' | 'stop' | 'isStarted'> {
  const descriptors: PropertyDescriptorMap = {};
  for (const [name, value] of Object.entries(overrides)) descriptors[name] = { value };
  const service: unknown = dcutr(init)(Object.create(components, descriptors));
  expectShape(DCUTR_PATCH, '@libp2p/dcutr service', service, DCUTR_MEMBERS);
  const inner = service as DcutrInternals;
  const upgradeInbound = inner.upgradeInbound.bind(inner);
  const handleIncomingUpgrade = inner.handleIncomingUpgrade.bind(inner);
  inner.getDialableMultiaddrs = (addrs) => steps.getDialableMultiaddrs(addrs);
  inner.attemptUnilateralConnectionUpgrade = (c) => steps.attemptUnilateralConnectionUpgrade(c);
  inner.upgradeInbound = (c) => steps.upgradeInbound(c, upgradeInbound);
  inner.handleIncomingUpgrade = (s, c) => steps.handleIncomingUpgrade(s, c, handleIncomingUpgrade);
  return inner;
}
