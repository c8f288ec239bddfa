/**
 * The network's swarm key(s) as the sidecar and the relays get them: read-only files of one pod
 * volume, never env vars (readable by anyone with pods/exec, and in /proc/<pid>/environ, for the
 * life of the process). During a rollover (spec.nextSwarmKeySecretRef, docs/architecture.md
 * Swarm-key rollover) the volume projects both Secrets' keys, and the config names both files.
 */
import type { V1Volume } from '@kubernetes/client-node';
import { DEFAULTS, type PeerNetwork } from '../../crds/schema.js';
import type { NodeConfigInput } from '../../sidecar/config/config.js';

/** The pod volume holding the network's swarm key, and where the sidecar mounts it (read-only). */
export const SWARM_KEY_VOLUME = 'peertunnel-swarm-key';
export const SWARM_KEY_DIR = '/var/run/secrets/peertunnel.io/swarm-key';
export const SWARM_KEY_FILE = `${SWARM_KEY_DIR}/swarm.key`;
export const NEXT_SWARM_KEY_FILE = `${SWARM_KEY_DIR}/next-swarm.key`;
/** Readable by the sidecar's non-root user without an fsGroup on the pod; only the sidecar mounts it. */
const MODE = 0o444;

export function swarmKeyVolume(network: PeerNetwork): V1Volume {
  const { swarmKeySecretRef: ref, nextSwarmKeySecretRef: next } = network.spec;
  const item = { key: ref.key ?? DEFAULTS.swarmKeySecretKey, path: 'swarm.key' };
  if (next === undefined)
    return {
      name: SWARM_KEY_VOLUME,
      secret: { secretName: ref.name, items: [item], defaultMode: MODE, optional: false },
    };
  return {
    name: SWARM_KEY_VOLUME,
    projected: {
      defaultMode: MODE,
      sources: [
        { secret: { name: ref.name, items: [item], optional: false } },
        {
          secret: {
            name: next.name,
            items: [{ key: next.key ?? DEFAULTS.swarmKeySecretKey, path: 'next-swarm.key' }],
            optional: false,
          },
        },
      ],
    },
  };
}

/** The node config's key files. */
export function swarmKeyConfig(network: PeerNetwork): Pick<NodeConfigInput, 'swarmKey' | 'nextSwarmKey'> {
  return {
    swarmKey: { file: SWARM_KEY_FILE },
    ...(network.spec.nextSwarmKeySecretRef === undefined
      ? {}
      : { nextSwarmKey: { file: NEXT_SWARM_KEY_FILE } }),
  };
}
