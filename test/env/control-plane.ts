/**
 * A real Kubernetes control plane for integration tests, like controller-runtime's envtest: etcd and
 * kube-apiserver on 127.0.0.1 (free ports, temp dirs), RBAC authorisation, static bearer tokens.
 * There is no kubelet or scheduler: pods stay Pending. Without `controllerManager: true` there is no
 * controller-manager either: Deployments make no pods, namespaces stay Terminating, owner references
 * are not garbage-collected, service accounts are not auto-created.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { closeSync, existsSync, openSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort } from '../helpers/ports.js';
import { controllerManagerArgs, lastCertificate } from './controller-manager.js';
import { type EgressProxy, startEgressProxy } from './egress-proxy.js';
import {
  CommandFailedError,
  type ControlPlaneComponent,
  ControlPlaneOptionsError,
  ControlPlaneStartError,
} from './errors.js';
import { ensureTools, type ToolPaths } from './tools.js';

/** An identity the API server knows by a static bearer token (`--token-auth-file`). */
export interface StaticUserInit {
  /** The user name, e.g. `system:serviceaccount:peertunnel-system:peertunnel`. */
  name: string;
  /** Groups besides `system:authenticated` (which every authenticated user gets). Default: none. */
  groups?: readonly string[];
  /** Default: the name. */
  uid?: string;
  /** Default: random. */
  token?: string;
}

export interface StaticUser {
  readonly name: string;
  readonly groups: readonly string[];
  readonly uid: string;
  readonly token: string;
}

/**
 * kube-apiserver flags for a control plane with real nodes (real-node.ts), as a cluster has them:
 * the ServiceAccount admission plugin (pods get their projected token), and Services reached at
 * their endpoints' pod addresses (webhooks by Service), which the egress proxy routes to the node.
 */
export const REAL_CLUSTER_API_SERVER_ARGS: Readonly<Record<string, string | null>> = Object.freeze({
  'disable-admission-plugins': null,
  'enable-aggregator-routing': 'true',
});

export interface ControlPlaneOptions {
  /**
   * Extra static users, by key (the key is only for looking them up in `ControlPlane.users`).
   * Static tokens are read once at start, so every identity a test needs must be declared here;
   * for a real service account token use `ControlPlane.serviceAccountToken` instead.
   */
  users?: Readonly<Record<string, StaticUserInit>>;
  /**
   * kube-apiserver flags to add or override (`name` without dashes); `null` removes a default.
   * E.g. `{ 'service-cluster-ip-range': '127.1.0.0/24' }` makes ClusterIPs loopback addresses, so
   * a webhook configured by Service reference is reachable (the API server calls ClusterIP:port,
   * with TLS server name `<svc>.<ns>.svc`) by a server listening on that ClusterIP.
   */
  apiServerArgs?: Readonly<Record<string, string | null>>;
  /**
   * Also run the real kube-controller-manager (admin credentials, 127.0.0.1 only, no leader
   * election), limited to the controllers of `controller-manager.ts`: Deployments, ReplicaSets,
   * garbage collection, namespace deletion, `default` ServiceAccounts, service account token
   * Secrets and `kube-root-ca.crt`. Pods still stay Pending (no scheduler, no kubelet). Default false.
   */
  controllerManager?: boolean;
  /** kube-controller-manager flags to add or override, as `apiServerArgs`; only with `controllerManager`. */
  controllerManagerArgs?: Readonly<Record<string, string | null>>;
  /**
   * Path of kube-scheduler (`ensureNodeTools()`): run it, so pods are bound to real nodes
   * (real-node.ts). Default: no scheduler.
   */
  scheduler?: string;
  /**
   * Reach nodes through an HTTP CONNECT proxy on a unix socket (`ControlPlane.egress`), as
   * konnectivity does: real nodes live in network namespaces the host cannot route to. Default false.
   */
  egressProxy?: boolean;
  /** Give up on etcd, kube-apiserver or kube-controller-manager becoming ready after this long. Default 90 s. */
  startTimeoutMs?: number;
  /** Keep the temp dir (logs, kubeconfig, etcd data) after stop(). Default: env PEERTUNNEL_KEEP_ENV=1. */
  keepDir?: boolean;
  /**
   * A kube-apiserver audit policy (an `audit.k8s.io/v1` Policy object): the API server then writes
   * the events it selects as JSON lines to `ControlPlane.auditLogPath`, in blocking mode (each
   * event is written while its request is handled, not batched). Default: no audit log.
   */
  auditPolicy?: object;
  /** Tool paths; default: `ensureTools()` (which builds them on a cold cache). */
  tools?: ToolPaths;
}

export interface CommandOptions {
  /** Written to the command's stdin. */
  input?: string;
  /** Authenticate as this bearer token instead of the admin (kubectl `--token`). */
  token?: string;
  /** Kill the command after this long. Default 60 s. */
  timeoutMs?: number;
}

export interface CommandResult {
  readonly stdout: string;
  readonly stderr: string;
  /** The exit code; null when killed (timeout). */
  readonly code: number | null;
}

export interface RawResponse {
  readonly status: number;
  readonly body: string;
}

export interface ControlPlane {
  /** `https://127.0.0.1:<port>` */
  readonly url: string;
  /** A `system:masters` token: bypasses RBAC. */
  readonly adminToken: string;
  /** A kubeconfig for the admin, with the serving CA embedded. */
  readonly kubeconfigPath: string;
  /** PEM of the CA that signed the API server's serving certificate. */
  readonly caPem: string;
  readonly etcdUrl: string;
  readonly tools: ToolPaths;
  readonly kubectlPath: string;
  readonly helmPath: string;
  /** The static users of `ControlPlaneOptions.users`, by the same keys, with their tokens. */
  readonly users: Readonly<Record<string, StaticUser>>;
  /**
   * The temp dir holding logs (`etcd.log`, `kube-apiserver.log`, `kube-controller-manager.log`),
   * certs and kubeconfigs.
   */
  readonly dir: string;
  /** Whether kube-controller-manager runs (`ControlPlaneOptions.controllerManager`). */
  readonly controllerManager: boolean;
  /** Whether kube-scheduler runs (`ControlPlaneOptions.scheduler`). */
  readonly scheduler: boolean;
  /** The API server's way to its nodes (`ControlPlaneOptions.egressProxy`). */
  readonly egress: EgressProxy | undefined;
  /** The audit log (JSON lines, in `dir`) when `ControlPlaneOptions.auditPolicy` was given. */
  readonly auditLogPath: string | undefined;
  /** Runs kubectl against this control plane; never throws on a non-zero exit. */
  kubectl(args: readonly string[], opts?: CommandOptions): Promise<CommandResult>;
  /** Runs kubectl and returns stdout; throws CommandFailedError on a non-zero exit. */
  kubectlOk(args: readonly string[], opts?: CommandOptions): Promise<string>;
  /**
   * `kubectl apply` of objects (server-side validation included), as the admin unless `token` says
   * otherwise; throws CommandFailedError with the server's message when the server refuses one.
   */
  apply(objects: object | readonly object[], opts?: Omit<CommandOptions, 'input'>): Promise<string>;
  /** Runs helm against this control plane (its own HELM_* dirs); never throws on a non-zero exit. */
  helm(args: readonly string[], opts?: Omit<CommandOptions, 'token'>): Promise<CommandResult>;
  /** A raw HTTPS request to the API server, as the admin unless `token` says otherwise ('' = anonymous). */
  request(
    path: string,
    opts?: { method?: string; token?: string; body?: string; contentType?: string },
  ): Promise<RawResponse>;
  /** Writes a kubeconfig for a bearer token (e.g. a service account's) and returns its path. */
  kubeconfigFor(token: string, opts?: { name?: string; namespace?: string }): Promise<string>;
  /** A real, signed service account token (TokenRequest API); the ServiceAccount must exist. */
  serviceAccountToken(namespace: string, name: string, opts?: { durationSeconds?: number }): Promise<string>;
  /** Kills kube-controller-manager, kube-apiserver and etcd and removes the temp dir. Idempotent. */
  stop(): Promise<void>;
}

/** The identity a pod's projected token would carry, as a static user (no TokenRequest needed). */
export function serviceAccountUser(namespace: string, name: string): StaticUserInit {
  return {
    name: `system:serviceaccount:${namespace}:${name}`,
    groups: ['system:serviceaccounts', `system:serviceaccounts:${namespace}`],
  };
}

const DEFAULT_START_TIMEOUT_MS = 90_000;
const DEFAULT_COMMAND_TIMEOUT_MS = 60_000;
const STOP_GRACE_MS = 5_000;
const LOG_TAIL_LINES = 40;

// Children of this process must not outlive it, whatever way it ends. The kill comes from
// PR_SET_PDEATHSIG (via setpriv), which covers SIGKILL too; an exit hook is the fallback where
// setpriv is missing (it does not fire under jest, whose `process` is a per-file copy). Temp dirs
// are removed by a janitor process that waits for this one to die, and, should that be killed
// too, by the next start (reapStaleDirs).
const live = new Set<ChildProcess>();
let exitHookInstalled = false;
function track(child: ChildProcess): void {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once('exit', () => {
      for (const c of live) c.kill('SIGKILL');
    });
  }
  live.add(child);
  child.once('exit', () => live.delete(child));
}

/** Removes `dir` once this process is gone; kill the janitor to cancel. */
function startJanitor(dir: string): ChildProcess {
  const script =
    'tail --pid="$0" -f /dev/null 2>/dev/null || while kill -0 "$0" 2>/dev/null; do sleep 2; done; rm -rf -- "$1"';
  // Its own process group, so the Ctrl-C that stops the tests does not stop the cleanup.
  const janitor = spawn('sh', ['-c', script, String(process.pid), dir], { detached: true, stdio: 'ignore' });
  janitor.on('error', () => {});
  janitor.unref();
  return janitor;
}

const DIR_PREFIX = 'peertunnel-cp-';
const OWNER_FILE = 'owner.pid';

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists but is someone else's.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Removes the temp dirs of control planes whose owning process is gone (killed with SIGKILL). */
async function reapStaleDirs(): Promise<void> {
  const entries = await readdir(tmpdir()).catch(() => []);
  for (const name of entries.filter((n) => n.startsWith(DIR_PREFIX))) {
    const dir = join(tmpdir(), name);
    const pid = Number.parseInt(await readFile(join(dir, OWNER_FILE), 'utf8').catch(() => ''), 10);
    // No owner file: kept on purpose (keepDir) or still being created; leave it.
    if (Number.isInteger(pid) && pid > 0 && !isAlive(pid)) await rm(dir, { recursive: true, force: true });
  }
}

const hasSetpriv = ((): boolean => {
  const r = spawnSync('setpriv', ['--pdeathsig', 'KILL', '--', 'true'], { stdio: 'ignore' });
  return r.status === 0;
})();

export interface Daemon {
  readonly child: ChildProcess;
  readonly logPath: string;
  /** Resolves when the process exits, with its code or signal. */
  readonly exited: Promise<string>;
}

function startDaemon(bin: string, args: readonly string[], logPath: string): Daemon {
  const fd = openSync(logPath, 'a');
  try {
    const [cmd, argv] = hasSetpriv
      ? ['setpriv', ['--pdeathsig', 'KILL', '--', bin, ...args]]
      : [bin, [...args]];
    const child = spawn(cmd, argv, { stdio: ['ignore', fd, fd] });
    track(child);
    // Not holding the event loop open: a test that forgets stop() must not hang jest; the exit hook
    // and the death signal then take the processes down.
    child.unref();
    const exited = new Promise<string>((resolve) => {
      child.once('exit', (code, signal) => resolve(signal ?? `exit code ${String(code)}`));
      child.once('error', (err) => resolve(`spawn error: ${err.message}`));
    });
    return { child, logPath, exited };
  } finally {
    closeSync(fd);
  }
}

/** SIGTERM, then SIGKILL after STOP_GRACE_MS; resolves once the process is gone. */
export async function stopDaemon(d: Daemon): Promise<void> {
  if (d.child.exitCode !== null || d.child.signalCode !== null) return;
  d.child.kill('SIGTERM');
  // Cancelled once the process is gone: a pending timer would keep jest alive after the tests.
  const grace = new AbortController();
  const timeout = sleep(STOP_GRACE_MS, 'timeout', { signal: grace.signal }).catch(() => 'cancelled');
  const first = await Promise.race([d.exited, timeout]);
  grace.abort();
  if (first === 'timeout') {
    d.child.kill('SIGKILL');
    await d.exited;
  }
}

async function logTail(path: string): Promise<string> {
  try {
    const text = await readFile(path, 'utf8');
    return text.trimEnd().split('\n').slice(-LOG_TAIL_LINES).join('\n');
  } catch {
    return '(no log)';
  }
}

/**
 * Polls `probe` until it returns true, the daemon exits, or time runs out. A probe that throws is
 * "not yet" (connection refused while the port opens).
 */
/**
 * Starts a daemon until it is ready. Ports are picked free and then bound by the child: another
 * process can take one in between, so a start that dies is retried (3 attempts) on fresh ports
 * when `retryable` says the failure was that. The daemon is pushed to `daemons` for teardown.
 */
async function startReady(
  component: ControlPlaneComponent,
  daemons: Daemon[],
  timeoutMs: number,
  start: () => Promise<{ daemon: Daemon; probe: () => Promise<boolean> }>,
  retryable: (d: Daemon) => Promise<boolean> = async (d) =>
    (await logTail(d.logPath)).includes('address already in use'),
): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    const { daemon, probe } = await start();
    daemons.push(daemon);
    try {
      await waitReady(component, daemon, probe, timeoutMs);
      return;
    } catch (err) {
      await stopDaemon(daemon);
      daemons.pop();
      if (attempt >= 3 || !(await retryable(daemon))) throw err;
    }
  }
}

async function waitReady(
  component: ControlPlaneComponent,
  d: Daemon,
  probe: () => Promise<boolean>,
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let exitedWith: string | undefined;
  void d.exited.then((how) => {
    exitedWith = how;
  });
  let last = 'no answer yet';
  while (Date.now() < deadline) {
    if (exitedWith !== undefined) {
      throw new ControlPlaneStartError(component, `exited (${exitedWith})`, await logTail(d.logPath));
    }
    try {
      if (await probe()) return;
      last = 'not ready';
    } catch (err) {
      last = err instanceof Error ? err.message : String(err);
    }
    await sleep(100);
  }
  throw new ControlPlaneStartError(
    component,
    `not ready after ${timeoutMs} ms (${last})`,
    await logTail(d.logPath),
  );
}

function httpsCall(
  url: string,
  ca: string | undefined,
  opts: { method?: string; token?: string; body?: string; contentType?: string },
): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = {};
    if (opts.token) headers.authorization = `Bearer ${opts.token}`;
    if (opts.body !== undefined) {
      headers['content-type'] = opts.contentType ?? 'application/json';
      // Node sends DELETE (like GET) without chunked encoding: a body without a length would be
      // read by the API server as the start of the next request on the kept-alive connection.
      headers['content-length'] = String(Buffer.byteLength(opts.body));
    }
    const req = httpsRequest(
      url,
      {
        method: opts.method ?? 'GET',
        headers,
        // The serving cert appears during start-up; until then we only probe, without verifying.
        ...(ca === undefined ? { rejectUnauthorized: false } : { ca }),
        signal: AbortSignal.timeout(10_000),
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          body += chunk;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(opts.body);
  });
}

function runCommand(
  bin: string,
  args: readonly string[],
  env: NodeJS.ProcessEnv,
  opts: { input?: string; timeoutMs?: number },
): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, {
      env,
      stdio: ['pipe', 'pipe', 'pipe'],
      timeout: opts.timeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS,
      killSignal: 'SIGKILL',
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => {
      stdout += c;
    });
    child.stderr.setEncoding('utf8').on('data', (c: string) => {
      stderr += c;
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ stdout, stderr, code }));
    // A command that exits before reading its input makes stdin emit EPIPE; the exit code tells.
    child.stdin.on('error', () => {});
    child.stdin.end(opts.input);
  });
}

const csvSafe = /^[^,"\r\n]+$/;

function staticUsers(init: Readonly<Record<string, StaticUserInit>>): Record<string, StaticUser> {
  const out: Record<string, StaticUser> = {};
  for (const [key, u] of Object.entries(init)) {
    const user: StaticUser = {
      name: u.name,
      uid: u.uid ?? u.name,
      groups: [...(u.groups ?? [])],
      token: u.token ?? randomBytes(24).toString('hex'),
    };
    for (const [field, value] of [
      ['name', user.name],
      ['uid', user.uid],
      ['token', user.token],
      ...user.groups.map((g) => ['groups', g] as const),
    ] as const) {
      if (!csvSafe.test(value)) {
        throw new ControlPlaneOptionsError(
          `users.${key}.${field}`,
          value,
          'a non-empty string without commas, quotes or newlines',
        );
      }
    }
    out[key] = user;
  }
  return out;
}

function kubeconfig(url: string, caPem: string, token: string, user: string, namespace: string): string {
  // JSON is YAML, and kubectl, helm and @kubernetes/client-node all read it.
  return JSON.stringify(
    {
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [
        {
          name: 'peertunnel-test',
          cluster: { server: url, 'certificate-authority-data': Buffer.from(caPem).toString('base64') },
        },
      ],
      users: [{ name: user, user: { token } }],
      contexts: [{ name: user, context: { cluster: 'peertunnel-test', user, namespace } }],
      'current-context': user,
    },
    null,
    2,
  );
}

function argList(args: Record<string, string | null>): string[] {
  return Object.entries(args).flatMap(([k, v]) => (v === null ? [] : [`--${k}=${v}`]));
}

/**
 * Starts etcd and kube-apiserver (and kube-controller-manager if asked) and waits until each says
 * it is healthy. Call `stop()` when done.
 */
export async function startControlPlane(opts: ControlPlaneOptions = {}): Promise<ControlPlane> {
  const tools = opts.tools ?? (await ensureTools());
  const timeoutMs = opts.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS;
  const keepDir = opts.keepDir ?? process.env.PEERTUNNEL_KEEP_ENV === '1';
  const users = staticUsers(opts.users ?? {});
  const adminToken = randomBytes(24).toString('hex');
  await reapStaleDirs();
  const dir = await mkdtemp(join(tmpdir(), DIR_PREFIX));
  const daemons: Daemon[] = [];
  const janitor = keepDir ? undefined : startJanitor(dir);
  let egress: EgressProxy | undefined;

  const cleanup = async (): Promise<void> => {
    // The API server first, so it does not spend its last seconds complaining about etcd.
    for (const d of [...daemons].reverse()) await stopDaemon(d);
    daemons.length = 0;
    await egress?.close();
    if (janitor?.pid !== undefined) {
      // The whole group: `tail`, its child, would otherwise linger until this process exits.
      try {
        process.kill(-janitor.pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    }
    if (keepDir) process.stderr.write(`peertunnel test control plane kept in ${dir}\n`);
    else await rm(dir, { recursive: true, force: true });
  };

  try {
    // A kept dir has no owner, so no later start reaps it.
    if (!keepDir) await writeFile(join(dir, OWNER_FILE), String(process.pid));
    // etcd: its data dir goes with a failed start, whatever the cause.
    let etcdUrl = '';
    await startReady(
      'etcd',
      daemons,
      timeoutMs,
      async () => {
        const [clientPort, peerPort] = [await freePort(), await freePort()];
        etcdUrl = `http://127.0.0.1:${clientPort}`;
        const peerUrl = `http://127.0.0.1:${peerPort}`;
        const daemon = startDaemon(
          tools.etcd,
          [
            '--name=default',
            `--data-dir=${join(dir, 'etcd')}`,
            `--listen-client-urls=${etcdUrl}`,
            `--advertise-client-urls=${etcdUrl}`,
            `--listen-peer-urls=${peerUrl}`,
            `--initial-advertise-peer-urls=${peerUrl}`,
            `--initial-cluster=default=${peerUrl}`,
            // Throwaway data: durability costs seconds per test run on a shared disk.
            '--unsafe-no-fsync=true',
            '--log-level=warn',
          ],
          join(dir, 'etcd.log'),
        );
        const probe = async () => {
          const res = await fetch(`${etcdUrl}/health`, { signal: AbortSignal.timeout(2_000) });
          return res.ok && ((await res.json()) as { health?: string }).health === 'true';
        };
        return { daemon, probe };
      },
      async () => {
        await rm(join(dir, 'etcd'), { recursive: true, force: true });
        return true;
      },
    );

    // Service account signing keys: the API server signs TokenRequest tokens with them.
    const sa = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    await writeFile(join(dir, 'sa.key'), sa.privateKey.export({ type: 'pkcs8', format: 'pem' }), {
      mode: 0o600,
    });
    await writeFile(join(dir, 'sa.pub'), sa.publicKey.export({ type: 'spki', format: 'pem' }));
    const tokenLines = [
      `${adminToken},peertunnel-test-admin,peertunnel-test-admin,"system:masters"`,
      // No group column when there are no groups: an empty one would read as the group "".
      ...Object.values(users).map(
        (u) => `${u.token},${u.name},${u.uid}${u.groups.length > 0 ? `,"${u.groups.join(',')}"` : ''}`,
      ),
    ];
    await writeFile(join(dir, 'tokens.csv'), `${tokenLines.join('\n')}\n`, { mode: 0o600 });

    if (opts.egressProxy === true) egress = await startEgressProxy(dir, (p, text) => writeFile(p, text));
    const certDir = join(dir, 'certs');
    const auditLogPath = opts.auditPolicy === undefined ? undefined : join(dir, 'audit.log');
    if (opts.auditPolicy !== undefined) {
      // JSON is YAML, which is what kube-apiserver reads.
      await writeFile(join(dir, 'audit-policy.yaml'), JSON.stringify(opts.auditPolicy));
    }
    let url = '';
    await startReady('kube-apiserver', daemons, timeoutMs, async () => {
      const port = await freePort();
      url = `https://127.0.0.1:${port}`;
      const args: Record<string, string | null> = {
        'etcd-servers': etcdUrl,
        'bind-address': '127.0.0.1',
        'secure-port': String(port),
        // Otherwise it picks the host's first interface; the self-signed cert then lacks 127.0.0.1.
        'advertise-address': '127.0.0.1',
        // No serving cert given: kube-apiserver makes a CA and a cert signed by it, in this dir.
        'cert-dir': certDir,
        'token-auth-file': join(dir, 'tokens.csv'),
        'authorization-mode': 'RBAC',
        'service-account-issuer': 'https://kubernetes.default.svc.cluster.local',
        'service-account-key-file': join(dir, 'sa.pub'),
        'service-account-signing-key-file': join(dir, 'sa.key'),
        'service-cluster-ip-range': '10.0.0.0/24',
        'allow-privileged': 'true',
        'enable-admission-plugins': [
          'NamespaceLifecycle',
          'LimitRanger',
          'PodSecurity',
          'MutatingAdmissionWebhook',
          'ValidatingAdmissionWebhook',
          'ValidatingAdmissionPolicy',
          'ResourceQuota',
        ].join(','),
        // Without a controller-manager nothing creates the `default` service account, and this
        // plugin would then refuse every pod (envtest does the same).
        'disable-admission-plugins': 'ServiceAccount',
        // A loopback advertise address cannot be an Endpoints address; nothing here needs them.
        'endpoint-reconciler-type': 'none',
        profiling: 'false',
        ...(auditLogPath === undefined
          ? {}
          : {
              'audit-policy-file': join(dir, 'audit-policy.yaml'),
              'audit-log-path': auditLogPath,
              'audit-log-format': 'json',
              'audit-log-mode': 'blocking',
            }),
        ...(egress === undefined
          ? {}
          : {
              'egress-selector-config-file': egress.configPath,
              // A node's Hostname address does not resolve here; its InternalIP is what the proxy routes.
              'kubelet-preferred-address-types': 'InternalIP',
            }),
        ...opts.apiServerArgs,
      };
      const daemon = startDaemon(tools.kubeApiserver, argList(args), join(dir, 'kube-apiserver.log'));
      const probe = async () =>
        (await httpsCall(`${url}/readyz`, undefined, { token: adminToken })).status === 200 &&
        existsSync(join(certDir, 'apiserver.crt'));
      return { daemon, probe };
    });

    // apiserver.crt holds the serving cert followed by the CA that signed it; trusting the file
    // trusts that CA, which is all a client needs.
    const caPem = await readFile(join(certDir, 'apiserver.crt'), 'utf8');
    const kubeconfigPath = join(dir, 'kubeconfig');
    await writeFile(kubeconfigPath, kubeconfig(url, caPem, adminToken, 'admin', 'default'), { mode: 0o600 });

    if (opts.controllerManager === true) {
      const rootCaPath = join(dir, 'ca.crt');
      await writeFile(rootCaPath, lastCertificate(caPem));
      const paths = { dir, kubeconfigPath, serviceAccountKeyPath: join(dir, 'sa.key'), rootCaPath };
      await startReady('kube-controller-manager', daemons, timeoutMs, async () => {
        const port = await freePort();
        const args = { ...controllerManagerArgs(paths, port), ...opts.controllerManagerArgs };
        const logPath = join(dir, 'kube-controller-manager.log');
        const daemon = startDaemon(tools.kubeControllerManager, argList(args), logPath);
        // Its serving cert is self-signed (unverified: only readiness is asked); /healthz goes
        // through delegated authentication, hence the admin token.
        const probe = async () =>
          (await httpsCall(`https://127.0.0.1:${port}/healthz`, undefined, { token: adminToken })).status ===
          200;
        return { daemon, probe };
      });
    }

    const scheduler = opts.scheduler;
    if (scheduler !== undefined) {
      await startReady('kube-scheduler', daemons, timeoutMs, async () => {
        const port = await freePort();
        const args = {
          kubeconfig: kubeconfigPath,
          'authentication-kubeconfig': kubeconfigPath,
          'authorization-kubeconfig': kubeconfigPath,
          'authentication-skip-lookup': 'true',
          'bind-address': '127.0.0.1',
          'secure-port': String(port),
          'cert-dir': join(dir, 'kube-scheduler-certs'),
          'leader-elect': 'false',
          profiling: 'false',
        };
        const daemon = startDaemon(scheduler, argList(args), join(dir, 'kube-scheduler.log'));
        const probe = async () =>
          (await httpsCall(`https://127.0.0.1:${port}/healthz`, undefined, { token: adminToken })).status ===
          200;
        return { daemon, probe };
      });
    }

    const baseEnv: NodeJS.ProcessEnv = { ...process.env };
    // Nothing of the developer's own cluster may leak in.
    delete baseEnv.KUBECONFIG;
    const kubectlCache = join(dir, 'kubectl-cache');
    const kubectl = (args: readonly string[], o: CommandOptions = {}): Promise<CommandResult> =>
      runCommand(
        tools.kubectl,
        [
          `--kubeconfig=${kubeconfigPath}`,
          `--cache-dir=${kubectlCache}`,
          ...(o.token === undefined ? [] : [`--token=${o.token}`]),
          ...args,
        ],
        baseEnv,
        o,
      );
    const helmEnv: NodeJS.ProcessEnv = {
      ...baseEnv,
      KUBECONFIG: kubeconfigPath,
      HELM_CACHE_HOME: join(dir, 'helm', 'cache'),
      HELM_CONFIG_HOME: join(dir, 'helm', 'config'),
      HELM_DATA_HOME: join(dir, 'helm', 'data'),
    };
    let stopping: Promise<void> | undefined;
    let extraConfigs = 0;

    return {
      url,
      adminToken,
      kubeconfigPath,
      caPem,
      etcdUrl,
      tools,
      kubectlPath: tools.kubectl,
      helmPath: tools.helm,
      users,
      dir,
      controllerManager: opts.controllerManager === true,
      scheduler: scheduler !== undefined,
      egress,
      auditLogPath,
      kubectl,
      async kubectlOk(args, o) {
        const r = await kubectl(args, o);
        if (r.code !== 0) throw new CommandFailedError('kubectl', args, r.code, r.stderr);
        return r.stdout;
      },
      async apply(objects, o = {}) {
        const items = Array.isArray(objects) ? objects : [objects];
        const args = ['apply', '-f', '-'];
        const r = await kubectl(args, {
          ...o,
          input: JSON.stringify({ apiVersion: 'v1', kind: 'List', items }),
        });
        if (r.code !== 0) throw new CommandFailedError('kubectl', args, r.code, r.stderr);
        return r.stdout;
      },
      helm: (args, o = {}) => runCommand(tools.helm, args, helmEnv, o),
      request: (path, o = {}) => httpsCall(`${url}${path}`, caPem, { ...o, token: o.token ?? adminToken }),
      async kubeconfigFor(token, o = {}) {
        const path = join(dir, `kubeconfig-${++extraConfigs}`);
        await writeFile(path, kubeconfig(url, caPem, token, o.name ?? 'user', o.namespace ?? 'default'), {
          mode: 0o600,
        });
        return path;
      },
      async serviceAccountToken(namespace, name, o = {}) {
        const args = ['create', 'token', name, '-n', namespace, `--duration=${o.durationSeconds ?? 3600}s`];
        const r = await kubectl(args);
        if (r.code !== 0) throw new CommandFailedError('kubectl', args, r.code, r.stderr);
        return r.stdout.trim();
      },
      stop() {
        stopping ??= cleanup();
        return stopping;
      },
    };
  } catch (err) {
    await cleanup();
    throw err;
  }
}
