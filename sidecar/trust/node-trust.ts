/**
 * The trust model of one node, as the tunnel code asks it: may this peer serve this name to our
 * forwards (checkProvider), may it reach this expose (checkClient), is it refused for a name for
 * good (admits), and which open streams it still may hold (track). An operator-managed node also
 * renews its credential and keeps its trusted clusters current from the operator. Without a `trust` section the
 * network is open: every answer is yes, nothing is exchanged, and the start log says so once.
 */
import { readFile } from 'node:fs/promises';
import type { PrivateKey, Stream } from '@libp2p/interface';
import type { CredentialRefusal } from '../../contracts/credential.js';
import { type AllowFromRule, allowFromMatches, type TrustStatus } from '../../contracts/trust.js';
import type { Side, SidecarMetrics } from '../admin/metrics.js';
import type { NodeConfig } from '../config/config.js';
import type { PeerTunnelLibp2p } from '../node/libp2p-node.js';
import type { Logger } from '../node/logger.js';
import { CredentialRenewer } from './credential-renewer.js';
import { CredentialExchange, EXCHANGE_TIMEOUT_MS } from './exchange.js';
import { OpenTunnels } from './open-tunnels.js';
import { OwnCredential } from './own-credential.js';
import { PeerCredentials, type PeerVerdict } from './peer-credentials.js';
import { TrustRefusals } from './refusals.js';
import { TRUST_POLL_MS, TrustStore } from './trust-store.js';
import { TrustSync } from './trust-sync.js';

/** Peers refused for good per forwarded name, until they present another credential. */
const MAX_BANNED_PER_SERVICE = 1_024;

/** What the tunnel code asks; every answer is `undefined` (allowed) or why not. */
export interface TunnelTrust {
  checkProvider(peer: string, service: string): Promise<CredentialRefusal | undefined>;
  checkClient(peer: string, service: string): Promise<CredentialRefusal | undefined>;
  admits(service: string, peer: string): boolean;
  track(stream: Stream, side: Side, peer: string, service: string): void;
}

type Answer = CredentialRefusal | undefined | 'unknown';

export class NodeTrust implements TunnelTrust {
  private store?: TrustStore;
  private peers?: PeerCredentials;
  private own?: OwnCredential;
  private renewer?: CredentialRenewer;
  private sync?: TrustSync;
  private exchange?: CredentialExchange;
  private readonly refusals: TrustRefusals;
  private readonly tunnels: OpenTunnels;
  private readonly allowFrom: Map<string, AllowFromRule[] | undefined>;
  private readonly banned = new Map<string, Map<string, CredentialRefusal>>();

  constructor(
    private readonly config: NodeConfig,
    private readonly metrics: SidecarMetrics,
    private readonly logger: Logger,
    private readonly pollMs = TRUST_POLL_MS,
  ) {
    this.refusals = new TrustRefusals(metrics, logger);
    this.tunnels = new OpenTunnels((o) => this.recheck(o.side, o.peer, o.service), metrics, logger);
    this.allowFrom = new Map(config.expose.map((e) => [e.name, e.allowFrom]));
  }

  get open(): boolean {
    return this.config.trust === undefined;
  }

  /** Reads the trust and credential files (a bad one: ConfigError) and joins the exchange. */
  async start(libp2p: PeerTunnelLibp2p, privateKey: PrivateKey): Promise<void> {
    const trust = this.config.trust;
    if (trust === undefined) {
      this.logger.info(
        { event: 'trust_open' },
        'no trust section: an open network, every swarm key holder may serve any name and reach any expose',
      );
      return;
    }
    const store = await TrustStore.load(trust, this.logger, this.pollMs);
    this.store = store;
    const peers = new PeerCredentials(store);
    this.peers = peers;
    const exchange = new CredentialExchange({
      libp2p,
      peers,
      logger: this.logger,
      own: () => this.own?.bytes() ?? new Uint8Array(0),
      onReceived: (peer, verdict, changed) => this.received(peer, verdict, changed),
    });
    this.exchange = exchange;
    if (trust.credential !== undefined)
      this.own = await OwnCredential.load({
        file: trust.credential.file,
        peer: libp2p.peerId.toString(),
        network: trust.network,
        logger: this.logger,
        metrics: this.metrics,
        pollMs: this.pollMs,
        onRenewed: () => void exchange.pushAll(),
      });
    const issuer = trust.credential?.issuer;
    if (trust.credential !== undefined && issuer !== undefined) {
      this.renewer = new CredentialRenewer({
        issuer,
        file: trust.credential.file,
        privateKey,
        peer: libp2p.peerId.toString(),
        logger: this.logger,
        readToken: (file) => readFile(file, 'utf8'),
        onWritten: () => this.own?.reload(),
      });
      this.renewer.start();
      this.sync = new TrustSync({
        issuer,
        network: trust.network,
        privateKey,
        peer: libp2p.peerId.toString(),
        credential: () => this.own?.credential?.text,
        apply: (clusters) => void store.applyIssued(clusters),
        metrics: this.metrics,
        logger: this.logger,
      });
      this.sync.start();
    }
    await exchange.start();
    this.tunnels.start();
  }

  async stop(): Promise<void> {
    this.tunnels.stop();
    this.renewer?.stop();
    this.sync?.stop();
    this.store?.stop();
    this.own?.stop();
    await this.exchange?.stop();
  }

  admits(service: string, peer: string): boolean {
    return this.banned.get(service)?.has(peer) !== true;
  }

  track(stream: Stream, side: Side, peer: string, service: string): void {
    if (!this.open && !this.exempt(peer, service)) this.tunnels.track(stream, side, peer, service);
  }

  async checkProvider(peer: string, service: string): Promise<CredentialRefusal | undefined> {
    const reason = await this.settle(peer, () => this.providerAnswer(peer, service));
    if (reason === undefined) return undefined;
    this.refusals.record({ side: 'forward', peer, service, reason, claims: this.peers?.claimsOf(peer) });
    // A timeout may be the network's fault; anything else is the peer's answer: not asked again.
    if (reason !== 'credential_timeout') this.ban(service, peer, reason);
    return reason;
  }

  async checkClient(peer: string, service: string): Promise<CredentialRefusal | undefined> {
    const reason = await this.settle(peer, () => this.clientAnswer(peer, service));
    if (reason !== undefined)
      this.refusals.record({ side: 'expose', peer, service, reason, claims: this.peers?.claimsOf(peer) });
    return reason;
  }

  /** The answer now, or after the peer's credential exchange answered (bounded). */
  private async settle(peer: string, answer: () => Answer): Promise<CredentialRefusal | undefined> {
    let a = answer();
    if (a !== 'unknown') return a;
    void this.exchange?.exchange(peer);
    await this.peers?.waitAnswered(peer, EXCHANGE_TIMEOUT_MS);
    a = answer();
    return a === 'unknown' ? 'credential_timeout' : a;
  }

  private exempt(peer: string, service: string): boolean {
    return this.store?.uncredentialed.has(service) === true || this.store?.allowsPeer(peer) === true;
  }

  private verdict(peer: string): PeerVerdict | undefined {
    return this.peers?.verdict(peer, Date.now() / 1000);
  }

  private providerAnswer(peer: string, service: string): Answer {
    if (this.open || this.exempt(peer, service)) return undefined;
    const v = this.verdict(peer);
    if (v === undefined) return 'unknown';
    if (!v.ok) return v.reason;
    return v.claims.expose.includes(service) ? undefined : 'not_named';
  }

  private clientAnswer(peer: string, service: string): Answer {
    if (this.open || this.store?.uncredentialed.has(service) === true) return undefined;
    const rules = this.allowFrom.get(service);
    if (this.store?.allowsPeer(peer) === true) return rules === undefined ? undefined : 'not_allowed';
    const v = this.verdict(peer);
    if (v === undefined) return 'unknown';
    if (!v.ok) return v.reason;
    return allowFromMatches(rules, v.claims) ? undefined : 'not_allowed';
  }

  private recheck(side: Side, peer: string, service: string): CredentialRefusal | undefined {
    const a = side === 'forward' ? this.providerAnswer(peer, service) : this.clientAnswer(peer, service);
    // A peer whose entry went (it disconnected) has no streams left to end.
    return a === 'unknown' ? undefined : a;
  }

  private ban(service: string, peer: string, reason: CredentialRefusal): void {
    let m = this.banned.get(service);
    if (m === undefined) {
      m = new Map();
      this.banned.set(service, m);
    }
    if (m.size >= MAX_BANNED_PER_SERVICE) {
      const oldest = m.keys().next().value;
      if (oldest !== undefined) m.delete(oldest);
    }
    m.set(peer, reason);
  }

  private received(peer: string, verdict: PeerVerdict, changed: boolean): void {
    // Another credential: a name it now may serve takes it back.
    if (changed)
      for (const [service, m] of this.banned)
        if (m.has(peer) && this.providerAnswer(peer, service) === undefined) m.delete(peer);
    if (!verdict.ok && verdict.reason !== 'no_credential')
      this.refusals.record({
        side: 'exchange',
        peer,
        reason: verdict.reason,
        claims: this.peers?.claimsOf(peer),
      });
  }

  status(): TrustStatus {
    const claims = this.own?.credential?.claims;
    return {
      mode: this.open ? 'open' : 'credentialed',
      network: this.store?.network ?? null,
      credential:
        claims === undefined
          ? null
          : {
              cluster: claims.cluster,
              namespace: claims.namespace,
              serviceAccount: claims.serviceAccount,
              expose: claims.expose,
              expires: new Date(claims.expires * 1000).toISOString(),
            },
      trustedClusters: this.store?.trustedClusters ?? [],
      credentialedPeers: this.peers?.countAccepted(Date.now() / 1000) ?? 0,
      refusals: this.refusals.list(),
    };
  }
}
