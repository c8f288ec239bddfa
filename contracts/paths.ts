/**
 * How a connection reaches its peer, in the two spellings of one list:
 * - the sidecar's (`/status`, logs, the `path` label of `peertunnel_connections`): snake_case, as
 *   Prometheus label values are;
 * - the PeerTunnel status's (what `kubectl get peertunnels` shows): kebab-case, plus `none` (no
 *   connection yet) and `mixed` (different pods, different paths) for a summary.
 * Each sidecar path has exactly one status spelling. Any other value is an error, never a default:
 * a sidecar of a newer version with a path this operator does not know must not read as `direct`.
 */
import { ContractError } from './errors.js';

export const CONNECTION_PATHS = ['direct', 'hole_punched', 'relayed', 'port_mapped'] as const;
export type ConnectionPath = (typeof CONNECTION_PATHS)[number];

export const TUNNEL_PATHS = ['none', 'direct', 'hole-punched', 'port-mapped', 'relayed', 'mixed'] as const;
export type TunnelPath = (typeof TUNNEL_PATHS)[number];

const IN_STATUS = {
  direct: 'direct',
  hole_punched: 'hole-punched',
  relayed: 'relayed',
  port_mapped: 'port-mapped',
} as const satisfies Record<ConnectionPath, TunnelPath>;

/** The PeerTunnel status spelling of a sidecar path. */
export const tunnelPathOf = (path: ConnectionPath): TunnelPath => IN_STATUS[path];

/** The sidecar path a status spelling stands for; `none` and `mixed` stand for no one path. */
export function connectionPathOf(path: TunnelPath): ConnectionPath {
  const found = CONNECTION_PATHS.find((p) => IN_STATUS[p] === path);
  if (found === undefined)
    throw new ContractError('path', `"${path}" is a summary, not one connection's path`);
  return found;
}

/** Reads a sidecar path from JSON; throws ContractError naming `field` for anything else. */
export function parseConnectionPath(value: unknown, field = 'path'): ConnectionPath {
  const found = CONNECTION_PATHS.find((p) => p === value);
  if (found === undefined)
    throw new ContractError(
      field,
      `unknown path ${JSON.stringify(value)}: expected one of ${CONNECTION_PATHS.join(', ')}`,
    );
  return found;
}
