/**
 * The RBAC the operator needs, as objects: the source for the chart and what the integration tests
 * run the operator under (so a missing rule fails a test, not a user's install). Every verb is one
 * the code uses; objects with a name known in advance are named (`resourceNames`). A create by
 * POST has no name to match, so the Lease's create stays unnamed; a server-side apply that creates
 * is authorized as `create` of the named object.
 */

/** The names the operator's flags give its own objects (the defaults are `peertunnel operator`'s). */
export interface OperatorObjectNames {
  /** --lease-name */
  leaseName: string;
  /** --webhook-config; undefined when the operator leaves the configuration alone (cert-manager). */
  webhookConfig?: string;
  /** Whether the operator issues workload credentials (--cluster-name). */
  credentials?: boolean;
}

export const DEFAULT_OBJECT_NAMES: OperatorObjectNames = {
  leaseName: 'peertunnel-operator',
  webhookConfig: 'peertunnel',
  credentials: true,
};

export function operatorRbac(
  namespace: string,
  serviceAccount: string,
  names: OperatorObjectNames = DEFAULT_OBJECT_NAMES,
): object[] {
  const name = 'peertunnel-operator';
  const subject = { kind: 'ServiceAccount', name: serviceAccount, namespace };
  return [
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRole',
      metadata: { name },
      rules: [
        // Informers.
        {
          apiGroups: ['peertunnel.io'],
          resources: ['peertunnels', 'peernetworks'],
          verbs: ['list', 'watch'],
        },
        // Server-side apply of the status.
        {
          apiGroups: ['peertunnel.io'],
          resources: ['peertunnels/status', 'peernetworks/status'],
          verbs: ['patch'],
        },
        { apiGroups: [''], resources: ['pods'], verbs: ['list', 'watch'] },
        ...(names.credentials === true
          ? [
              // Credential requests: the sidecar's projected token is checked by the API server,
              // and its pod read fresh (a cache may still hold a pod just deleted).
              { apiGroups: ['authentication.k8s.io'], resources: ['tokenreviews'], verbs: ['create'] },
              { apiGroups: [''], resources: ['pods'], verbs: ['get'] },
            ]
          : []),
        // Watched as metadata only; a network's swarm key is read (get) when it is reconciled;
        // relay identities are created and updated in the networks' namespaces, the webhook
        // certificate and the status token in the operator's.
        { apiGroups: [''], resources: ['secrets'], verbs: ['get', 'list', 'watch', 'create', 'update'] },
        // Relays: looked at before apply (never take over what is not ours), applied, scaled down.
        {
          apiGroups: [''],
          resources: ['services'],
          verbs: ['get', 'list', 'create', 'patch', 'delete'],
        },
        {
          apiGroups: ['apps'],
          resources: ['deployments'],
          verbs: ['get', 'list', 'create', 'patch', 'delete'],
        },
        { apiGroups: ['events.k8s.io'], resources: ['events'], verbs: ['create'] },
        ...(names.webhookConfig === undefined
          ? []
          : [
              // Applied with the current caBundle (self-managed certificates).
              {
                apiGroups: ['admissionregistration.k8s.io'],
                resources: ['mutatingwebhookconfigurations'],
                resourceNames: [names.webhookConfig],
                verbs: ['create', 'patch'],
              },
            ]),
      ],
    },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRoleBinding',
      metadata: { name },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name },
      subjects: [subject],
    },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'Role',
      metadata: { name, namespace },
      rules: [
        // Leader election: created once (a POST carries no name to match), then read and renewed.
        { apiGroups: ['coordination.k8s.io'], resources: ['leases'], verbs: ['create'] },
        {
          apiGroups: ['coordination.k8s.io'],
          resources: ['leases'],
          resourceNames: [names.leaseName],
          verbs: ['get', 'update'],
        },
      ],
    },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'RoleBinding',
      metadata: { name, namespace },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name },
      subjects: [subject],
    },
  ];
}
