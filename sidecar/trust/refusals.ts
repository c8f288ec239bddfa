/**
 * Every trust refusal goes through here: counted (peertunnel_trust_refused_total{side,reason}),
 * logged (event per side, at most LOG_BURST lines per LOG_WINDOW_MS, the rest counted in the next
 * line) and kept, the newest MAX_RECENT_REFUSALS, for /status.
 */
import {
  type CredentialClaims,
  type CredentialRefusal,
  MAX_RECENT_REFUSALS,
} from '../../contracts/credential.js';
import type { TrustRefusalRecord, TrustSide } from '../../contracts/trust.js';
import type { SidecarMetrics } from '../admin/metrics.js';
import type { Logger } from '../node/logger.js';

const LOG_BURST = 20;
const LOG_WINDOW_MS = 10_000;

/** The stable `event` of a refusal's log line, by side. */
export const REFUSAL_EVENTS: Record<TrustSide, string> = {
  forward: 'provider_refused',
  expose: 'stream_unauthorized',
  exchange: 'credential_refused',
};

const MESSAGES: Record<TrustSide, string> = {
  forward: 'provider refused: its credential does not let it serve the name',
  expose: 'stream refused: the peer may not reach this service',
  exchange: 'credential refused on arrival',
};

export interface Refusal {
  side: TrustSide;
  peer: string;
  service?: string;
  reason: CredentialRefusal;
  /** What the peer's credential claimed, when it had a readable one. */
  claims?: CredentialClaims;
}

export class TrustRefusals {
  private readonly recent: TrustRefusalRecord[] = [];
  private windowStart = 0;
  private logged = 0;
  private suppressed = 0;

  constructor(
    private readonly metrics: SidecarMetrics,
    private readonly logger: Logger,
  ) {}

  record(r: Refusal): void {
    this.metrics.trustRefused.inc({ side: r.side, reason: r.reason });
    const workload = {
      cluster: r.claims?.cluster ?? null,
      namespace: r.claims?.namespace ?? null,
      serviceAccount: r.claims?.serviceAccount ?? null,
    };
    this.recent.push({
      at: new Date().toISOString(),
      side: r.side,
      peer: r.peer,
      service: r.service ?? null,
      reason: r.reason,
      ...workload,
    });
    if (this.recent.length > MAX_RECENT_REFUSALS) this.recent.shift();
    const now = Date.now();
    if (now - this.windowStart >= LOG_WINDOW_MS) {
      this.windowStart = now;
      this.logged = 0;
    }
    if (this.logged >= LOG_BURST) {
      this.suppressed++;
      return;
    }
    this.logged++;
    this.logger.warn(
      {
        event: REFUSAL_EVENTS[r.side],
        side: r.side,
        peer: r.peer,
        service: r.service,
        reason: r.reason,
        ...workload,
        suppressed: this.suppressed,
      },
      MESSAGES[r.side],
    );
    this.suppressed = 0;
  }

  list(): TrustRefusalRecord[] {
    return this.recent.map((r) => ({ ...r }));
  }
}
