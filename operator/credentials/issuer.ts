/**
 * `POST /credential` (contracts/credential-request.ts) on the operator's HTTPS server: a bounded
 * body, a proof that the caller holds its peer ID's key, a TokenReview of its projected token
 * (audience checked by the API server), a GET of the pod the token is bound to, then
 * `decideCredential` and the cluster key's signature. Every refusal is counted by reason
 * (`peertunnel_operator_credentials_refused_total`) and logged (`credential_refused`).
 */
import type { KeyObject } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { V1Pod } from '@kubernetes/client-node';
import { signCredential } from '../../contracts/credential.js';
import {
  CREDENTIAL_AUDIENCE,
  checkProof,
  type IssueRefusal,
  MAX_CREDENTIAL_REQUEST_BYTES,
  parseCredentialRequest,
} from '../../contracts/credential-request.js';
import type { PeerNetwork, PeerTunnel } from '../../crds/schema.js';
import type { Logger } from '../../sidecar/node/logger.js';
import { KubeApiError } from '../errors.js';
import type { KubeClient } from '../kube/client.js';
import type { OperatorMetrics } from '../metrics.js';
import { decideCredential, identityOf, type TokenReviewStatus } from './decide.js';
import { RateLimiter } from './rate-limit.js';

export interface CredentialIssuerInit {
  client: KubeClient;
  cluster: string;
  privateKey: KeyObject;
  tunnels(namespace: string): readonly PeerTunnel[];
  networks(namespace: string): readonly PeerNetwork[];
  allowRemoteExposeNamespaces: readonly string[];
  metrics: OperatorMetrics;
  logger: Logger;
  now?: () => number;
}

const STATUS: Partial<Record<IssueRefusal, number>> = {
  bad_request: 400,
  rate_limited: 429,
  unavailable: 503,
};

class Refusal extends Error {
  constructor(
    readonly reason: IssueRefusal,
    message: string,
    readonly detail: Record<string, unknown> = {},
  ) {
    super(message);
  }
}

export class CredentialIssuer {
  /** Before the TokenReview: an address flooding the issuer costs the API server nothing. */
  private readonly byAddress = new RateLimiter({ burst: 20, perSecond: 2, maxKeys: 10_000 });
  /** After it: a pod renews at half its credential's lifetime, far below this. */
  private readonly byPod = new RateLimiter({ burst: 6, perSecond: 0.5, maxKeys: 10_000 });

  constructor(private readonly init: CredentialIssuerInit) {}

  private nowMs(): number {
    return this.init.now?.() ?? Date.now();
  }

  handle(req: IncomingMessage, res: ServerResponse): void {
    const chunks: Buffer[] = [];
    let size = 0;
    let tooLarge = false;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_CREDENTIAL_REQUEST_BYTES) tooLarge = true;
      else chunks.push(c);
    });
    req.on('error', () => {});
    req.on('end', () => {
      const address = req.socket.remoteAddress ?? '?';
      this.issue(Buffer.concat(chunks).toString('utf8'), tooLarge, address).then(
        (credential) => {
          res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ credential }));
        },
        (err: unknown) => {
          const r =
            err instanceof Refusal ? err : new Refusal('unavailable', `internal error: ${String(err)}`);
          this.init.metrics.credentialsRefused.inc({ reason: r.reason });
          this.init.logger.warn(
            { event: 'credential_refused', reason: r.reason, address, ...r.detail },
            r.message,
          );
          res
            .writeHead(STATUS[r.reason] ?? 403, { 'content-type': 'application/json' })
            .end(JSON.stringify({ reason: r.reason, message: r.message }));
        },
      );
    });
  }

  /** The credential's text, or a Refusal. */
  private async issue(text: string, tooLarge: boolean, address: string): Promise<string> {
    if (tooLarge)
      throw new Refusal('bad_request', `a request is at most ${MAX_CREDENTIAL_REQUEST_BYTES} bytes`);
    if (!this.byAddress.take(address, this.nowMs()))
      throw new Refusal('rate_limited', 'too many requests from this address');
    const request = parseCredentialRequest(text);
    if (request === undefined) throw new Refusal('bad_request', 'expected {v: 1, token, peer, at, proof}');
    const proof = await checkProof(request, this.nowMs() / 1000);
    if (proof !== undefined)
      throw new Refusal(
        proof,
        proof === 'stale_proof'
          ? 'the proof was made too long ago (or the clocks differ)'
          : `the proof is not a signature of peer ${request.peer}`,
        { peer: request.peer },
      );
    const review = await this.review(request.token);
    const id = identityOf(review, CREDENTIAL_AUDIENCE);
    if ('kind' in id) throw new Refusal(id.reason, id.message, { peer: request.peer });
    const detail = {
      peer: request.peer,
      namespace: id.namespace,
      pod: id.pod,
      serviceAccount: id.serviceAccount,
    };
    if (!this.byPod.take(id.podUid, this.nowMs()))
      throw new Refusal('rate_limited', 'too many requests from this pod', detail);
    const pod = await this.getPod(id.namespace, id.pod);
    const decision = decideCredential({
      identity: id,
      pod,
      tunnels: this.init.tunnels(id.namespace),
      networks: this.init.networks(id.namespace),
      peer: request.peer,
      cluster: this.init.cluster,
      allowRemoteExposeNamespaces: this.init.allowRemoteExposeNamespaces,
      nowSeconds: this.nowMs() / 1000,
    });
    if (decision.kind === 'refused') throw new Refusal(decision.reason, decision.message, detail);
    const credential = signCredential(decision.claims, this.init.privateKey);
    this.init.metrics.credentialsIssued.inc();
    this.init.logger.info(
      {
        event: 'credential_issued',
        ...detail,
        network: decision.claims.network,
        expose: decision.claims.expose,
        expires: new Date(decision.claims.expires * 1000).toISOString(),
      },
      'credential issued',
    );
    return credential;
  }

  private async review(token: string): Promise<TokenReviewStatus> {
    try {
      const r = await this.init.client.request<{ status?: TokenReviewStatus }>(
        '/apis/authentication.k8s.io/v1/tokenreviews',
        {
          method: 'POST',
          body: {
            apiVersion: 'authentication.k8s.io/v1',
            kind: 'TokenReview',
            spec: { token, audiences: [CREDENTIAL_AUDIENCE] },
          },
          timeoutMs: 10_000,
        },
      );
      return r.status ?? {};
    } catch (err) {
      throw new Refusal('unavailable', `TokenReview failed: ${String(err)}`);
    }
  }

  private async getPod(namespace: string, name: string): Promise<V1Pod | undefined> {
    try {
      return await this.init.client.find<V1Pod>(`/api/v1/namespaces/${namespace}/pods/${name}`);
    } catch (err) {
      const status = err instanceof KubeApiError ? err.status : 0;
      throw new Refusal('unavailable', `reading pod ${namespace}/${name} failed (${status}): ${String(err)}`);
    }
  }
}
