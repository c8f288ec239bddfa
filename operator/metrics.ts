/**
 * The operator's metric families (docs/architecture.md, Observability), in one place, registered on a registry the caller
 * owns: one per process, tests make their own. Labels are bounded: kinds, results and skip reason
 * codes; never object or pod names (those are in status and events).
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

export type ReconcileKind = 'PeerTunnel' | 'PeerNetwork';
/** success: the status is settled (the key may still be looked at again later); error: retried with backoff. */
export type ReconcileResult = 'success' | 'error';
/** injected: a patch was returned; skipped: allowed unchanged (reason label); error: allowed after a failure. */
export type WebhookResult = 'injected' | 'skipped' | 'error';

export interface OperatorMetrics {
  registry: Registry;
  reconciles: Counter<'kind' | 'result'>;
  reconcileSeconds: Histogram<'kind'>;
  queueDepth: Gauge<'kind'>;
  webhookRequests: Counter<'result' | 'reason'>;
  webhookSeconds: Histogram<'result'>;
  injectedPods: Gauge;
  leader: Gauge;
  informerRestarts: Counter<'resource'>;
  statusWrites: Counter<'kind'>;
  sidecarStatusInvalid: Counter;
  httpRefused: Counter<'server' | 'reason'>;
  statusPollFailures: Counter<'reason'>;
  credentialsIssued: Counter;
  credentialsRefused: Counter<'reason'>;
}

export function createOperatorMetrics(
  registry: Registry,
  sources: { injectedPods?: () => number } = {},
): OperatorMetrics {
  const registers = [registry];
  return {
    registry,
    reconciles: new Counter({
      name: 'peertunnel_operator_reconciles_total',
      help: 'Reconciles by kind and result (success, error).',
      labelNames: ['kind', 'result'],
      registers,
    }),
    reconcileSeconds: new Histogram({
      name: 'peertunnel_operator_reconcile_duration_seconds',
      help: 'Time one reconcile takes, including API calls and sidecar /status requests.',
      labelNames: ['kind'],
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    }),
    queueDepth: new Gauge({
      name: 'peertunnel_operator_queue_depth',
      help: 'Keys waiting in the work queue of each kind (not counting ones waiting out a backoff).',
      labelNames: ['kind'],
      registers,
    }),
    webhookRequests: new Counter({
      name: 'peertunnel_operator_webhook_requests_total',
      help: 'Admission requests by result (injected, skipped, error) and skip reason.',
      labelNames: ['result', 'reason'],
      registers,
    }),
    webhookSeconds: new Histogram({
      name: 'peertunnel_operator_webhook_duration_seconds',
      help: 'Time to answer one admission request, from the request body read to the response written.',
      labelNames: ['result'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers,
    }),
    injectedPods: new Gauge({
      name: 'peertunnel_operator_injected_pods',
      help: 'Pods (not finished) that carry the sidecar, as the informer cache sees them.',
      registers,
      collect() {
        if (sources.injectedPods !== undefined) this.set(sources.injectedPods());
      },
    }),
    leader: new Gauge({
      name: 'peertunnel_operator_leader',
      help: '1 while this replica holds the Lease and runs the controllers, else 0.',
      registers,
    }),
    informerRestarts: new Counter({
      name: 'peertunnel_operator_informer_restarts_total',
      help: 'Informers restarted after a watch or list failure, by resource.',
      labelNames: ['resource'],
      registers,
    }),
    statusWrites: new Counter({
      name: 'peertunnel_operator_status_writes_total',
      help: 'Status updates written (a reconcile writes only when the status changed).',
      labelNames: ['kind'],
      registers,
    }),
    sidecarStatusInvalid: new Counter({
      name: 'peertunnel_operator_sidecar_status_invalid_total',
      help: "Sidecar /status answers refused for breaking the status contract (an unknown path, a missing name); that pod's report is not counted.",
      registers,
    }),
    httpRefused: new Counter({
      name: 'peertunnel_operator_http_refused_total',
      help: "Connections refused by the operator's HTTP servers (server: health, webhook), by reason (connection_limit).",
      labelNames: ['server', 'reason'],
      registers,
    }),
    statusPollFailures: new Counter({
      name: 'peertunnel_operator_status_poll_failures_total',
      help: 'Sidecar /status reads that failed, by reason (unreachable, timeout, redirect, too_large, http_status, bad_body).',
      labelNames: ['reason'],
      registers,
    }),
    credentialsIssued: new Counter({
      name: 'peertunnel_operator_credentials_issued_total',
      help: 'Workload credentials issued to sidecars (first ones and renewals).',
      registers,
    }),
    credentialsRefused: new Counter({
      name: 'peertunnel_operator_credentials_refused_total',
      help: 'Credential and trusted-cluster requests refused, by reason (token_invalid, pod_gone, bad_proof, no_tunnel, rate_limited, bad_credential, network_gone, ...).',
      labelNames: ['reason'],
      registers,
    }),
  };
}
