/**
 * `POST /credential/trust` (contracts/trust-sync.ts) on the operator's HTTPS server: a bounded
 * body, a per-address rate limit, then `decideTrust` against the PeerNetwork cache and a per-peer
 * rate limit. No API call: a poll every few seconds per sidecar costs the API server nothing.
 * Refusals are counted with the credential refusals
 * (`peertunnel_operator_credentials_refused_total{reason}`) and logged (`trust_request_refused`).
 */
import { createPublicKey, type KeyObject } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { MAX_TRUST_REQUEST_BYTES, parseTrustRequest, type TrustRefusal } from '../../contracts/trust-sync.js';
import type { PeerNetwork } from '../../crds/schema.js';
import type { Logger } from '../../sidecar/node/logger.js';
import type { OperatorMetrics } from '../metrics.js';
import { RateLimiter } from './rate-limit.js';
import { decideTrust } from './trust-answer.js';

export interface TrustHandlerInit {
  cluster: string;
  publicKey: string;
  privateKey: KeyObject;
  networks(namespace: string): readonly PeerNetwork[];
  metrics: OperatorMetrics;
  logger: Logger;
  now?: () => number;
}

const STATUS: Partial<Record<TrustRefusal, number>> = {
  bad_request: 400,
  network_gone: 404,
  network_ambiguous: 409,
  rate_limited: 429,
};

export class TrustHandler {
  /** Every pod of a node may share an address behind SNAT: generous, and only against floods. */
  private readonly byAddress = new RateLimiter({ burst: 50, perSecond: 20, maxKeys: 10_000 });
  /** A sidecar asks every few seconds; twice a second is far above that. */
  private readonly byPeer = new RateLimiter({ burst: 5, perSecond: 2, maxKeys: 10_000 });
  private readonly key: KeyObject;

  constructor(private readonly init: TrustHandlerInit) {
    this.key = createPublicKey(init.privateKey);
  }

  private nowMs(): number {
    return this.init.now?.() ?? Date.now();
  }

  handle(req: IncomingMessage, res: ServerResponse): void {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size <= MAX_TRUST_REQUEST_BYTES) chunks.push(c);
    });
    req.on('error', () => {});
    req.on('end', () => {
      const address = req.socket.remoteAddress ?? '?';
      const text = size > MAX_TRUST_REQUEST_BYTES ? undefined : Buffer.concat(chunks).toString('utf8');
      void this.answer(text, address).then(({ status, body }) => {
        res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
      });
    });
  }

  private async answer(text: string | undefined, address: string): Promise<{ status: number; body: object }> {
    if (!this.byAddress.take(address, this.nowMs()))
      return this.refused('rate_limited', 'too many requests from this address', address);
    const request = text === undefined ? undefined : parseTrustRequest(text);
    if (request === undefined)
      return this.refused(
        'bad_request',
        `expected {v: 1, credential, at, proof} of at most ${MAX_TRUST_REQUEST_BYTES} bytes`,
        address,
      );
    let d: Awaited<ReturnType<typeof decideTrust>>;
    try {
      d = await decideTrust({
        request,
        cluster: this.init.cluster,
        publicKey: this.init.publicKey,
        key: this.key,
        networks: this.init.networks,
        nowSeconds: this.nowMs() / 1000,
      });
    } catch (err) {
      return this.refused('bad_request', `unreadable request: ${String(err)}`, address);
    }
    if (d.kind === 'refused') return this.refused(d.reason, d.message, address, d.peer);
    const { peer, namespace } = d.credential.claims;
    if (!this.byPeer.take(peer, this.nowMs()))
      return this.refused('rate_limited', 'too many requests from this peer', address, peer);
    this.init.logger.debug(
      {
        event: 'trust_answered',
        peer,
        namespace,
        network: d.answer.network,
        clusters: d.answer.clusters.map((c) => c.name),
      },
      'trusted clusters sent to a sidecar',
    );
    return { status: 200, body: d.answer };
  }

  private refused(
    reason: TrustRefusal,
    message: string,
    address: string,
    peer?: string,
  ): { status: number; body: object } {
    this.init.metrics.credentialsRefused.inc({ reason });
    this.init.logger.warn({ event: 'trust_request_refused', reason, address, peer }, message);
    return { status: STATUS[reason] ?? 403, body: { reason, message } };
  }
}
