/**
 * A real Kubernetes node for a test control plane: containerd (Debian's, with runc and the CNI
 * bridge/host-local plugins) and the real kubelet, both inside a NAT-lab host's network namespace,
 * so pods get addresses on a bridge there and their egress leaves through that site's NAT router.
 * Images are imported from local archives (images.ts); nothing is pulled.
 *
 * How the parts reach each other across the namespace boundary (the lab never links a namespace to
 * the host's network):
 * - kubelet → API server: socat in the namespace listens on the API server's own 127.0.0.1 port and
 *   0.0.0.0 (for pods: a DNAT of the `kubernetes` Service IP), and leads through a unix socket to a
 *   pipe in this process, which connects to the API server on the host.
 * - API server → kubelet (logs, exec, port-forward): the control plane's egress proxy
 *   (egress-proxy.ts) sends `<host ip>:10250` to a unix socket that socat in the namespace serves.
 *
 * What a node leaves on the host (pod processes, shims, mounts, cgroups, the sysctls the kubelet
 * sets, host paths it creates) is removed by stop(), or, when the process that started it was
 * killed first, by the next start's janitor, from the owner record written before anything was
 * created (node-janitor.ts, node-record.ts).
 */
import { spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { Duplex } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
// Not ../lab/index.js: that pulls in jest's globals, and the janitor test runs this outside jest.
import { run } from '../lab/exec.js';
import type { LabHost } from '../lab/lab.js';
import { type ControlPlane, type Daemon, stopDaemon } from './control-plane.js';
import type { NetworkDialer } from './egress-proxy.js';
import type { BuiltImage } from './images.js';
import { beginRun, cleanStaleNodes, endRun } from './node-janitor.js';
import { cgroupHierarchies, removeRunLeftovers } from './node-leftovers.js';
import type { NodeToolPaths } from './tools.js';

export interface RealNodeOptions {
  /** The Node's name (`a-0`); also names its cgroup root and CNI network. */
  name: string;
  /** Started with `egressProxy: true` (and a `scheduler`, unless pods name their node). */
  cp: ControlPlane;
  /** The lab host whose network namespace the node lives in; its address is the node's InternalIP. */
  host: LabHost;
  /** This node's pod addresses, e.g. `198.19.1.0/24` (inside the lab's NATed range, never RFC 1918); distinct per node. */
  podCidr: string;
  tools: NodeToolPaths;
  /** Imported into containerd before the kubelet starts; the sandbox (`pause`) image among them. */
  images: readonly BuiltImage[];
  /** Give up on the Node becoming Ready after this long. Default 120 s. */
  readyTimeoutMs?: number;
  log?: (line: string) => void;
}

export interface RealNode {
  readonly name: string;
  readonly host: LabHost;
  /** Logs (`containerd.log`, `kubelet.log`), configs, state. */
  readonly dir: string;
  /** The last lines of containerd's and the kubelet's logs, for failure messages. */
  logTail(lines?: number): string;
  /** Stops everything and removes everything it created. Idempotent. */
  stop(): Promise<void>;
}

/** The sandbox image containerd runs each pod's namespaces with (images.ts builds it). */
export const SANDBOX_IMAGE = 'registry.k8s.io/pause:3.10.2';
const KUBELET_PORT = 10250;
/** The API server's `kubernetes` Service IP (first of control-plane.ts's 10.0.0.0/24). */
const KUBERNETES_SERVICE_IP = '10.0.0.1';

interface NodeDaemon extends Daemon {
  readonly name: string;
}

function netnsPath(host: LabHost): string {
  return `/run/netns/${host.ns}`;
}

/**
 * A process inside the host's network namespace only: `nsenter --net`, not `ip netns exec`, which
 * also remounts /sys and would hide the cgroup mounts runc needs.
 */
function startInNamespace(host: LabHost, name: string, argv: readonly string[], logPath: string): NodeDaemon {
  const fd = openSync(logPath, 'a');
  try {
    const child = spawn(
      'nsenter',
      [`--net=${netnsPath(host)}`, '--', 'setpriv', '--pdeathsig', 'KILL', '--', ...argv],
      { stdio: ['ignore', fd, fd], detached: true },
    );
    child.unref();
    const exited = new Promise<string>((resolve) => {
      child.once('exit', (code, signal) => resolve(signal ?? `exit code ${String(code)}`));
      child.once('error', (err) => resolve(`spawn error: ${err.message}`));
    });
    return { name, child, logPath, exited };
  } finally {
    closeSync(fd);
  }
}

function tail(path: string, lines: number): string {
  try {
    return readFileSync(path, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/** A unix socket here whose connections go to `port` on the host's 127.0.0.1. */
async function hostPipe(path: string, port: number): Promise<{ close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer({ allowHalfOpen: true }, (client) => {
    const upstream = connect({ host: '127.0.0.1', port, allowHalfOpen: true });
    sockets.add(client).add(upstream);
    client.once('close', () => sockets.delete(client));
    upstream.once('close', () => sockets.delete(upstream));
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => resolve());
  });
  return {
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

async function waitFor(
  what: string,
  timeoutMs: number,
  check: () => Promise<boolean> | boolean,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await sleep(100);
  }
  throw new Error(`${what}: not after ${timeoutMs} ms`);
}

function containerdConfig(dir: string, netName: string): string {
  return `version = 2
root = "${dir}/containerd/root"
state = "${dir}/containerd/state"
oom_score = 0
[grpc]
  address = "${dir}/containerd.sock"
[ttrpc]
  address = "${dir}/containerd.sock.ttrpc"
[debug]
  address = "${dir}/containerd-debug.sock"
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "${SANDBOX_IMAGE}"
  enable_cdi = false
  # Lowering a process's oom_score_adj needs a privilege test machines may lack; a pod sandbox
  # then fails with "can't get final child's PID from pipe".
  restrict_oom_score_adj = true
  # Pod network namespaces under our state dir, not /run/netns where the lab lists its own.
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "/usr/sbin/runc"
        Root = "${dir}/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "${dir}/cni-conf"
    # ${netName}
[plugins."io.containerd.internal.v1.opt"]
  path = "${dir}/containerd/opt"
`;
}

function cniConfig(dir: string, netName: string, podCidr: string): string {
  return JSON.stringify({
    cniVersion: '1.0.0',
    name: netName,
    plugins: [
      {
        type: 'bridge',
        bridge: 'cni0',
        isGateway: true,
        // Pod egress leaves with the node's address, then through the site's NAT router.
        ipMasq: true,
        hairpinMode: true,
        ipam: {
          type: 'host-local',
          ranges: [[{ subnet: podCidr }]],
          dataDir: join(dir, 'cni-ipam'),
          routes: [{ dst: '0.0.0.0/0' }],
        },
      },
      { type: 'portmap', capabilities: { portMappings: true } },
    ],
  });
}

function kubeletConfig(dir: string, o: { address: string; cgroupRoot: string; podCidr: string }): string {
  return JSON.stringify({
    apiVersion: 'kubelet.config.k8s.io/v1beta1',
    kind: 'KubeletConfiguration',
    // Test machines may be cgroup v1 (hybrid, no systemd as PID 1); 1.35+ refuses v1 by default.
    failCgroupV1: false,
    cgroupDriver: 'cgroupfs',
    cgroupRoot: o.cgroupRoot,
    containerRuntimeEndpoint: `unix://${dir}/containerd.sock`,
    imageServiceEndpoint: `unix://${dir}/containerd.sock`,
    address: o.address,
    port: KUBELET_PORT,
    readOnlyPort: 0,
    healthzPort: 0,
    // Reached only through the control plane's egress proxy (the API server presents no client
    // certificate): nothing else on the machine can route to this namespace.
    authentication: { anonymous: { enabled: true }, webhook: { enabled: false } },
    authorization: { mode: 'AlwaysAllow' },
    podLogsDir: join(dir, 'pod-logs'),
    podCIDR: o.podCidr,
    resolvConf: '',
    failSwapOn: false,
    // Images cannot be pulled again: never collect them.
    imageGCHighThresholdPercent: 100,
    imageGCLowThresholdPercent: 99,
    evictionHard: {
      'memory.available': '50Mi',
      'nodefs.available': '1%',
      'imagefs.available': '1%',
      'nodefs.inodesFree': '1%',
    },
    maxPods: 30,
    serializeImagePulls: false,
    registerNode: true,
    volumePluginDir: join(dir, 'volume-plugins'),
    // Status more often than the 10 s default: tests wait on Ready.
    nodeStatusUpdateFrequency: '2s',
    syncFrequency: '5s',
    // Tests delete pods; a 30 s default grace would hold them.
    shutdownGracePeriod: '0s',
  });
}

function kubeProxyConfig(o: { kubeconfig: string; name: string; podCidr: string; address: string }): string {
  return JSON.stringify({
    apiVersion: 'kubeproxy.config.k8s.io/v1alpha1',
    kind: 'KubeProxyConfiguration',
    mode: 'iptables',
    clientConnection: { kubeconfig: o.kubeconfig },
    hostnameOverride: o.name,
    clusterCIDR: o.podCidr,
    bindAddress: o.address,
    // Host-wide conntrack sysctls (nf_conntrack_max, timeouts) stay as they are: 0 = leave alone.
    conntrack: { maxPerCore: 0, min: 0, tcpEstablishedTimeout: '0s', tcpCloseWaitTimeout: '0s' },
    // Inside the node's namespace: nothing else binds these there.
    healthzBindAddress: '127.0.0.1:10256',
    metricsBindAddress: '127.0.0.1:10249',
    iptables: { syncPeriod: '2s', minSyncPeriod: '0s' },
  });
}

/** Connections made from inside the node's namespace (the API server's way to pod addresses). */
function namespaceDialer(host: LabHost): NetworkDialer {
  return (ip, port) => {
    const child = spawn(
      'nsenter',
      [`--net=${netnsPath(host)}`, '--', 'socat', 'STDIO', `TCP:${ip}:${port}`],
      {
        stdio: ['pipe', 'pipe', 'ignore'],
      },
    );
    const stream = Duplex.from({ readable: child.stdout, writable: child.stdin });
    child.once('exit', () => stream.destroy());
    stream.once('close', () => child.kill('SIGKILL'));
    const connected = new Promise<void>((resolve) => child.once('spawn', () => resolve()));
    return { stream, connected };
  };
}

/**
 * Starts containerd, the kubelet and kube-proxy in `o.host`'s namespace and waits for the Node to
 * be Ready. Its pod network is routed for the API server through the egress proxy.
 */
export async function startRealNode(o: RealNodeOptions): Promise<RealNode> {
  const log = o.log ?? ((line: string) => process.stderr.write(`[node ${o.name}] ${line}\n`));
  if (o.cp.egress === undefined) throw new Error('startRealNode: the control plane needs egressProxy: true');
  // Leftovers of runs whose process was killed before their stop(); then this run's record.
  await cleanStaleNodes(log);
  const record = await beginRun(o.name);
  const { dir, runName } = record;
  const netName = runName;
  const cgroupName = runName;
  const apiPort = Number(new URL(o.cp.url).port);
  const kubeletTarget = `${o.host.ip}:${KUBELET_PORT}`;
  const daemons: NodeDaemon[] = [];
  const pipes: { close(): Promise<void> }[] = [];

  let stopping: Promise<void> | undefined;
  const cleanup = async (): Promise<void> => {
    o.cp.egress?.unroute(kubeletTarget);
    o.cp.egress?.unrouteNetwork(o.podCidr);
    // kube-proxy, the kubelet (which no longer restarts pods), the bridges, containerd; then the
    // pods and shims, mounts, cgroups and the rest (node-janitor.ts).
    for (const d of [...daemons].reverse()) await stopDaemon(d);
    const problems = await removeRunLeftovers(record);
    for (const p of pipes) await p.close();
    await o.cp
      .kubectl(['delete', 'node', o.name, '--ignore-not-found', '--wait=false'])
      .catch(() => undefined);
    // With leftovers the record stays, for the janitor of a later run once this process is gone.
    const restored = await endRun(record, { keepRecord: problems.length > 0 });
    if (restored.length > 0) log(`restored host state: ${restored.join('; ')}`);
    if (problems.length > 0)
      throw new Error(`real node ${o.name} left things behind: ${problems.join('; ')}`);
  };
  const node: RealNode = {
    name: o.name,
    host: o.host,
    dir,
    logTail: (lines = 30) =>
      daemons.map((d) => `--- ${d.name} (${d.logPath}) ---\n${tail(d.logPath, lines)}`).join('\n'),
    stop() {
      stopping ??= cleanup();
      return stopping;
    },
  };

  try {
    // cgroups: the kubelet puts kubepods under cgroupRoot in every hierarchy, and needs it to exist.
    for (const h of cgroupHierarchies()) {
      const c = join(h, cgroupName);
      await mkdir(c);
      if (h.endsWith('/cpuset')) {
        for (const f of ['cpuset.cpus', 'cpuset.mems']) {
          await writeFile(join(c, f), await readFile(join(h, f), 'utf8'));
        }
      }
    }
    for (const d of ['cni-conf', 'cni-ipam', 'pod-logs', 'volume-plugins', 'kubelet', 'runc']) {
      await mkdir(join(dir, d), { recursive: true });
    }
    await writeFile(join(dir, 'containerd.toml'), containerdConfig(dir, netName));
    await writeFile(join(dir, 'cni-conf', '10-bridge.conflist'), cniConfig(dir, netName, o.podCidr));

    // API server ← namespace: its own port on 127.0.0.1 (the kubeconfig's URL works unchanged) and
    // on the node's address (where pods' Service IP is sent).
    const apiSock = join(dir, 'api.sock');
    pipes.push(await hostPipe(apiSock, apiPort));
    daemons.push(
      startInNamespace(
        o.host,
        'socat-api',
        ['socat', `TCP-LISTEN:${apiPort},fork,reuseaddr`, `UNIX-CONNECT:${apiSock}`],
        join(dir, 'socat-api.log'),
      ),
    );
    const dnat = await o.host.exec('iptables', [
      '-t',
      'nat',
      '-A',
      'PREROUTING',
      '-d',
      `${KUBERNETES_SERVICE_IP}/32`,
      '-p',
      'tcp',
      '--dport',
      '443',
      '-j',
      'DNAT',
      '--to-destination',
      `${o.host.ip}:${apiPort}`,
    ]);
    if (dnat.code !== 0) throw new Error(`iptables DNAT for the kubernetes Service: ${dnat.stderr}`);

    const containerd = startInNamespace(
      o.host,
      'containerd',
      ['containerd', '--config', join(dir, 'containerd.toml'), '--log-level', 'warn'],
      join(dir, 'containerd.log'),
    );
    daemons.push(containerd);
    await waitFor('containerd socket', 30_000, () => existsSync(join(dir, 'containerd.sock')));
    for (const img of o.images) {
      const s = Date.now();
      const r = await run(
        'ctr',
        ['--address', join(dir, 'containerd.sock'), '-n', 'k8s.io', 'images', 'import', img.archive],
        { timeoutMs: 300_000 },
      );
      if (r.code !== 0) throw new Error(`ctr images import ${img.archive}: ${r.stderr || r.stdout}`);
      log(`imported ${img.ref} in ${Date.now() - s} ms`);
    }

    // API server → kubelet, through the egress proxy.
    const kubeletSock = join(dir, 'kubelet.sock');
    daemons.push(
      startInNamespace(
        o.host,
        'socat-kubelet',
        ['socat', `UNIX-LISTEN:${kubeletSock},fork,unlink-early,mode=600`, `TCP:${kubeletTarget}`],
        join(dir, 'socat-kubelet.log'),
      ),
    );
    await waitFor('kubelet socket', 10_000, () => existsSync(kubeletSock));
    o.cp.egress.route(kubeletTarget, kubeletSock);

    await writeFile(
      join(dir, 'kubelet.json'),
      kubeletConfig(dir, { address: o.host.ip, cgroupRoot: `/${cgroupName}`, podCidr: o.podCidr }),
    );
    daemons.push(
      startInNamespace(
        o.host,
        'kubelet',
        [
          o.tools.kubelet,
          `--config=${join(dir, 'kubelet.json')}`,
          `--kubeconfig=${o.cp.kubeconfigPath}`,
          `--root-dir=${join(dir, 'kubelet')}`,
          `--cert-dir=${join(dir, 'kubelet', 'pki')}`,
          `--hostname-override=${o.name}`,
          `--node-ip=${o.host.ip}`,
          '--v=1',
        ],
        join(dir, 'kubelet.log'),
      ),
    );
    await writeFile(
      join(dir, 'kube-proxy.json'),
      kubeProxyConfig({
        kubeconfig: o.cp.kubeconfigPath,
        name: o.name,
        podCidr: o.podCidr,
        address: o.host.ip,
      }),
    );
    daemons.push(
      startInNamespace(
        o.host,
        'kube-proxy',
        [o.tools.kubeProxy, `--config=${join(dir, 'kube-proxy.json')}`, '--v=1'],
        join(dir, 'kube-proxy.log'),
      ),
    );
    o.cp.egress.routeNetwork(o.podCidr, namespaceDialer(o.host));
    const started = Date.now();
    await waitFor(`node ${o.name} Ready`, o.readyTimeoutMs ?? 120_000, async () => {
      for (const d of daemons) {
        if (d.child.exitCode !== null || d.child.signalCode !== null) {
          throw new Error(`${d.name} exited:\n${tail(d.logPath, 40)}`);
        }
      }
      const r = await o.cp.request(`/api/v1/nodes/${o.name}`);
      if (r.status !== 200) return false;
      const n = JSON.parse(r.body) as { status?: { conditions?: { type: string; status: string }[] } };
      return n.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') === true;
    });
    log(`Ready ${Date.now() - started} ms after the kubelet started`);
    return node;
  } catch (err) {
    const logs = node.logTail(40);
    await node.stop().catch((e: unknown) => log(String(e)));
    if (err instanceof Error) err.message += `\n${logs}`;
    throw err;
  }
}
