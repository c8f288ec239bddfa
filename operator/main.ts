/**
 * `peertunnel operator`: flags (with environment fallbacks for what a pod knows about itself),
 * the Operator, and a graceful stop on SIGTERM/SIGINT.
 */
import { isIP } from 'node:net';
import { parseArgs } from 'node:util';
import { CREDENTIAL_PATH } from '../contracts/credential-request.js';
import { isLogLevel, type LogLevel } from '../contracts/log-levels.js';
import { DNS_LABEL_PATTERN } from '../contracts/names.js';
import { createLogger } from '../sidecar/node/logger.js';
import { OperatorUsageError } from './errors.js';
import { loadKubeConfig } from './kube/client.js';
import { Operator, type OperatorOptions } from './operator.js';

export const OPERATOR_USAGE = `usage: peertunnel operator [flags]

  --namespace NS               the operator's namespace (env POD_NAMESPACE); never injected
  --identity NAME              this replica's name in the Lease (env POD_NAME; default host-pid)
  --kubeconfig FILE            default: in-cluster, else $KUBECONFIG, else ~/.kube/config
  --sidecar-image IMAGE        image of the injected sidecar and the relays (env PEERTUNNEL_SIDECAR_IMAGE)
  --native-sidecars auto|true|false   default auto (the server's version decides: >= 1.29)
  --health-listen HOST:PORT    /metrics /healthz /readyz (default 0.0.0.0:8080)
  --webhook-listen HOST:PORT   the admission webhook, HTTPS (default 0.0.0.0:9443)
  --webhook-reuse-port         share the webhook port with other processes on this host (tests)
  --webhook-secret NAME        Secret holding the webhook CA and certificate (default peertunnel-webhook-tls)
  --status-token-secret NAME   Secret holding the token sidecars want for /status (default peertunnel-status-token)
  --webhook-service NAME       Service in front of the webhook (default peertunnel-webhook)
  --webhook-url URL            call the webhook by URL instead of the Service (service-less, tests)
  --webhook-config NAME        MutatingWebhookConfiguration to manage (default peertunnel; "" leaves it alone)
  --webhook-failure-policy Ignore|Fail   default Ignore (see operator/webhook/configuration.ts)
  --webhook-timeout SECONDS    default 5
  --lease-name NAME            default peertunnel-operator
  --lease-duration SECONDS     default 15 (renew deadline 2/3 of it, retry period 2/15 of it)
  --status-interval SECONDS    how often tunnels' sidecars are asked for /status (default 30)
  --cluster-name NAME          this cluster's name in workload credentials; turns the issuer on
  --cluster-key-secret NAME    Secret holding the cluster signing key (default peertunnel-cluster-key)
  --trust-admin-address-annotation   reach sidecars at their pod's peertunnel.io/admin-address (tests)
  --log-level LEVEL            default info
`;

function hostPort(flag: string, value: string): { host: string; port: number } {
  const i = value.lastIndexOf(':');
  const host = value.slice(0, i).replace(/^\[|\]$/g, '');
  const port = Number(value.slice(i + 1));
  if (i <= 0 || isIP(host) === 0 || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new OperatorUsageError(flag, `expected IP:PORT, got "${value}"`);
  }
  return { host, port };
}

function seconds(flag: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!(n > 0)) throw new OperatorUsageError(flag, `expected a positive number of seconds, got "${value}"`);
  return n * 1000;
}

export function parseOperatorArgs(
  args: string[],
  env: NodeJS.ProcessEnv,
): Omit<OperatorOptions, 'kubeConfig' | 'logger'> & {
  kubeconfig?: string;
  logLevel: LogLevel;
} {
  const { values: v } = parseArgs({
    args,
    options: {
      namespace: { type: 'string' },
      identity: { type: 'string' },
      kubeconfig: { type: 'string' },
      'sidecar-image': { type: 'string' },
      'native-sidecars': { type: 'string' },
      'allow-remote-expose-namespaces': { type: 'string' },
      'health-listen': { type: 'string' },
      'webhook-listen': { type: 'string' },
      'webhook-reuse-port': { type: 'boolean' },
      'webhook-secret': { type: 'string' },
      'status-token-secret': { type: 'string' },
      'webhook-service': { type: 'string' },
      'webhook-url': { type: 'string' },
      'webhook-config': { type: 'string' },
      'webhook-failure-policy': { type: 'string' },
      'webhook-timeout': { type: 'string' },
      'lease-name': { type: 'string' },
      'lease-duration': { type: 'string' },
      'status-interval': { type: 'string' },
      'trust-admin-address-annotation': { type: 'boolean' },
      'cluster-name': { type: 'string' },
      'cluster-key-secret': { type: 'string' },
      'log-level': { type: 'string' },
    },
  });
  const namespace = v.namespace ?? env.POD_NAMESPACE;
  if (namespace === undefined || namespace === '') {
    throw new OperatorUsageError('--namespace', 'required (or env POD_NAMESPACE)');
  }
  const image = v['sidecar-image'] ?? env.PEERTUNNEL_SIDECAR_IMAGE;
  if (image === undefined || image === '') {
    throw new OperatorUsageError('--sidecar-image', 'required (or env PEERTUNNEL_SIDECAR_IMAGE)');
  }
  const nativeFlag = v['native-sidecars'] ?? 'auto';
  if (!['auto', 'true', 'false'].includes(nativeFlag)) {
    throw new OperatorUsageError('--native-sidecars', `expected auto, true or false, got "${nativeFlag}"`);
  }
  const policy = v['webhook-failure-policy'] ?? 'Ignore';
  if (policy !== 'Ignore' && policy !== 'Fail') {
    throw new OperatorUsageError('--webhook-failure-policy', `expected Ignore or Fail, got "${policy}"`);
  }
  const timeout = Number(v['webhook-timeout'] ?? '5');
  if (!Number.isInteger(timeout) || timeout < 1 || timeout > 30) {
    throw new OperatorUsageError('--webhook-timeout', 'expected whole seconds from 1 to 30');
  }
  const service = v['webhook-service'] ?? 'peertunnel-webhook';
  const webhookListen = hostPort('--webhook-listen', v['webhook-listen'] ?? '0.0.0.0:9443');
  const url = v['webhook-url'];
  let urlHost: string | undefined;
  if (url !== undefined) {
    try {
      urlHost = new URL(url).hostname.replace(/^\[|\]$/g, '');
    } catch {
      throw new OperatorUsageError('--webhook-url', `expected an https URL, got "${url}"`);
    }
    if (!url.startsWith('https://'))
      throw new OperatorUsageError('--webhook-url', 'the API server calls webhooks over https');
  }
  const hosts = [
    ...(urlHost === undefined ? [] : [urlHost]),
    `${service}.${namespace}.svc`,
    `${service}.${namespace}.svc.cluster.local`,
    `${service}.${namespace}`,
    service,
  ];
  const configName = v['webhook-config'] ?? 'peertunnel';
  const clusterName = v['cluster-name'];
  if (clusterName !== undefined && !DNS_LABEL_PATTERN.test(clusterName))
    throw new OperatorUsageError('--cluster-name', `expected a DNS label, got "${clusterName}"`);
  // Sidecars reach the issuer where the API server reaches the webhook: the same server.
  const issuerUrl =
    url !== undefined
      ? new URL(CREDENTIAL_PATH, url).toString()
      : `https://${service}.${namespace}.svc:443${CREDENTIAL_PATH}`;
  const leaseMs = seconds('--lease-duration', v['lease-duration'], 15_000);
  const logLevel = v['log-level'] ?? 'info';
  if (!isLogLevel(logLevel)) {
    throw new OperatorUsageError('--log-level', `unknown level "${logLevel}"`);
  }
  return {
    kubeconfig: v.kubeconfig,
    logLevel,
    identity: v.identity ?? env.POD_NAME,
    settings: {
      operatorNamespace: namespace,
      image,
      nativeSidecars: nativeFlag === 'auto' ? 'auto' : nativeFlag === 'true',
      allowRemoteExposeNamespaces: (v['allow-remote-expose-namespaces'] ?? '')
        .split(',')
        .map((n) => n.trim())
        .filter((n) => n !== ''),
    },
    health: hostPort('--health-listen', v['health-listen'] ?? '0.0.0.0:8080'),
    webhook: {
      ...webhookListen,
      reusePort: v['webhook-reuse-port'] === true,
      secretName: v['webhook-secret'] ?? 'peertunnel-webhook-tls',
      hosts,
      configuration:
        configName === ''
          ? undefined
          : {
              name: configName,
              target: url !== undefined ? { url } : { service: { namespace, name: service, port: 443 } },
              failurePolicy: policy,
              timeoutSeconds: timeout,
            },
    },
    leader: {
      leaseName: v['lease-name'],
      leaseDurationMs: leaseMs,
      renewDeadlineMs: Math.round((leaseMs * 2) / 3),
      retryPeriodMs: Math.round((leaseMs * 2) / 15),
    },
    statusIntervalMs: seconds('--status-interval', v['status-interval'], 30_000),
    statusTokenSecret: v['status-token-secret'] ?? 'peertunnel-status-token',
    trustAdminAddressAnnotation: v['trust-admin-address-annotation'] === true,
    ...(clusterName === undefined || clusterName === ''
      ? {}
      : {
          credentials: {
            clusterName,
            keySecret: v['cluster-key-secret'] ?? 'peertunnel-cluster-key',
            issuerUrl,
          },
        }),
  };
}

export async function runOperator(args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  if (args.includes('--help') || args.includes('-h')) {
    process.stdout.write(OPERATOR_USAGE);
    return 0;
  }
  const parsed = parseOperatorArgs(args, env);
  const logger = createLogger(parsed.logLevel, { component: 'operator' });
  const operator = new Operator({ ...parsed, kubeConfig: loadKubeConfig(parsed.kubeconfig, env), logger });
  const stopped = new Promise<string>((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
  });
  try {
    await operator.start();
  } catch (err) {
    logger.error({ event: 'operator_start_failed', err: String(err) }, 'operator could not start');
    await operator.stop().catch(() => {});
    return 1;
  }
  const signal = await stopped;
  logger.info({ event: 'operator_stopping', signal }, 'stopping');
  // A stop that hangs (an API server that stopped answering) must not keep the pod terminating.
  const timer = setTimeout(() => {
    logger.error({ event: 'operator_stop_timeout' }, 'stop took too long; exiting');
    process.exit(1);
  }, 20_000);
  timer.unref();
  await operator.stop();
  return 0;
}
