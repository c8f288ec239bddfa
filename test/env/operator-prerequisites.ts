/** What an operator needs in a fresh API server before it starts: shared by tests and the bench. */
import { peerNetworkCrd, peerTunnelCrd } from '../../crds/schema.js';
import { operatorRbac } from '../../operator/kube/rbac.js';
import type { ControlPlane } from './control-plane.js';

export const OPERATOR_NS = 'peertunnel-system';
export const OPERATOR_SA = 'peertunnel';

/** CRDs, the operator's namespace, service account and RBAC; waits until the CRDs are served. */
export async function installOperatorPrerequisites(cp: ControlPlane): Promise<void> {
  await cp.apply([
    peerNetworkCrd,
    peerTunnelCrd,
    { apiVersion: 'v1', kind: 'Namespace', metadata: { name: OPERATOR_NS } },
    { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: OPERATOR_SA, namespace: OPERATOR_NS } },
    ...operatorRbac(OPERATOR_NS, OPERATOR_SA),
  ]);
  await cp.kubectlOk([
    'wait',
    '--for=condition=Established',
    '--timeout=30s',
    'crd/peertunnels.peertunnel.io',
    'crd/peernetworks.peertunnel.io',
  ]);
}
