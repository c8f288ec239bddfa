/**
 * Reading kube-apiserver's audit log against RBAC rules (rbac-needed.test.ts): what each logged
 * request asked the authorizer for, which rules allow it, and the operator's grants expanded to
 * single (apiGroup, resource[/subresource], verb, resourceName?) permissions.
 *
 * The request's name is taken from its URL, as the API server's RequestInfo does (an audit event's
 * objectRef.name of a create is filled in from the object, a name RBAC never saw). A server-side
 * apply or update that creates the object (answer 201) is authorized twice: as `patch`/`update`,
 * then as `create` of that name; the second check leaves no audit annotation, so it is counted
 * from the 201.
 */

export interface AuditEvent {
  auditID: string;
  stage: string;
  requestURI: string;
  verb: string;
  user: { username: string; groups?: string[] };
  objectRef?: {
    resource?: string;
    subresource?: string;
    namespace?: string;
    name?: string;
    apiGroup?: string;
  };
  responseStatus?: { code?: number };
  annotations?: Record<string, string>;
}

export const DECISION = 'authorization.k8s.io/decision';
export const REASON = 'authorization.k8s.io/reason';

/** Events of the log, one per request (the last stage logged of each audit ID). */
export function parseAuditLog(text: string): AuditEvent[] {
  const byId = new Map<string, AuditEvent>();
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    const e = JSON.parse(line) as AuditEvent;
    byId.set(e.auditID, e);
  }
  return [...byId.values()];
}

/** One authorization check of a resource request. */
export interface Access {
  group: string;
  /** `resource` or `resource/subresource`. */
  resource: string;
  verb: string;
  /** '' for cluster-scoped objects. */
  namespace: string;
  /** '' for collections (list, watch, create by POST). */
  name: string;
  /** Whether this check left no audit annotation (create-on-apply). */
  implicit: boolean;
}

/** The authorization checks of a request; undefined for non-resource requests (/version, /apis). */
export function accessesOf(e: AuditEvent): Access[] | undefined {
  const parts = new URL(e.requestURI, 'https://api.invalid').pathname.split('/').filter((p) => p !== '');
  let rest: string[];
  let group: string;
  if (parts[0] === 'api') {
    group = '';
    rest = parts.slice(2);
  } else if (parts[0] === 'apis') {
    group = parts[1] ?? '';
    rest = parts.slice(3);
  } else return undefined;
  if (rest.length === 0) return undefined;
  let namespace = '';
  if (rest[0] === 'namespaces' && rest.length > 2) {
    namespace = rest[1] ?? '';
    rest = rest.slice(2);
  }
  const [resource = '', name = '', subresource = ''] = rest;
  const full = subresource === '' ? resource : `${resource}/${subresource}`;
  const ref = e.objectRef;
  const refFull = ref?.subresource ? `${ref.resource ?? ''}/${ref.subresource}` : (ref?.resource ?? '');
  if (ref === undefined || (ref.apiGroup ?? '') !== group || refFull !== full)
    throw new Error(`cannot read ${e.verb} ${e.requestURI}: objectRef ${JSON.stringify(ref)}`);
  const base = { group, resource: full, namespace, name, implicit: false };
  const out: Access[] = [{ ...base, verb: e.verb }];
  if ((e.verb === 'patch' || e.verb === 'update') && e.responseStatus?.code === 201)
    out.push({ ...base, verb: 'create', implicit: true });
  return out;
}

export function describeAccess(a: Access): string {
  const where = a.namespace === '' ? '' : ` -n ${a.namespace}`;
  return `${a.verb} ${a.group === '' ? 'core' : a.group}/${a.resource}${a.name === '' ? '' : ` ${a.name}`}${where}${a.implicit ? ' (create on apply)' : ''}`;
}

export interface PolicyRule {
  apiGroups?: string[];
  resources?: string[];
  verbs: string[];
  resourceNames?: string[];
  nonResourceURLs?: string[];
}

/** RBAC's rule matching (k8s.io/kubernetes/pkg/apis/rbac/v1 evaluation helpers). */
export function ruleAllows(r: PolicyRule, a: Access): boolean {
  const resourceOk = (r.resources ?? []).some((res) => {
    if (res === '*' || res === a.resource) return true;
    const sub = a.resource.split('/')[1];
    return sub !== undefined && res === `*/${sub}`;
  });
  return (
    r.verbs.some((v) => v === '*' || v === a.verb) &&
    (r.apiGroups ?? []).some((g) => g === '*' || g === a.group) &&
    resourceOk &&
    ((r.resourceNames ?? []).length === 0 || (r.resourceNames ?? []).includes(a.name))
  );
}

/** One permission of a role: a rule narrowed to one group, resource, verb and name. */
export interface Grant {
  /** `ClusterRole name` or `Role namespace/name`. */
  role: string;
  /** The namespace a Role's grants are bound in; undefined for a ClusterRole's (bound cluster-wide). */
  namespace?: string;
  rule: PolicyRule;
}

export function describeGrant(g: Grant): string {
  const [group = '', resource = '', verb = ''] = [
    g.rule.apiGroups?.[0],
    g.rule.resources?.[0],
    g.rule.verbs[0],
  ];
  const name = g.rule.resourceNames?.[0];
  return `${g.role}: ${verb} ${group === '' ? 'core' : group}/${resource}${name === undefined ? '' : ` ${name}`}`;
}

interface RbacObject {
  kind: string;
  metadata: { name: string; namespace?: string };
  rules?: PolicyRule[];
}

/** The rules of the Roles and ClusterRoles among `objects`, expanded to single grants. */
export function expandGrants(objects: readonly object[]): Grant[] {
  const out: Grant[] = [];
  for (const o of objects as RbacObject[]) {
    if (o.kind !== 'ClusterRole' && o.kind !== 'Role') continue;
    const role =
      o.kind === 'ClusterRole'
        ? `ClusterRole ${o.metadata.name}`
        : `Role ${o.metadata.namespace}/${o.metadata.name}`;
    for (const r of o.rules ?? []) {
      if ((r.nonResourceURLs ?? []).length > 0)
        throw new Error(`${role}: non-resource rules are not expanded`);
      for (const group of r.apiGroups ?? [])
        for (const resource of r.resources ?? [])
          for (const verb of r.verbs)
            for (const name of r.resourceNames ?? [undefined]) {
              const rule: PolicyRule = { apiGroups: [group], resources: [resource], verbs: [verb] };
              if (name !== undefined) rule.resourceNames = [name];
              out.push({ role, namespace: o.kind === 'Role' ? o.metadata.namespace : undefined, rule });
            }
    }
  }
  return out;
}

export function grantApplies(g: Grant, a: Access): boolean {
  return (g.namespace === undefined || g.namespace === a.namespace) && ruleAllows(g.rule, a);
}

interface Subject {
  kind: string;
  name: string;
  namespace?: string;
}

interface Binding {
  kind: string;
  metadata: { name: string; namespace?: string };
  roleRef: { kind: string; name: string };
  subjects?: Subject[];
}

/** A rule some binding gives a user, with where it applies. */
export interface BoundRule {
  /** `ClusterRoleBinding name` or `RoleBinding namespace/name`. */
  binding: string;
  namespace?: string;
  rule: PolicyRule;
}

/**
 * Every rule the cluster's bindings give `user` (by name, service account or group, with
 * system:authenticated), from `kubectl get clusterroles,clusterrolebindings,roles,rolebindings -A`.
 */
export function boundRules(
  items: readonly object[],
  user: { name: string; groups: readonly string[] },
): BoundRule[] {
  const objs = items as Array<RbacObject & Binding>;
  const groups = new Set([...user.groups, 'system:authenticated']);
  const sa = /^system:serviceaccount:([^:]+):([^:]+)$/.exec(user.name);
  const matches = (s: Subject, bindingNs: string | undefined) =>
    (s.kind === 'User' && s.name === user.name) ||
    (s.kind === 'Group' && groups.has(s.name)) ||
    (s.kind === 'ServiceAccount' && sa !== null && s.name === sa[2] && (s.namespace ?? bindingNs) === sa[1]);
  const rulesOf = (ref: Binding['roleRef'], ns: string | undefined) =>
    objs.find(
      (o) =>
        o.kind === ref.kind &&
        o.metadata.name === ref.name &&
        (ref.kind === 'ClusterRole' || o.metadata.namespace === ns),
    )?.rules ?? [];
  const out: BoundRule[] = [];
  for (const b of objs) {
    if (b.kind !== 'ClusterRoleBinding' && b.kind !== 'RoleBinding') continue;
    const ns = b.kind === 'RoleBinding' ? b.metadata.namespace : undefined;
    if (!(b.subjects ?? []).some((s) => matches(s, ns))) continue;
    const binding =
      ns === undefined ? `ClusterRoleBinding ${b.metadata.name}` : `RoleBinding ${ns}/${b.metadata.name}`;
    for (const rule of rulesOf(b.roleRef, ns)) out.push({ binding, namespace: ns, rule });
  }
  return out;
}

export function boundRuleApplies(r: BoundRule, a: Access): boolean {
  return (r.namespace === undefined || r.namespace === a.namespace) && ruleAllows(r.rule, a);
}
