/**
 * /metrics, family by family, from real processes: every family the sidecar and the operator
 * define is served with its HELP and TYPE, and its value moved in a real run (traffic through a
 * relay + exposer + forwarder, a stream to a dead target, one with no provider, a refused one; an
 * operator that reconciles, answers its webhook and injects a pod). The few families a loopback
 * run cannot move are listed, with the test that moves them.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Registry } from 'prom-client';
import { createOperatorMetrics } from '../../operator/metrics.js';
import { createSidecarMetrics } from '../../sidecar/admin/metrics.js';
import { describeWithControlPlane } from '../env/skip.js';
import { eventually, parseMetric } from '../helpers/node-process.js';
import { type DataPlane, startDataPlane, startObservedOperator } from './observability-harness.js';
import { type OperatorProcess, operatorUsers } from './operator-harness.js';

interface Family {
  name: string;
  help: string;
  type: string;
}

async function familiesOf(registry: Registry): Promise<Family[]> {
  return (await registry.getMetricsAsJSON()).map((m) => ({
    name: m.name,
    help: m.help,
    type: String(m.type),
  }));
}

/** HELP and TYPE lines as prom-client writes them (help text escaped). */
function expectHelpAndType(text: string, f: Family): void {
  const help = f.help.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
  expect({ family: f.name, help: text.includes(`# HELP ${f.name} ${help}\n`) }).toEqual({
    family: f.name,
    help: true,
  });
  expect({ family: f.name, type: text.includes(`# TYPE ${f.name} ${f.type}\n`) }).toEqual({
    family: f.name,
    type: true,
  });
}

type Check = (texts: Record<'relay' | 'exposer' | 'forwarder' | 'active', string>) => void;
const v = parseMetric;

/** One check per sidecar family: the value a real run must have moved it to. */
const SIDECAR_CHECKS: Record<string, Check> = {
  peertunnel_streams_opened_total: (t) => {
    expect(
      v(t.forwarder, 'peertunnel_streams_opened_total', { service: 'echo', side: 'forward' }),
    ).toBeGreaterThanOrEqual(8);
    expect(
      v(t.exposer, 'peertunnel_streams_opened_total', { service: 'echo', side: 'expose' }),
    ).toBeGreaterThanOrEqual(8);
  },
  peertunnel_streams_active: (t) => {
    // Read while one echo connection is held open; 0 again once everything closed.
    expect(v(t.active, 'peertunnel_streams_active', { service: 'echo', side: 'forward' })).toBe(1);
    expect(v(t.forwarder, 'peertunnel_streams_active', { service: 'echo', side: 'forward' })).toBe(0);
  },
  peertunnel_streams_failed_total: (t) => {
    expect(
      v(t.forwarder, 'peertunnel_streams_failed_total', {
        service: 'ghost',
        side: 'forward',
        reason: 'no_provider',
      }),
    ).toBeGreaterThanOrEqual(1);
    expect(
      v(t.exposer, 'peertunnel_streams_failed_total', {
        service: 'dead',
        side: 'expose',
        reason: 'target_unreachable',
      }),
    ).toBeGreaterThanOrEqual(1);
    expect(v(t.forwarder, 'peertunnel_streams_failed_total', { service: 'echo' })).toBe(0);
  },
  peertunnel_streams_refused_total: (t) => {
    expect(
      v(t.exposer, 'peertunnel_streams_refused_total', { reason: 'not_exposed' }),
    ).toBeGreaterThanOrEqual(1);
  },
  peertunnel_stream_bytes_total: (t) => {
    const MiB8 = 8 * 1024 * 1024;
    expect(
      v(t.forwarder, 'peertunnel_stream_bytes_total', {
        service: 'sink',
        side: 'forward',
        direction: 'sent',
      }),
    ).toBeGreaterThanOrEqual(MiB8);
    expect(
      v(t.forwarder, 'peertunnel_stream_bytes_total', {
        service: 'source',
        side: 'forward',
        direction: 'received',
      }),
    ).toBeGreaterThanOrEqual(MiB8);
    expect(
      v(t.exposer, 'peertunnel_stream_bytes_total', {
        service: 'sink',
        side: 'expose',
        direction: 'received',
      }),
    ).toBeGreaterThanOrEqual(MiB8);
  },
  peertunnel_stream_open_duration_seconds: (t) => {
    const count = v(t.forwarder, 'peertunnel_stream_open_duration_seconds_count', { service: 'echo' });
    expect(count).toBeGreaterThanOrEqual(8);
    expect(
      v(t.forwarder, 'peertunnel_stream_open_duration_seconds_sum', { service: 'echo' }),
    ).toBeGreaterThan(0);
    expect(
      v(t.forwarder, 'peertunnel_stream_open_duration_seconds_bucket', { service: 'echo', le: '+Inf' }),
    ).toBe(count);
  },
  peertunnel_forward_providers: (t) => {
    expect(v(t.forwarder, 'peertunnel_forward_providers', { service: 'echo' })).toBe(1);
    // Disconnected, told apart from idle: the ghost forward has no provider.
    expect(t.forwarder).toMatch(/^peertunnel_forward_providers\{service="ghost"\} 0$/m);
  },
  peertunnel_forward_listener_up: (t) => {
    for (const service of ['echo', 'sink', 'source', 'dead', 'ghost'])
      expect(v(t.forwarder, 'peertunnel_forward_listener_up', { service })).toBe(1);
  },
  peertunnel_dht_lookups_total: (t) => {
    expect(v(t.forwarder, 'peertunnel_dht_lookups_total', { result: 'found' })).toBeGreaterThanOrEqual(1);
  },
  peertunnel_dht_lookup_duration_seconds: (t) => {
    expect(v(t.forwarder, 'peertunnel_dht_lookup_duration_seconds_count')).toBeGreaterThanOrEqual(1);
  },
  peertunnel_dht_provides_total: (t) => {
    expect(v(t.exposer, 'peertunnel_dht_provides_total', { result: 'ok' })).toBeGreaterThanOrEqual(1);
  },
  peertunnel_relay_reservations: (t) => {
    expect(t.relay).toMatch(/^peertunnel_relay_reservations\{state="serving"\} \d+$/m);
    expect(t.forwarder).toMatch(/^peertunnel_relay_reservations\{state="active"\} \d+$/m);
  },
  peertunnel_connections: (t) => {
    expect(v(t.forwarder, 'peertunnel_connections', { path: 'direct' })).toBeGreaterThanOrEqual(2);
    expect(v(t.forwarder, 'peertunnel_connections', { path: 'relayed' })).toBe(0);
  },
  peertunnel_peers_connected: (t) => {
    expect(v(t.forwarder, 'peertunnel_peers_connected')).toBeGreaterThanOrEqual(2);
    expect(v(t.relay, 'peertunnel_peers_connected')).toBeGreaterThanOrEqual(2);
  },
  peertunnel_ready: (t) => {
    expect(v(t.forwarder, 'peertunnel_ready')).toBe(1);
    // The exposer's 'dead' target refuses connections: it says so by not being ready.
    expect(v(t.exposer, 'peertunnel_ready')).toBe(0);
  },
  peertunnel_expose_target_up: (t) => {
    expect(v(t.exposer, 'peertunnel_expose_target_up', { service: 'echo' })).toBe(1);
    expect(v(t.exposer, 'peertunnel_expose_target_up', { service: 'dead' })).toBe(0);
  },
  peertunnel_reachability: (t) => {
    const states = ['public', 'private', 'unknown'].map((state) =>
      v(t.forwarder, 'peertunnel_reachability', { state }),
    );
    expect(states.reduce((a, b) => a + b, 0)).toBe(1);
  },
  peertunnel_build_info: (t) => {
    expect(t.relay).toMatch(/^peertunnel_build_info\{version="[^"]+",nodejs="v24\.[^"]+",role="relay"\} 1$/m);
    expect(t.forwarder).toMatch(/^peertunnel_build_info\{[^}]*role="sidecar"\} 1$/m);
  },
};

/**
 * Families a loopback run cannot move (every node reaches every other directly, there is no NAT
 * gateway): their HELP/TYPE are checked here, their values by the NAT lab tests named.
 */
const MOVED_ELSEWHERE: Record<string, string> = {
  peertunnel_holepunch_attempts_total: 'test/lab/holepunch.test.ts',
  peertunnel_relay_relayed_bytes_total: 'test/lab/relay-failover.test.ts',
  peertunnel_port_mappings: 'test/lab/port-mapping.test.ts',
  peertunnel_port_mapping_operations_total: 'test/lab/port-mapping.test.ts',
  peertunnel_inbound_refused_total: 'test/integration/pre-auth.test.ts',
  // A member past its share of relay reservations, and its throw-away identities leaving.
  peertunnel_relay_reservations_refused_total: 'test/integration/fairness.test.ts',
  peertunnel_relay_reservations_dropped_total: 'test/integration/fairness.test.ts',
  // The bounded DHT record store's refusals; the store itself: test/unit/sidecar/tunnel/fair-limits.test.ts.
  peertunnel_dht_records_refused_total: 'test/unit/sidecar/tunnel/fair-limits.test.ts',
  // Refusals of /status off loopback and of connections over the cap (the server's callback).
  peertunnel_admin_refused_total: 'test/unit/sidecar/admin/http-server.test.ts',
  // Credentials: the data plane of this test runs an open network (no trust section).
  peertunnel_trust_refused_total: 'test/integration/trust.test.ts',
  peertunnel_trust_revoked_total: 'test/integration/trust-revoke.test.ts',
  peertunnel_credential_expiry_timestamp_seconds: 'test/integration/trust-renewal.test.ts',
  // Trusted clusters from the operator, and the operator stopped.
  peertunnel_trust_sync_failures_total: 'test/integration/operator-trust-sync.test.ts',
  peertunnel_connections_by_swarm_key: 'test/integration/swarm-key-nodes.test.ts',
  peertunnel_swarm_key_fallbacks_total: 'test/integration/swarm-key-nodes.test.ts',
};

describe('sidecar /metrics, family by family', () => {
  let dp: DataPlane;
  const texts = { relay: '', exposer: '', forwarder: '', active: '' };

  beforeAll(async () => {
    dp = await startDataPlane();
    await dp.drive();
    texts.active = await dp.withOpenStream(() => dp.forwarder.metrics());
    await eventually(
      async () =>
        (await dp.forwarder.metric('peertunnel_streams_active', { service: 'echo' })) === 0
          ? true
          : undefined,
      5_000,
      'streams to close',
    );
    [texts.relay, texts.exposer, texts.forwarder] = await Promise.all([
      dp.relay.metrics(),
      dp.exposer.metrics(),
      dp.forwarder.metrics(),
    ]);
  }, 90_000);

  afterAll(async () => {
    await dp?.stop();
  });

  it('checks every family: one moved-value check each, or a named test that moves it', async () => {
    const names = (await familiesOf(fresh())).map((f) => f.name).sort();
    expect([...Object.keys(SIDECAR_CHECKS), ...Object.keys(MOVED_ELSEWHERE)].sort()).toEqual(names);
  });

  it('serves HELP and TYPE for every family on every node', async () => {
    for (const f of await familiesOf(fresh()))
      for (const text of [texts.relay, texts.exposer, texts.forwarder]) expectHelpAndType(text, f);
  });

  for (const [name, check] of Object.entries(SIDECAR_CHECKS)) {
    it(`${name} moved`, () => check(texts));
  }

  it('keeps the families a loopback run cannot move at zero or absent', () => {
    expect(v(texts.forwarder, 'peertunnel_holepunch_attempts_total')).toBe(0);
    expect(texts.relay).toMatch(/^peertunnel_relay_relayed_bytes_total \d+$/m);
    expect(v(texts.forwarder, 'peertunnel_port_mapping_operations_total')).toBe(0);
  });
});

function fresh(): Registry {
  const r = new Registry();
  createSidecarMetrics(r);
  return r;
}

describeWithControlPlane(
  'operator /metrics, family by family',
  (env) => {
    let op: OperatorProcess;
    let text = '';

    beforeAll(async () => {
      op = await startObservedOperator(env.cp);
      await eventually(
        async () => ((await op.metric('peertunnel_operator_status_writes_total')) > 0 ? true : undefined),
        30_000,
        'a status write',
      );
      text = await op.metrics();
    }, 120_000);

    afterAll(async () => {
      await op?.stop();
    });

    const checks: Record<string, () => void> = {
      peertunnel_operator_reconciles_total: () => {
        expect(
          v(text, 'peertunnel_operator_reconciles_total', { kind: 'PeerTunnel', result: 'success' }),
        ).toBeGreaterThan(0);
        expect(
          v(text, 'peertunnel_operator_reconciles_total', { kind: 'PeerNetwork', result: 'success' }),
        ).toBeGreaterThan(0);
      },
      peertunnel_operator_reconcile_duration_seconds: () => {
        expect(
          v(text, 'peertunnel_operator_reconcile_duration_seconds_count', { kind: 'PeerTunnel' }),
        ).toBeGreaterThan(0);
      },
      peertunnel_operator_queue_depth: () => {
        expect(text).toMatch(/^peertunnel_operator_queue_depth\{kind="PeerTunnel"\} \d+$/m);
      },
      peertunnel_operator_webhook_requests_total: () => {
        expect(
          v(text, 'peertunnel_operator_webhook_requests_total', { result: 'injected' }),
        ).toBeGreaterThanOrEqual(1);
        expect(
          v(text, 'peertunnel_operator_webhook_requests_total', { result: 'skipped' }),
        ).toBeGreaterThanOrEqual(1);
      },
      peertunnel_operator_webhook_duration_seconds: () => {
        expect(
          v(text, 'peertunnel_operator_webhook_duration_seconds_count', { result: 'injected' }),
        ).toBeGreaterThanOrEqual(1);
      },
      peertunnel_operator_injected_pods: () => {
        expect(v(text, 'peertunnel_operator_injected_pods')).toBe(1);
      },
      peertunnel_operator_leader: () => {
        expect(v(text, 'peertunnel_operator_leader')).toBe(1);
      },
      peertunnel_operator_status_writes_total: () => {
        expect(v(text, 'peertunnel_operator_status_writes_total', { kind: 'PeerTunnel' })).toBeGreaterThan(0);
      },
    };
    /**
     * Moves only when a watch or list fails and an informer restarts: no test breaks the API
     * server's watches, so this family is checked for HELP/TYPE only.
     */
    const movedElsewhere = [
      'peertunnel_operator_informer_restarts_total',
      // Moves on a /status that breaks the contract: test/unit/operator/controller/reconcilers.test.ts.
      'peertunnel_operator_sidecar_status_invalid_total',
      // Moved by test/integration/operator-poller.test.ts (a redirecting and a 300 MiB /status).
      'peertunnel_operator_status_poll_failures_total',
      // Connections over the cap: the shared server's drops, test/unit/sidecar/admin/http-server.test.ts.
      'peertunnel_operator_http_refused_total',
      // Issued and refused by reason: test/integration/operator-credentials.test.ts (real bound tokens).
      'peertunnel_operator_credentials_issued_total',
      'peertunnel_operator_credentials_refused_total',
    ];

    it('serves HELP and TYPE for every family and checks each one', async () => {
      const r = new Registry();
      createOperatorMetrics(r);
      const families = await familiesOf(r);
      expect([...Object.keys(checks), ...movedElsewhere].sort()).toEqual(families.map((f) => f.name).sort());
      for (const f of families) expectHelpAndType(text, f);
    });

    for (const [name, check] of Object.entries(checks)) it(`${name} moved`, () => check());
  },
  { users: operatorUsers },
);
