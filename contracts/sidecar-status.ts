/**
 * The part of a sidecar's `/status` that crosses a process boundary: the sidecar writes it
 * (`sidecar/node/node-status.ts` extends it with what only people read), the operator reads it to compute
 * PeerTunnel status. One definition, so the two cannot drift; the reader checks what it gets.
 */

import { CREDENTIAL_REFUSALS, type CredentialRefusal, MAX_RECENT_REFUSALS } from './credential.js';
import { ContractError } from './errors.js';
import { type ConnectionPath, parseConnectionPath } from './paths.js';
import { SWARM_KEY_NAMES, type SwarmKeyName } from './swarm-keys.js';
import type { TrustRefusalRecord, TrustSide, TrustStatus } from './trust.js';

export interface ProviderStatus {
  peer: string;
  connected: boolean;
  /** The path of the connection a new stream would use; null when not connected. */
  path: ConnectionPath | null;
  /** Not backing off after a failed attempt. */
  healthy: boolean;
  /** Failed attempts since the last success. */
  failures: number;
  /** Streams opened to it. */
  picks: number;
  /** New connections that tried it (a failed one is tried only when no other is left, or once back). */
  attempts: number;
}

export interface ForwardStatus {
  name: string;
  bind: string;
  localPort: number;
  listening: boolean;
  activeConnections: number;
  providers: ProviderStatus[];
}

export interface ExposeStatus {
  name: string;
  host: string;
  port: number;
  protocol: string;
  /** False while the target refuses (the name is then not announced). */
  targetUp: boolean;
  activeConnections: number;
  servedConnections: number;
  /** Streams whose target connect failed. */
  targetFailures: number;
}

/** The swarm keys a node holds and the open connections under each (a rollover's progress). */
export interface SwarmKeyStatus {
  /** Whether the node holds a next key beside its current one. */
  next: boolean;
  connections: Record<SwarmKeyName, number>;
}

/** What every sidecar's /status carries; the node adds its own fields beside these. */
export interface SidecarStatus {
  peerId: string;
  ready: boolean;
  /** Absent from sidecars older than the rollover. */
  swarmKey?: SwarmKeyStatus;
  exposes: ExposeStatus[];
  forwards: ForwardStatus[];
  /** Credentials and recent refusals (contracts/trust.ts); absent from sidecars before them. */
  trust?: TrustStatus;
}

/** A provider as the operator reads it. */
export type ReportedProvider = Pick<ProviderStatus, 'peer' | 'connected' | 'path' | 'healthy' | 'failures'>;

/** The part of a sidecar's /status the operator reads. */
export interface SidecarReport {
  peerId: string;
  ready: boolean;
  /** Absent when the sidecar does not say (a version before the rollover). */
  swarmKey?: SwarmKeyStatus;
  exposes: Array<Pick<ExposeStatus, 'name'>>;
  forwards: Array<{ name: string; providers: ReportedProvider[] }>;
  /** Absent from open-network sidecars and those before credentials. */
  trust?: { mode: TrustStatus['mode']; refusals: TrustRefusalRecord[] };
}

const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

function record(v: unknown, field: string): Record<string, unknown> {
  if (!isRecord(v)) throw new ContractError(field, `expected an object, got ${kindOf(v)}`);
  return v;
}

function string(v: unknown, field: string): string {
  if (typeof v !== 'string') throw new ContractError(field, `expected a string, got ${kindOf(v)}`);
  return v;
}

/** A list that may be absent (a sidecar with nothing to report omits it), but not something else. */
function list(v: unknown, field: string): unknown[] {
  if (v === undefined) return [];
  if (!Array.isArray(v)) throw new ContractError(field, `expected a list, got ${kindOf(v)}`);
  return v;
}

/** A count: a non-negative integer. */
function count(v: unknown, field: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0)
    throw new ContractError(field, `expected a non-negative integer, got ${kindOf(v)}`);
  return v;
}

function swarmKeyStatus(v: unknown): SwarmKeyStatus {
  const s = record(v, 'swarmKey');
  if (typeof s.next !== 'boolean')
    throw new ContractError('swarmKey.next', `expected a boolean, got ${kindOf(s.next)}`);
  const c = record(s.connections, 'swarmKey.connections');
  const connections = Object.fromEntries(
    SWARM_KEY_NAMES.map((k) => [k, count(c[k], `swarmKey.connections.${k}`)]),
  ) as Record<SwarmKeyName, number>;
  return { next: s.next, connections };
}

const SIDES: readonly TrustSide[] = ['forward', 'expose', 'exchange'];
const nameOrNull = (v: unknown): string | null => (typeof v === 'string' && v.length <= 253 ? v : null);

/**
 * The trust part: the mode and the newest refusals (at most MAX_RECENT_REFUSALS). A refusal with a
 * side or reason this version does not know (a newer sidecar's) is left out, not an error.
 */
function trustReport(v: unknown): NonNullable<SidecarReport['trust']> {
  const t = record(v, 'trust');
  if (t.mode !== 'open' && t.mode !== 'credentialed')
    throw new ContractError('trust.mode', 'expected "open" or "credentialed"');
  const refusals = list(t.refusals, 'trust.refusals')
    .slice(-MAX_RECENT_REFUSALS)
    .flatMap((r, i): TrustRefusalRecord[] => {
      const at = `trust.refusals[${i}]`;
      const x = record(r, at);
      const side = x.side as TrustSide;
      const reason = x.reason as CredentialRefusal;
      if (!SIDES.includes(side) || !CREDENTIAL_REFUSALS.includes(reason)) return [];
      return [
        {
          at: string(x.at, `${at}.at`).slice(0, 64),
          side,
          peer: string(x.peer, `${at}.peer`).slice(0, 128),
          service: nameOrNull(x.service),
          reason,
          cluster: nameOrNull(x.cluster),
          namespace: nameOrNull(x.namespace),
          serviceAccount: nameOrNull(x.serviceAccount),
        },
      ];
    });
  return { mode: t.mode, refusals };
}

const kindOf = (v: unknown): string => (v === null ? 'null' : Array.isArray(v) ? 'a list' : typeof v);

/**
 * Reads a /status body (parsed JSON). Fields this reader does not use are ignored, so a newer
 * sidecar may add some. Throws ContractError naming the field for a body that is not a status, an
 * entry without its name, or a path this version does not know. `ready` absent reads as not ready;
 * `healthy` and `failures` are advisory (sidecars before they existed omit them): a value that is
 * not a boolean or a non-negative number reads as healthy with no failures.
 */
export function parseSidecarReport(body: unknown): SidecarReport {
  const b = record(body, 'status');
  return {
    peerId: string(b.peerId, 'peerId'),
    ready: b.ready === true,
    ...(b.swarmKey === undefined ? {} : { swarmKey: swarmKeyStatus(b.swarmKey) }),
    ...(b.trust === undefined || b.trust === null ? {} : { trust: trustReport(b.trust) }),
    exposes: list(b.exposes, 'exposes').map((e, i) => ({
      name: string(record(e, `exposes[${i}]`).name, `exposes[${i}].name`),
    })),
    forwards: list(b.forwards, 'forwards').map((f, i) => {
      const at = `forwards[${i}]`;
      const fw = record(f, at);
      return {
        name: string(fw.name, `${at}.name`),
        providers: list(fw.providers, `${at}.providers`).map((p, j) => {
          const pat = `${at}.providers[${j}]`;
          const pr = record(p, pat);
          return {
            peer: string(pr.peer, `${pat}.peer`),
            connected: pr.connected === true,
            path:
              pr.path === null || pr.path === undefined ? null : parseConnectionPath(pr.path, `${pat}.path`),
            healthy: pr.healthy !== false,
            failures:
              typeof pr.failures === 'number' && Number.isFinite(pr.failures) ? Math.max(0, pr.failures) : 0,
          };
        }),
      };
    }),
  };
}
