/**
 * `holePunch()`: hole punching between NATed nodes, as a libp2p service. Wires our DCUtR service
 * (./dcutr/) to the public side of this node's NAT as peers observe it (./observed-addrs.ts) and
 * to the AddressPolicy, and installs the dial-responder patch its TCP simultaneous open needs
 * (../patches/libp2p.ts). The open itself needs dials from the listening port: reusePortTcp() in
 * ../node/libp2p-node.ts.
 */

import { type Stream, serviceDependencies } from '@libp2p/interface';
import {
  type DialingTransportManager,
  type OutboundUpgrader,
  restoreResponderDials,
} from '../patches/libp2p.js';
import type { AddressPolicy } from './address-policy.js';
import type { HolePunchListener } from './dcutr/events.js';
import { type DcutrComponents, DcutrService } from './dcutr/service.js';
import { ObservedAddrs, type ObservedAddrsInit } from './observed-addrs.js';

export type { HolePunchEvent, HolePunchResult } from './dcutr/events.js';

export interface HolePunchInit {
  /** Which addresses count as reachable between sites. */
  policy: AddressPolicy;
  /** Peer IDs of configured relays/bootstrap peers: one observation from them is enough. */
  trustedObservers?: readonly string[];
  /** One DCUtR try's timeout, ms (a round makes up to `retries` tries). @default 5000 */
  timeoutMs?: number;
  /** Tries per round. @default 3 */
  retries?: number;
  /** Failed rounds per peer within `windowMs` after which this node stops trying. @default 3 */
  maxFailedRounds?: number;
  /** @default 600000 (10 min) */
  windowMs?: number;
  /** Delay before the second round; doubles for each further one. @default 2000 */
  retryDelayMs?: number;
  /**
   * How long a relayed connection that was upgraded stays open for the streams still on it, ms;
   * after that it is closed anyway. @default 3600000 (1 h)
   */
  relayDrainMs?: number;
  /** Streams that keep an upgraded relayed connection open. @default protocol starts with /x/ */
  isPayloadStream?: (stream: Stream) => boolean;
  observed?: ObservedAddrsInit;
}

export interface HolePunchComponents extends DcutrComponents {
  transportManager: DcutrComponents['transportManager'] & DialingTransportManager;
  upgrader: OutboundUpgrader;
}

export interface HolePunchStatus {
  candidates: string[];
  symmetricNat: boolean;
  /** Peers this node has stopped punching to, until their window passes. */
  gaveUp: string[];
}

export interface HolePunch {
  readonly observed: ObservedAddrs;
  /** Subscribes to events; returns the unsubscribe function. */
  subscribe(listener: HolePunchListener): () => void;
  status(): HolePunchStatus;
}

class HolePunchService implements HolePunch {
  readonly [Symbol.toStringTag] = '@peertunnel/hole-punch';
  readonly [serviceDependencies] = ['@libp2p/identify'];
  readonly observed: ObservedAddrs;
  private readonly dcutr: DcutrService;

  constructor(
    private readonly components: HolePunchComponents,
    init: HolePunchInit,
  ) {
    this.observed = new ObservedAddrs(init.policy, new Set(init.trustedObservers ?? []), init.observed);
    this.dcutr = new DcutrService(components, {
      isPublic: (ip) => init.policy.isPublic(ip),
      candidates: () => this.observed.candidates(),
      timeoutMs: init.timeoutMs ?? 5_000,
      tries: init.retries ?? 3,
      maxFailedRounds: init.maxFailedRounds ?? 3,
      windowMs: init.windowMs ?? 600_000,
      retryDelayMs: init.retryDelayMs ?? 2_000,
      relayDrainMs: init.relayDrainMs ?? 3_600_000,
      isPayloadStream: init.isPayloadStream ?? ((s) => s.protocol?.startsWith('/x/') === true),
    });
    restoreResponderDials(components.transportManager, components.upgrader, (ma) =>
      this.dcutr.isResponderDial(ma),
    );
    this.onIdentify = this.onIdentify.bind(this);
  }

  isStarted(): boolean {
    return this.dcutr.isStarted();
  }

  async start(): Promise<void> {
    this.components.events.addEventListener('peer:identify', this.onIdentify);
    await this.dcutr.start();
  }

  async stop(): Promise<void> {
    this.components.events.removeEventListener('peer:identify', this.onIdentify);
    await this.dcutr.stop();
  }

  subscribe(listener: HolePunchListener): () => void {
    return this.dcutr.subscribe(listener);
  }

  status(): HolePunchStatus {
    return {
      candidates: this.observed.candidates().map((c) => c.toString()),
      symmetricNat: this.observed.symmetric(),
      gaveUp: this.dcutr.gaveUp(),
    };
  }

  private onIdentify(evt: CustomEvent<Parameters<ObservedAddrs['observe']>[0]>): void {
    this.observed.observe(evt.detail);
  }
}

/** A libp2p service: `services: { holePunch: holePunch({ policy }) }`. */
export function holePunch(init: HolePunchInit): (components: HolePunchComponents) => HolePunch {
  return (components) => new HolePunchService(components, init);
}
