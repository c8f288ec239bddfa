/**
 * Settings of sidecar injection: what the operator is told by its flags or Helm values, with
 * defaults applied once here. Pure.
 */
import { isLogLevel, LOG_LEVELS, type LogLevel } from '../../contracts/log-levels.js';
import { SettingsError } from '../errors.js';
import type { CredentialSettings } from './trust.js';

export type PullPolicy = 'Always' | 'IfNotPresent' | 'Never';

/** Namespaces never injected, whatever the settings say. */
export const ALWAYS_EXCLUDED_NAMESPACES: readonly string[] = ['kube-system'];

export interface InjectSettings {
  /** The operator's own namespace: never injected (its pods must start without the webhook). */
  operatorNamespace: string;
  /** More namespaces never injected, besides kube-system and the operator's own. */
  excludedNamespaces: readonly string[];
  /**
   * Namespaces whose PeerTunnels may expose hosts other than loopback (another pod, a Service IP).
   * Elsewhere whoever may create a PeerTunnel could otherwise offer the network any address the
   * pod reaches (the API server's, say). Link-local addresses are refused everywhere.
   */
  allowRemoteExposeNamespaces: readonly string[];
  /** Inject a native sidecar (an init container with `restartPolicy: Always`, Kubernetes >= 1.29). */
  nativeSidecars: boolean;
  /** The image whose entrypoint is the `peertunnel` CLI. */
  image: string;
  imagePullPolicy: PullPolicy;
  /** Name of the injected container; also how a pod that already has it is recognized. */
  containerName: string;
  /** Port of the sidecar's admin HTTP server (/livez /readyz /metrics /status) on all addresses. */
  adminPort: number;
  /** Port the sidecar's libp2p TCP transport listens on. */
  p2pPort: number;
  logLevel: LogLevel;
  /** Numeric user and group: a name-only USER in the image cannot satisfy runAsNonRoot. */
  runAsUser: number;
  runAsGroup: number;
  resources: { requests: Record<string, string>; limits: Record<string, string> };
  /** Hex SHA-256 of the operator's status token: sidecars answer /status off loopback only with it. */
  statusTokenSha256?: string;
  /** This operator as a credential issuer; undefined without a cluster name (no credentials). */
  credentials?: CredentialSettings;
}

/** Everything but the operator's namespace and the image has a default. */
export type InjectSettingsInput = Partial<InjectSettings> &
  Pick<InjectSettings, 'operatorNamespace' | 'image'>;

export const DEFAULT_SETTINGS: Omit<InjectSettings, 'operatorNamespace' | 'image'> = {
  excludedNamespaces: ['kube-public', 'kube-node-lease'],
  allowRemoteExposeNamespaces: [],
  nativeSidecars: true,
  imagePullPolicy: 'IfNotPresent',
  containerName: 'peertunnel',
  adminPort: 9090,
  p2pPort: 4001,
  logLevel: 'info',
  runAsUser: 65532,
  runAsGroup: 65532,
  // No CPU limit: throttling a forwarder stalls every connection through it.
  resources: { requests: { cpu: '10m', memory: '64Mi' }, limits: { memory: '256Mi' } },
};

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const PULL_POLICIES: readonly PullPolicy[] = ['Always', 'IfNotPresent', 'Never'];

function checkPort(field: string, value: number): void {
  if (!Number.isInteger(value) || value < 1 || value > 65535) {
    throw new SettingsError(field, `expected a port from 1 to 65535, got ${value}`);
  }
}

/** Applies defaults and checks the settings; throws SettingsError naming the bad one. */
export function injectSettings(input: InjectSettingsInput): InjectSettings {
  const s: InjectSettings = { ...DEFAULT_SETTINGS, ...input };
  if (!DNS_LABEL.test(s.operatorNamespace)) {
    throw new SettingsError('operatorNamespace', `expected a namespace name, got "${s.operatorNamespace}"`);
  }
  if (s.image.trim() === '' || /\s/.test(s.image)) {
    throw new SettingsError('image', `expected an image reference, got "${s.image}"`);
  }
  for (const ns of s.allowRemoteExposeNamespaces) {
    if (!DNS_LABEL.test(ns))
      throw new SettingsError('allowRemoteExposeNamespaces', `expected namespace names, got "${ns}"`);
  }
  if (!DNS_LABEL.test(s.containerName)) {
    throw new SettingsError('containerName', `expected a DNS label, got "${s.containerName}"`);
  }
  if (!PULL_POLICIES.includes(s.imagePullPolicy)) {
    throw new SettingsError('imagePullPolicy', `expected one of ${PULL_POLICIES.join(', ')}`);
  }
  if (!isLogLevel(s.logLevel)) {
    throw new SettingsError('logLevel', `expected one of ${LOG_LEVELS.join(', ')}`);
  }
  if (s.statusTokenSha256 !== undefined && !/^[0-9a-f]{64}$/.test(s.statusTokenSha256)) {
    throw new SettingsError('statusTokenSha256', 'expected 64 lowercase hex characters');
  }
  checkPort('adminPort', s.adminPort);
  checkPort('p2pPort', s.p2pPort);
  if (s.adminPort === s.p2pPort) throw new SettingsError('adminPort', 'must differ from p2pPort');
  for (const [field, id] of [
    ['runAsUser', s.runAsUser],
    ['runAsGroup', s.runAsGroup],
  ] as const) {
    // 0 is root: the restricted Pod Security Standard refuses runAsUser 0, and a root group buys nothing.
    if (!Number.isInteger(id) || id < 1 || id > 2147483647) {
      throw new SettingsError(field, `expected a non-root numeric id, got ${id}`);
    }
  }
  return s;
}
