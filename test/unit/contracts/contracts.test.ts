/**
 * The contracts both sides import (contracts/): each one round-trips through the code that writes
 * it and the code that reads it, and a value outside the contract is refused, never defaulted.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from '@jest/globals';
import { multiaddr } from '@multiformats/multiaddr';
import { parse as parseYaml } from 'yaml';
import { ContractError } from '../../../contracts/errors.js';
import { LIMITS } from '../../../contracts/limits.js';
import { isLogLevel, LOG_LEVELS } from '../../../contracts/log-levels.js';
import {
  CONNECTION_PATHS,
  connectionPathOf,
  parseConnectionPath,
  TUNNEL_PATHS,
  tunnelPathOf,
} from '../../../contracts/paths.js';
import { isCircuitAddress, isRelayedConnection } from '../../../contracts/relayed.js';
import { parseSidecarReport, type SidecarStatus } from '../../../contracts/sidecar-status.js';
import { VERSION } from '../../../contracts/version.js';
import { peerTunnelCrd } from '../../../crds/schema.js';
import { computeTunnelStatus } from '../../../operator/controller/status.js';
import { bootstrapPeers } from '../../../operator/inject/render.js';
import { injectSettings } from '../../../operator/inject/settings.js';
import { parseOperatorArgs } from '../../../operator/main.js';
import { parseConfig } from '../../../sidecar/config/config.js';
import { network, pod, tunnelFacts, tunnelFixture } from '../operator/fixtures.js';

const repoFile = (path: string) => readFileSync(new URL(`../../../${path}`, import.meta.url), 'utf8');

function contractErrorOf(fn: () => unknown): ContractError {
  try {
    fn();
  } catch (err) {
    if (err instanceof ContractError) return err;
    throw err;
  }
  throw new Error('expected a ContractError');
}

describe('connection paths', () => {
  it('map each sidecar path to one status spelling and back', () => {
    for (const p of CONNECTION_PATHS) {
      expect(TUNNEL_PATHS).toContain(tunnelPathOf(p));
      expect(connectionPathOf(tunnelPathOf(p))).toBe(p);
      expect(parseConnectionPath(JSON.parse(JSON.stringify(p)))).toBe(p);
    }
    expect(new Set(CONNECTION_PATHS.map(tunnelPathOf)).size).toBe(CONNECTION_PATHS.length);
    expect(tunnelPathOf('hole_punched')).toBe('hole-punched');
    expect(tunnelPathOf('port_mapped')).toBe('port-mapped');
  });

  it('refuse a value outside the list, and the summaries as one path', () => {
    for (const bad of ['hole-punched', 'sideways', '', null, 3]) {
      expect(contractErrorOf(() => parseConnectionPath(bad, 'x.path')).field).toBe('x.path');
    }
    expect(() => connectionPathOf('mixed')).toThrow(ContractError);
    expect(() => connectionPathOf('none')).toThrow(ContractError);
  });

  it('are the values the CRD allows in status.forwards[].path', () => {
    const forwards =
      peerTunnelCrd.spec.versions[0]?.schema?.openAPIV3Schema.properties?.status?.properties?.forwards?.items;
    const items = forwards !== undefined && !Array.isArray(forwards) ? forwards : undefined;
    expect(items?.properties?.path?.enum).toEqual([...TUNNEL_PATHS]);
  });
});

const status: SidecarStatus & { version: string } = {
  peerId: '12D3KooWme',
  ready: true,
  version: VERSION,
  exposes: [
    {
      name: 'db',
      host: '127.0.0.1',
      port: 5432,
      protocol: '/x/peertunnel/db/1.0.0',
      activeConnections: 1,
      servedConnections: 9,
      targetUp: true,
      targetFailures: 0,
    },
  ],
  forwards: [
    {
      name: 'api',
      bind: '127.0.0.1',
      localPort: 8080,
      listening: true,
      activeConnections: 0,
      providers: [
        ...CONNECTION_PATHS.map((path, i) => ({
          peer: `p${i}`,
          connected: true,
          path,
          healthy: true,
          failures: 0,
          picks: 3,
          attempts: 3,
        })),
        { peer: 'far', connected: false, path: null, healthy: false, failures: 2, picks: 0, attempts: 2 },
      ],
    },
  ],
};

describe('sidecar /status', () => {
  it('round-trips: what a sidecar writes is what the operator reads', () => {
    const read = parseSidecarReport(JSON.parse(JSON.stringify(status)));
    expect(read).toEqual({
      peerId: status.peerId,
      ready: true,
      exposes: [{ name: 'db' }],
      forwards: [
        {
          name: 'api',
          providers: status.forwards[0]?.providers.map(({ peer, connected, path, healthy, failures }) => ({
            peer,
            connected,
            path,
            healthy,
            failures,
          })),
        },
      ],
    });
  });

  it('gives every path its status spelling in a PeerTunnel status', () => {
    for (const path of CONNECTION_PATHS) {
      const report = parseSidecarReport({
        peerId: 'me',
        ready: true,
        forwards: [{ name: 'db', providers: [{ peer: 'x', connected: true, path }] }],
      });
      const s = computeTunnelStatus(
        tunnelFacts(tunnelFixture(1), { network, pods: [pod('a')], reports: new Map([['a', report]]) }),
      );
      expect(s.forwards).toEqual([{ name: 'db', providers: 1, path: tunnelPathOf(path) }]);
    }
  });

  it.each([
    ['not an object', 'ready', 'status'],
    ['no peer id', { ready: true }, 'peerId'],
    ['forwards not a list', { peerId: 'p', forwards: {} }, 'forwards'],
    ['a forward without a name', { peerId: 'p', forwards: [{ providers: [] }] }, 'forwards[0].name'],
    ['an expose without a name', { peerId: 'p', exposes: [{ port: 1 }] }, 'exposes[0].name'],
    [
      'a provider without a peer',
      { peerId: 'p', forwards: [{ name: 'a', providers: [{}] }] },
      'forwards[0].providers[0].peer',
    ],
    [
      'an unknown path',
      { peerId: 'p', forwards: [{ name: 'a', providers: [{ peer: 'x', path: 'teleported' }] }] },
      'forwards[0].providers[0].path',
    ],
    [
      "the CRD's spelling",
      { peerId: 'p', forwards: [{ name: 'a', providers: [{ peer: 'x', path: 'hole-punched' }] }] },
      'forwards[0].providers[0].path',
    ],
  ])('refuses %s, naming the field', (_what, body, field) => {
    const err = contractErrorOf(() => parseSidecarReport(body));
    expect(err.field).toBe(field);
    expect(err.message.split('\n')).toHaveLength(1);
  });
});

describe('config limits', () => {
  const key = { swarmKey: { file: '/k' } };
  const peer = (i: number) =>
    `/ip4/192.0.2.${i % 250}/tcp/${4000 + i}/p2p/12D3KooWGzBkkmGXdkaBLMW4S37Cr8nqHU5DfZBG4AShdXjd1Cxn`;
  const lists = {
    listen: (n: number) => ({ listen: Array.from({ length: n }, (_, i) => `/ip4/0.0.0.0/tcp/${4000 + i}`) }),
    announce: (n: number) => ({
      announce: Array.from({ length: n }, (_, i) => `/ip4/192.0.2.1/tcp/${4000 + i}`),
    }),
    bootstrap: (n: number) => ({ bootstrap: Array.from({ length: n }, (_, i) => peer(i)) }),
    publicRanges: (n: number) => ({ publicRanges: Array.from({ length: n }, (_, i) => `10.${i}.0.0/16`) }),
    exposes: (n: number) => ({
      expose: Array.from({ length: n }, (_, i) => ({ name: `s${i}`, port: 1000 + i })),
    }),
    forwards: (n: number) => ({
      forward: Array.from({ length: n }, (_, i) => ({ name: `s${i}`, localPort: 1000 + i })),
    }),
  } as const;

  it.each(Object.keys(lists) as Array<keyof typeof lists>)(
    'node config takes %s up to the limit, not one more',
    (k) => {
      expect(() => parseConfig({ ...key, ...lists[k](LIMITS[k]) })).not.toThrow();
      expect(() => parseConfig({ ...key, ...lists[k](LIMITS[k] + 1) })).toThrow(/invalid config/);
    },
  );

  it('node config takes relay reservations up to the limit', () => {
    expect(
      parseConfig({ ...key, nat: { relayReservations: LIMITS.relayReservations } }).nat.relayReservations,
    ).toBe(LIMITS.relayReservations);
    expect(() => parseConfig({ ...key, nat: { relayReservations: LIMITS.relayReservations + 1 } })).toThrow(
      `expected an integer from 0 to ${LIMITS.relayReservations}`,
    );
  });

  it('the operator renders no more bootstrap peers than a node takes', () => {
    const many = {
      ...network,
      spec: { ...network.spec, bootstrap: lists.bootstrap(LIMITS.bootstrap + 5).bootstrap },
    };
    const peers = bootstrapPeers(many);
    expect(peers).toHaveLength(LIMITS.bootstrap);
    expect(() => parseConfig({ ...key, bootstrap: peers })).not.toThrow();
  });
});

describe('log levels', () => {
  it('are accepted by the node config, the operator flag and its settings, and the chart', () => {
    for (const level of LOG_LEVELS) {
      expect(parseConfig({ swarmKey: { file: '/k' }, log: { level } }).log.level).toBe(level);
      expect(injectSettings({ operatorNamespace: 'ops', image: 'i:1', logLevel: level }).logLevel).toBe(
        level,
      );
      expect(
        parseOperatorArgs(['--sidecar-image', 'i:1', '--log-level', level], {
          POD_NAMESPACE: 'ops',
          POD_NAME: 'p',
        }).logLevel,
      ).toBe(level);
    }
    const schema = JSON.parse(repoFile('charts/peertunnel/values.schema.json')) as {
      definitions: { logLevel: { enum: string[] } };
    };
    expect(schema.definitions.logLevel.enum).toEqual([...LOG_LEVELS]);
  });

  it('refuse any other level everywhere', () => {
    expect(isLogLevel('loud')).toBe(false);
    expect(() => parseConfig({ swarmKey: { file: '/k' }, log: { level: 'loud' } })).toThrow(/log\.level/);
    expect(() =>
      injectSettings({ operatorNamespace: 'ops', image: 'i:1', logLevel: 'loud' as 'info' }),
    ).toThrow(/logLevel/);
    expect(() =>
      parseOperatorArgs(['--sidecar-image', 'i:1', '--log-level', 'loud'], {
        POD_NAMESPACE: 'ops',
        POD_NAME: 'p',
      }),
    ).toThrow(/--log-level/);
  });
});

describe('relayed connections', () => {
  const conn = (addr: string, limits?: object) => ({ remoteAddr: multiaddr(addr), limits });
  it('are the ones through a circuit address or with limits', () => {
    const circuit =
      '/ip4/203.0.113.1/tcp/4001/p2p/12D3KooWGzBkkmGXdkaBLMW4S37Cr8nqHU5DfZBG4AShdXjd1Cxn/p2p-circuit';
    expect(isRelayedConnection(conn(circuit))).toBe(true);
    expect(isRelayedConnection(conn('/ip4/203.0.113.1/tcp/4001', { bytes: 1n }))).toBe(true);
    expect(isRelayedConnection(conn('/ip4/203.0.113.1/tcp/4001'))).toBe(false);
    expect(isCircuitAddress(circuit)).toBe(true);
    expect(isCircuitAddress(multiaddr(circuit))).toBe(true);
    expect(isCircuitAddress('/ip4/203.0.113.1/tcp/4001')).toBe(false);
  });
});

describe('version', () => {
  it('is the one package.json and the chart say', () => {
    expect((JSON.parse(repoFile('package.json')) as { version: string }).version).toBe(VERSION);
    expect((parseYaml(repoFile('charts/peertunnel/Chart.yaml')) as { appVersion: string }).appVersion).toBe(
      VERSION,
    );
  });
});
