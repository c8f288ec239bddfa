/**
 * Swarm-key rollover on the operator's side: the sidecar's volume and config carry the next key
 * when the network names one (operator/inject/swarm-key.ts), the /status contract reads each
 * sidecar's keys (contracts/sidecar-status.ts), and the network's status says whether the old key
 * is still in use (operator/controller/rollover-status.ts, network-status.ts).
 */
import { describe, expect, it } from '@jest/globals';
import { parseSidecarReport, type SidecarReport } from '../../../../contracts/sidecar-status.js';
import type { PeerNetwork } from '../../../../crds/schema.js';
import { computeNetworkStatus } from '../../../../operator/controller/network-status.js';
import { computeRollover } from '../../../../operator/controller/rollover-status.js';
import { NEXT_SWARM_KEY_FILE, SWARM_KEY_FILE } from '../../../../operator/inject/render.js';
import { swarmKeyConfig, swarmKeyVolume } from '../../../../operator/inject/swarm-key.js';
import { parseConfig } from '../../../../sidecar/config/config.js';

const network = (next?: { name: string; key?: string }): PeerNetwork => ({
  apiVersion: 'peertunnel.io/v1alpha1',
  kind: 'PeerNetwork',
  metadata: { name: 'mesh', namespace: 'shop', generation: 1 },
  spec: {
    swarmKeySecretRef: { name: 'mesh-key' },
    ...(next === undefined ? {} : { nextSwarmKeySecretRef: next }),
    bootstrap: ['/ip4/203.0.113.1/tcp/4001/p2p/12D3KooWGzBkkmGXdkaBLMW4S37Cr8nqHU5DfZBG4AShdXjd1Cxn'],
  },
});

const report = (next: boolean | undefined, current: number, onNext: number): SidecarReport => ({
  peerId: 'p',
  ready: true,
  exposes: [],
  forwards: [],
  ...(next === undefined ? {} : { swarmKey: { next, connections: { current, next: onNext } } }),
});

describe('the next swarm key in a sidecar', () => {
  it('is a second file of the one key volume, named in the config', () => {
    const net = network({ name: 'mesh-key-2', key: 'k' });
    const volume = swarmKeyVolume(net);
    expect(volume.secret).toBeUndefined();
    expect(volume.projected?.sources?.map((s) => [s.secret?.name, s.secret?.items])).toEqual([
      ['mesh-key', [{ key: 'swarm.key', path: 'swarm.key' }]],
      ['mesh-key-2', [{ key: 'k', path: 'next-swarm.key' }]],
    ]);
    const config = swarmKeyConfig(net);
    expect(config).toEqual({
      swarmKey: { file: SWARM_KEY_FILE },
      nextSwarmKey: { file: NEXT_SWARM_KEY_FILE },
    });
    expect(NEXT_SWARM_KEY_FILE.startsWith(SWARM_KEY_FILE.slice(0, SWARM_KEY_FILE.lastIndexOf('/')))).toBe(
      true,
    );
  });

  it('is absent without one, and the volume is the plain Secret volume it always was', () => {
    expect(swarmKeyVolume(network()).secret?.secretName).toBe('mesh-key');
    expect(swarmKeyConfig(network())).toEqual({ swarmKey: { file: SWARM_KEY_FILE } });
  });

  it('is refused by the node config in one line naming the field when malformed', () => {
    expect(() => parseConfig({ swarmKey: { file: '/k' }, nextSwarmKey: { file: '' } })).toThrow(
      /^invalid config: nextSwarmKey\.file: expected a file path/,
    );
  });
});

describe('a sidecar report of its swarm keys', () => {
  it('is read when present and refused, naming the field, when malformed', () => {
    const body = { peerId: 'p', ready: true, swarmKey: { next: true, connections: { current: 2, next: 3 } } };
    expect(parseSidecarReport(body).swarmKey).toEqual({ next: true, connections: { current: 2, next: 3 } });
    expect(parseSidecarReport({ peerId: 'p' }).swarmKey).toBeUndefined();
    expect(() =>
      parseSidecarReport({ peerId: 'p', swarmKey: { next: true, connections: { current: -1, next: 0 } } }),
    ).toThrow(/swarmKey\.connections\.current/);
  });
});

describe('the rollover status of a network', () => {
  it('says the old key is in use while a sidecar lacks the next key or a connection uses the old one', () => {
    expect(computeRollover([report(true, 0, 4), report(false, 2, 0)]).oldKeyInUse).toBe(true);
    expect(computeRollover([report(true, 1, 4), report(true, 0, 2)])).toEqual({
      sidecarsReporting: 2,
      sidecarsWithNextKey: 2,
      connectionsOnCurrentKey: 1,
      connectionsOnNextKey: 6,
      oldKeyInUse: true,
    });
    // A sidecar that does not report its keys (an older version) holds no next key.
    expect(computeRollover([report(true, 0, 4), report(undefined, 0, 0)]).oldKeyInUse).toBe(true);
    expect(computeRollover([]).oldKeyInUse).toBe(true);
  });

  it('says it is not once every sidecar holds the next key and no connection uses the old one', () => {
    expect(computeRollover([report(true, 0, 4), report(true, 0, 1)]).oldKeyInUse).toBe(false);
  });

  it('is published, and a missing next-key Secret makes the network not ready', () => {
    const rollover = computeRollover([report(true, 0, 1)]);
    const base = { tunnels: 1, relayAddresses: undefined, relayError: undefined, now: new Date(0) };
    const ok = computeNetworkStatus({
      ...base,
      network: network({ name: 'k2' }),
      swarmKey: 'ok',
      nextSwarmKey: 'ok',
      rollover,
    });
    expect(ok.swarmKeyRollover).toEqual(rollover);
    expect(ok.conditions?.[0]?.status).toBe('True');
    const missing = computeNetworkStatus({
      ...base,
      network: network({ name: 'k2' }),
      swarmKey: 'ok',
      nextSwarmKey: 'secretMissing',
    });
    expect(missing.conditions?.[0]).toMatchObject({ status: 'False', reason: 'NextSwarmKeyMissing' });
  });
});
