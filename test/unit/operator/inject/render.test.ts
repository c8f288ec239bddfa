import { dirname } from 'node:path';
import { describe, expect, it } from '@jest/globals';
import type { V1Container } from '@kubernetes/client-node';
import type { PeerNetwork, PeerTunnel, TunnelExpose, TunnelForward } from '../../../../crds/schema.js';
import { SkipReason } from '../../../../operator/inject/reasons.js';
import {
  canonicalJson,
  memoryLimitMiB,
  type RenderResult,
  renderSidecar,
  SWARM_KEY_FILE,
  SWARM_KEY_VOLUME,
} from '../../../../operator/inject/render.js';
import { injectSettings } from '../../../../operator/inject/settings.js';
import { CONFIG_ENV, DEFAULT_SWARM_KEY_ENV, parseConfig } from '../../../../sidecar/config/config.js';

const BOOT = '/dns4/relay.example.net/tcp/4001/p2p/12D3KooWGzBkkmGXdkaBLMW4S37Cr8nqHU5DfZBG4AShdXjd1Cxn';
const settings = injectSettings({ operatorNamespace: 'peertunnel-system', image: 'example/peertunnel:1' });

function network(spec: Partial<PeerNetwork['spec']> = {}, status?: PeerNetwork['status']): PeerNetwork {
  return {
    apiVersion: 'peertunnel.io/v1alpha1',
    kind: 'PeerNetwork',
    metadata: { name: 'mesh', namespace: 'shop' },
    spec: { swarmKeySecretRef: { name: 'mesh-key', key: 'swarm.key' }, bootstrap: [BOOT], ...spec },
    ...(status === undefined ? {} : { status }),
  };
}

function tunnel(
  name: string,
  expose: TunnelExpose[] = [],
  forward: TunnelForward[] = [],
  net = 'mesh',
): PeerTunnel {
  return {
    apiVersion: 'peertunnel.io/v1alpha1',
    kind: 'PeerTunnel',
    metadata: { name, namespace: 'shop' },
    spec: { networkRef: { name: net }, selector: { matchLabels: { app: name } }, expose, forward },
  };
}

function rendered(r: RenderResult) {
  if (r.kind !== 'rendered') throw new Error(`expected a sidecar, got ${r.reason}: ${r.message}`);
  return r;
}

const envOf = (c: V1Container, name: string) => c.env?.find((e) => e.name === name);

describe('renderSidecar', () => {
  const one = rendered(
    renderSidecar({
      tunnels: [tunnel('db', [{ name: 'orders-db', port: 5432 }], [{ name: 'cache', localPort: 6379 }])],
      network: network(),
      settings,
    }),
  );

  it('renders a config that the sidecar accepts, carried in PEERTUNNEL_CONFIG', () => {
    const env = envOf(one.container, CONFIG_ENV)?.value ?? '';
    expect(JSON.parse(env)).toEqual(one.config);
    const cfg = parseConfig(JSON.parse(env));
    expect(cfg.role).toBe('sidecar');
    expect(cfg.expose).toEqual([{ name: 'orders-db', port: 5432, host: '127.0.0.1', idleTimeoutSeconds: 0 }]);
    // The sidecar's memory limit (256Mi by default) sizes its stream limits.
    expect(cfg.limits.memoryMiB).toBe(256);
    expect(cfg.forward).toEqual([{ name: 'cache', localPort: 6379, bind: '127.0.0.1' }]);
    expect(cfg.bootstrap).toEqual([BOOT]);
    expect(cfg.admin.listen).toBe('0.0.0.0:9090');
    expect(cfg.swarmKey).toEqual({ file: SWARM_KEY_FILE });
  });

  it('mounts the swarm key read-only from the network Secret; no env var carries it', () => {
    expect(one.volume).toEqual({
      name: SWARM_KEY_VOLUME,
      secret: {
        secretName: 'mesh-key',
        items: [{ key: 'swarm.key', path: 'swarm.key' }],
        defaultMode: 0o444,
        optional: false,
      },
    });
    expect(one.container.volumeMounts).toEqual([
      { name: SWARM_KEY_VOLUME, mountPath: dirname(SWARM_KEY_FILE), readOnly: true },
    ]);
    // Neither a Secret reference nor the key's variable name anywhere in the environment.
    expect((one.container.env ?? []).filter((e) => e.valueFrom !== undefined)).toEqual([]);
    expect(envOf(one.container, DEFAULT_SWARM_KEY_ENV)).toBeUndefined();
    expect(one.container.envFrom).toBeUndefined();
    const defaulted = rendered(
      renderSidecar({
        tunnels: [tunnel('db', [{ name: 'orders-db', port: 5432 }])],
        network: network({ swarmKeySecretRef: { name: 'k', key: 'mine' } }),
        settings,
      }),
    );
    expect(defaulted.volume.secret).toMatchObject({
      secretName: 'k',
      items: [{ key: 'mine', path: 'swarm.key' }],
    });
  });

  it('drains for two thirds of the pod grace period (20 s of the default 30)', () => {
    const drain = (grace?: number) =>
      rendered(
        renderSidecar({
          tunnels: [tunnel('db', [{ name: 'orders-db', port: 5432 }])],
          network: network(),
          settings,
          terminationGracePeriodSeconds: grace,
        }),
      ).config.shutdown?.drainSeconds;
    expect([drain(), drain(30), drain(3), drain(0), drain(600)]).toEqual([20, 20, 2, 0, 400]);
  });

  it('runs `peertunnel node` through the image entrypoint, with probes on the admin port', () => {
    expect(one.container.command).toBeUndefined();
    expect(one.container.args).toEqual(['node']);
    expect(one.container.readinessProbe?.httpGet).toMatchObject({ path: '/readyz', port: 'pt-admin' });
    expect(one.container.livenessProbe?.httpGet).toMatchObject({ path: '/livez', port: 'pt-admin' });
    expect(one.container.ports).toContainEqual({ name: 'pt-admin', containerPort: 9090, protocol: 'TCP' });
    expect(one.container.resources?.requests).toEqual({ cpu: '10m', memory: '64Mi' });
  });

  it('passes the restricted Pod Security Standard', () => {
    const sc = one.container.securityContext;
    expect(sc?.runAsNonRoot).toBe(true);
    expect(sc?.runAsUser).toBeGreaterThan(0);
    expect(sc?.allowPrivilegeEscalation).toBe(false);
    expect(sc?.privileged).toBe(false);
    expect(sc?.capabilities?.drop).toEqual(['ALL']);
    expect(sc?.capabilities?.add).toBeUndefined();
    expect(sc?.seccompProfile?.type).toBe('RuntimeDefault');
    expect(sc?.readOnlyRootFilesystem).toBe(true);
    // Nothing that restricted forbids: host ports, host namespaces are pod-level and untouched.
    expect(one.container.ports?.every((p) => p.hostPort === undefined)).toBe(true);
  });

  it('marks a native sidecar with restartPolicy Always, a plain one without', () => {
    expect(one.container.restartPolicy).toBe('Always');
    const plain = rendered(
      renderSidecar({
        tunnels: [tunnel('db', [{ name: 'orders-db', port: 5432 }])],
        network: network(),
        settings: { ...settings, nativeSidecars: false },
      }),
    );
    expect(plain.container.restartPolicy).toBeUndefined();
    expect(plain.hash).not.toBe(one.hash);
  });

  it('puts spec.bootstrap first, then the relays from status, once each', () => {
    const relay = '/ip4/203.0.113.20/tcp/4001/p2p/12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo';
    const r = rendered(
      renderSidecar({
        tunnels: [tunnel('db', [{ name: 'orders-db', port: 5432 }])],
        network: network({}, { relayAddresses: [BOOT, relay] }),
        settings,
      }),
    );
    expect(r.config.bootstrap).toEqual([BOOT, relay]);
  });

  it('merges tunnels of one network into one sidecar, sorted by tunnel name', () => {
    const r = rendered(
      renderSidecar({
        tunnels: [
          tunnel('b', [], [{ name: 'payments', localPort: 9000 }]),
          tunnel('a', [{ name: 'checkout', port: 8080 }], [{ name: 'payments', localPort: 9000 }]),
        ],
        network: network(),
        settings,
      }),
    );
    expect(r.tunnels).toEqual(['a', 'b']);
    expect(r.config.expose).toEqual([{ name: 'checkout', port: 8080 }]);
    expect(r.config.forward).toEqual([{ name: 'payments', localPort: 9000 }]);
  });

  it.each<[string, PeerTunnel[], readonly number[], string]>([
    [
      'another network',
      [tunnel('a', [{ name: 'x', port: 1 }]), tunnel('b', [{ name: 'y', port: 2 }], [], 'other')],
      [],
      SkipReason.ConflictingTunnels,
    ],
    [
      'one name, two targets',
      [tunnel('a', [{ name: 'x', port: 1 }]), tunnel('b', [{ name: 'x', port: 2 }])],
      [],
      SkipReason.ConflictingTunnels,
    ],
    [
      'one forward, two ports',
      [tunnel('a', [], [{ name: 'x', localPort: 1000 }]), tunnel('b', [], [{ name: 'x', localPort: 1001 }])],
      [],
      SkipReason.ConflictingTunnels,
    ],
    [
      'two forwards, one port',
      [tunnel('a', [], [{ name: 'x', localPort: 1000 }]), tunnel('b', [], [{ name: 'y', localPort: 1000 }])],
      [],
      SkipReason.PortConflict,
    ],
    [
      'forward on the admin port',
      [tunnel('a', [], [{ name: 'x', localPort: 9090 }])],
      [],
      SkipReason.PortConflict,
    ],
    [
      'forward on the p2p port',
      [tunnel('a', [], [{ name: 'x', localPort: 4001 }])],
      [],
      SkipReason.PortConflict,
    ],
    [
      'forward on a port of the pod',
      [tunnel('a', [], [{ name: 'x', localPort: 8080 }])],
      [8080],
      SkipReason.PortConflict,
    ],
    [
      'forward on a port another tunnel exposes',
      [tunnel('a', [{ name: 'x', port: 8080 }]), tunnel('b', [], [{ name: 'y', localPort: 8080 }])],
      [],
      SkipReason.PortConflict,
    ],
    [
      'the pod already uses the admin port',
      [tunnel('a', [{ name: 'x', port: 80 }])],
      [9090],
      SkipReason.PortConflict,
    ],
    [
      'an IPv6 host the CRD pattern lets through',
      [tunnel('a', [{ name: 'x', port: 80, host: '1:2:3:4:5:6:7:8:9' }])],
      [],
      SkipReason.InvalidConfig,
    ],
  ])('refuses %s', (_name, tunnels, podPorts, reason) => {
    const r = renderSidecar({ tunnels, network: network(), settings, podPorts });
    expect(r).toMatchObject({ kind: 'skipped', reason });
    if (r.kind === 'skipped') expect(r.message).not.toBe('');
  });

  it('waits for a network without bootstrap peers', () => {
    const r = renderSidecar({
      tunnels: [tunnel('a', [{ name: 'x', port: 80 }])],
      network: network({ bootstrap: [], relay: { enabled: true } }),
      settings,
    });
    expect(r).toMatchObject({ kind: 'skipped', reason: SkipReason.NetworkNotReady });
  });

  it('hashes the same sidecar the same, whatever the input order', () => {
    const a = rendered(
      renderSidecar({
        tunnels: [tunnel('a', [{ name: 'x', port: 1 }]), tunnel('b', [{ name: 'y', port: 2 }])],
        network: network(),
        settings,
      }),
    );
    const b = rendered(
      renderSidecar({
        tunnels: [tunnel('b', [{ name: 'y', port: 2 }]), tunnel('a', [{ name: 'x', port: 1 }])],
        network: network(),
        settings,
      }),
    );
    expect(a.hash).toBe(b.hash);
    expect(a.hash).toMatch(/^[0-9a-f]{16}$/);
    expect(canonicalJson({ b: 1, a: [{ d: 2, c: undefined }] })).toBe('{"a":[{"d":2}],"b":1}');
  });

  it('renders the largest tunnel the CRD allows into a config the sidecar accepts', () => {
    const expose = Array.from({ length: 64 }, (_, i) => ({ name: `e${i}`, port: 20000 + i }));
    const forward = Array.from({ length: 64 }, (_, i) => ({ name: `f${i}`, localPort: 30000 + i }));
    const r = rendered(
      renderSidecar({ tunnels: [tunnel('big', expose, forward)], network: network(), settings }),
    );
    expect(parseConfig(r.config).forward).toHaveLength(64);
  });
});

describe('memoryLimitMiB', () => {
  it('reads Kubernetes memory quantities in whole MiB, and nothing it cannot run in', () => {
    expect(memoryLimitMiB('256Mi')).toBe(256);
    expect(memoryLimitMiB('1Gi')).toBe(1024);
    expect(memoryLimitMiB('500M')).toBe(476);
    expect(memoryLimitMiB('268435456')).toBe(256);
    expect(memoryLimitMiB('32Mi')).toBeUndefined();
    expect(memoryLimitMiB(undefined)).toBeUndefined();
    expect(memoryLimitMiB('lots')).toBeUndefined();
  });
});
