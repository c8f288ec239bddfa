/**
 * The real operator, against the real API server, polls two hostile "sidecars" on 127.0.0.1: one
 * whose /status redirects to a listener that records hits, one that streams a 300 MiB body. The
 * recorder is never hit, the body is read no further than the cap (the server stops when the
 * operator stops reading), both failures are counted by reason and logged, the operator's memory
 * stays put, and its webhook answers every review meanwhile.
 */

import { readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, expect, it } from '@jest/globals';
import type { V1Pod } from '@kubernetes/client-node';
import { ADMIN_ADDRESS_ANNOTATION } from '../../operator/controller/sidecar-client.js';
import type { ControlPlane } from '../env/control-plane.js';
import { describeWithControlPlane } from '../env/skip.js';
import { testSwarmKey } from '../helpers/node-process.js';
import {
  eventually,
  freePort,
  installOperatorPrerequisites,
  type OperatorProcess,
  operatorUsers,
  review,
  startOperator,
  webhookCa,
} from './operator-harness.js';

const NS = 'poller-test';
const MiB = 1024 * 1024;

async function listen(
  handler: Parameters<typeof createServer>[1],
): Promise<{ server: Server; port: number }> {
  const server = createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const a = server.address();
  return { server, port: typeof a === 'object' && a !== null ? a.port : 0 };
}

async function rssMiB(pid: number): Promise<number> {
  const m = /VmRSS:\s+(\d+) kB/.exec(await readFile(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1] ?? 0) / 1024;
}

async function create(cp: ControlPlane, obj: object): Promise<void> {
  await cp.kubectlOk(['create', '-f', '-'], { input: JSON.stringify(obj) });
}

/** What a kubelet would report for a running pod whose sidecar is ready, its admin on `port`. */
async function runningAt(cp: ControlPlane, name: string, port: number): Promise<void> {
  const path = `/api/v1/namespaces/${NS}/pods/${name}`;
  const pod = JSON.parse((await cp.request(path)).body) as V1Pod;
  const native = (pod.spec?.initContainers ?? []).some((c) => c.name === 'peertunnel');
  const now = new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
  const cs = {
    name: 'peertunnel',
    image: 'x',
    imageID: '',
    ready: true,
    started: true,
    restartCount: 0,
    state: { running: { startedAt: now } },
  };
  const merge = { method: 'PATCH' as const, contentType: 'application/merge-patch+json' };
  let r = await cp.request(path, {
    ...merge,
    body: JSON.stringify({ metadata: { annotations: { [ADMIN_ADDRESS_ANNOTATION]: `127.0.0.1:${port}` } } }),
  });
  expect(r.status).toBe(200);
  r = await cp.request(`${path}/status`, {
    ...merge,
    body: JSON.stringify({
      status: {
        phase: 'Running',
        podIP: '127.0.0.1',
        podIPs: [{ ip: '127.0.0.1' }],
        conditions: [{ type: 'Ready', status: 'True', lastTransitionTime: now }],
        ...(native ? { initContainerStatuses: [cs] } : { containerStatuses: [cs] }),
      },
    }),
  });
  expect(r.status).toBe(200);
}

describeWithControlPlane(
  'operator /status poller against hostile sidecars',
  (env) => {
    let op: OperatorProcess;
    let webhookPort = 0;
    const servers: Server[] = [];
    let recorderHits = 0;
    const stream = { connections: 0, sent: 0, closed: 0 };

    beforeAll(async () => {
      const { cp } = env;
      await installOperatorPrerequisites(cp);
      webhookPort = await freePort();
      op = await startOperator(cp, {
        identity: 'op-poller',
        webhookPort,
        extraArgs: ['--trust-admin-address-annotation'],
      });
      await cp.kubectlOk(['create', 'namespace', NS]);
      await cp.kubectlOk([
        '-n',
        NS,
        'create',
        'secret',
        'generic',
        'mesh-key',
        `--from-literal=swarm.key=${testSwarmKey()}`,
      ]);
      await create(cp, {
        apiVersion: 'peertunnel.io/v1alpha1',
        kind: 'PeerNetwork',
        metadata: { name: 'mesh', namespace: NS },
        spec: {
          swarmKeySecretRef: { name: 'mesh-key' },
          bootstrap: ['/ip4/192.0.2.1/tcp/4001/p2p/12D3KooWGzBkkmGXdkaBLMW4S37Cr8nqHU5DfZBG4AShdXjd1Cxn'],
        },
      });
      await eventually('network ready', async () => {
        const r = await cp.request(`/apis/peertunnel.io/v1alpha1/namespaces/${NS}/peernetworks/mesh`);
        const n = JSON.parse(r.body) as { status?: { conditions?: Array<{ type: string; status: string }> } };
        return n.status?.conditions?.find((c) => c.type === 'Ready' && c.status === 'True');
      });
      await create(cp, {
        apiVersion: 'peertunnel.io/v1alpha1',
        kind: 'PeerTunnel',
        metadata: { name: 'hostile', namespace: NS },
        spec: {
          networkRef: { name: 'mesh' },
          selector: { matchLabels: { app: 'hostile' } },
          forward: [{ name: 'orders-db', localPort: 5432 }],
        },
      });
    }, 180_000);

    afterAll(async () => {
      await op?.stop();
      for (const s of servers) {
        s.closeAllConnections();
        s.close();
      }
    });

    it('follows no redirect, reads no body past the cap, and the webhook answers meanwhile', async () => {
      const { cp } = env;
      const recorder = await listen((_req, res) => {
        recorderHits++;
        res.end('{"peerId":"elsewhere"}');
      });
      const redirect = await listen((_req, res) =>
        res.writeHead(302, { location: `http://127.0.0.1:${recorder.port}/status` }).end(),
      );
      const chunk = Buffer.alloc(64 * 1024, 0x20);
      const huge = await listen((_req, res) => {
        stream.connections++;
        res.writeHead(200, { 'content-type': 'application/json' });
        let sent = 0;
        const pump = () => {
          while (sent < 300 * MiB && !res.destroyed) {
            sent += chunk.length;
            stream.sent = Math.max(stream.sent, sent);
            if (!res.write(chunk)) return void res.once('drain', pump);
          }
          res.end();
        };
        res.on('close', () => {
          stream.closed++;
        });
        pump();
      });
      servers.push(recorder.server, redirect.server, huge.server);

      const pid = op.proc.pid ?? 0;
      const rssBefore = await rssMiB(pid);
      // Pods the webhook injects; then "running" with their admin at the hostile servers.
      for (const [name, port] of [
        ['redirecting', redirect.port],
        ['huge', huge.port],
      ] as const) {
        await create(cp, {
          apiVersion: 'v1',
          kind: 'Pod',
          metadata: { name, namespace: NS, labels: { app: 'hostile' } },
          spec: { containers: [{ name: 'app', image: 'example/app:1' }] },
        });
        await runningAt(cp, name, port);
      }

      // Reviews while the operator polls (every second): each answered, and fast.
      const ca = await webhookCa(cp);
      const latencies: number[] = [];
      const deadline = Date.now() + 8_000;
      const pod: V1Pod = {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: 'probe', namespace: NS, labels: { app: 'hostile' } },
        spec: { containers: [{ name: 'app', image: 'example/app:1' }] },
      };
      while (Date.now() < deadline) {
        const t0 = Date.now();
        const r = await review(webhookPort, ca, pod, NS);
        latencies.push(Date.now() - t0);
        expect(r.response.allowed).toBe(true);
        expect(r.response.patch).toBeDefined();
        await sleep(100);
      }
      const redirects = await op.metric('peertunnel_operator_status_poll_failures_total', {
        reason: 'redirect',
      });
      const tooLarge = await op.metric('peertunnel_operator_status_poll_failures_total', {
        reason: 'too_large',
      });
      const rssAfter = await rssMiB(pid);
      latencies.sort((a, b) => a - b);
      console.log(
        `poller: ${redirects} redirects refused, ${tooLarge} oversized bodies cut, most sent by the server ${(stream.sent / MiB).toFixed(1)} MiB, ` +
          `webhook ${latencies.length} reviews p50 ${latencies[Math.floor(latencies.length / 2)]} ms max ${latencies.at(-1)} ms, ` +
          `operator RSS ${rssBefore.toFixed(0)} -> ${rssAfter.toFixed(0)} MiB`,
      );
      expect(redirects).toBeGreaterThanOrEqual(3);
      expect(tooLarge).toBeGreaterThanOrEqual(3);
      expect(recorderHits).toBe(0);
      expect(stream.connections).toBeGreaterThanOrEqual(3);
      // Every connection the operator opened to the streamer was closed, none got near 300 MiB.
      await eventually('streamer connections closed', async () =>
        stream.closed === stream.connections ? true : undefined,
      );
      expect(stream.sent).toBeLessThan(16 * MiB);
      expect(latencies.at(-1)).toBeLessThan(1_000);
      expect(rssAfter - rssBefore).toBeLessThan(100);
      const logged = op.logs.filter((l) => l.event === 'status_poll_failed').map((l) => l.reason);
      expect(logged).toContain('redirect');
      expect(logged).toContain('too_large');
    }, 60_000);
  },
  { users: operatorUsers },
);
