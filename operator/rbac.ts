/**
 * The RBAC the operator needs, as objects: the source for the chart and what the integration tests
 * run the operator under (so a missing rule fails a test, not a user's install).
 */
export function operatorRbac(namespace: string, serviceAccount: string): object[] {
  const name = 'peertunnel-operator';
  const subject = { kind: 'ServiceAccount', name: serviceAccount, namespace };
  return [
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRole',
      metadata: { name },
      rules: [
        {
          apiGroups: ['peertunnel.io'],
          resources: ['peertunnels', 'peernetworks'],
          verbs: ['get', 'list', 'watch'],
        },
        {
          apiGroups: ['peertunnel.io'],
          resources: ['peertunnels/status', 'peernetworks/status'],
          verbs: ['get', 'patch', 'update'],
        },
        { apiGroups: [''], resources: ['pods'], verbs: ['get', 'list', 'watch'] },
        // Watched for the swarm-key Secrets; written only for relay identities.
        { apiGroups: [''], resources: ['secrets'], verbs: ['get', 'list', 'watch', 'create', 'update'] },
        { apiGroups: [''], resources: ['services'], verbs: ['get', 'list', 'create', 'patch', 'delete'] },
        {
          apiGroups: ['apps'],
          resources: ['deployments'],
          verbs: ['get', 'list', 'create', 'patch', 'delete'],
        },
        { apiGroups: ['events.k8s.io'], resources: ['events'], verbs: ['create', 'patch'] },
        {
          apiGroups: ['admissionregistration.k8s.io'],
          resources: ['mutatingwebhookconfigurations'],
          verbs: ['get', 'create', 'patch'],
        },
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
        { apiGroups: ['coordination.k8s.io'], resources: ['leases'], verbs: ['get', 'create', 'update'] },
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
