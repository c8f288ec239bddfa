/**
 * Every grant of operatorRbac() is needed: the operator (the built CLI, under its ServiceAccount's
 * identity, with exactly those rules) goes through a scenario that uses all of them, while
 * kube-apiserver audits its requests (Metadata level, its user only). Then, for each grant
 * expanded to one (apiGroup, resource[/subresource], verb, resourceName?), some request of the
 * operator was allowed by that grant and by nothing else in the cluster (no other grant of the
 * operator's roles, no rule of any other binding that reaches its user or groups), so removing
 * the grant turns that request into a 403. No request of the operator was refused. An unused
 * verb added to operatorRbac() fails this test.
 *
 * Scenario: two replicas (the second one finds the Lease, the Secrets and the webhook
 * configuration made by the first), a PeerNetwork with an operator-run relay scaled 1 → 2 → 1
 * (identity Secret created then updated; Services and Deployments created, patched, listed,
 * deleted), a PeerTunnel (its status), then both replicas stopped (the Lease released).
 */
import { readFile, stat } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, expect, it } from '@jest/globals';
import { operatorRbac } from '../../operator/kube/rbac.js';
import type { ControlPlane } from '../env/control-plane.js';
import { describeWithControlPlane } from '../env/skip.js';
import { testSwarmKey } from '../helpers/node-process.js';
import { askCredential, boundToken, createPod, requester } from './credential-harness.js';
import {
  eventually,
  freePort,
  getJson,
  installOperatorPrerequisites,
  type ObjWithStatus,
  OPERATOR_NS,
  OPERATOR_SA,
  type OperatorProcess,
  operatorUsers,
  startOperator,
  waitForReason,
  webhookCa,
} from './operator-harness.js';
import {
  accessesOf,
  type BoundRule,
  boundRuleApplies,
  boundRules,
  DECISION,
  describeAccess,
  describeGrant,
  expandGrants,
  grantApplies,
  parseAuditLog,
  REASON,
} from './rbac-audit.js';

const NS = 'rbac-test';
const USER = operatorUsers.operator.name;
const RBAC = operatorRbac(OPERATOR_NS, OPERATOR_SA);

const auditPolicy = {
  apiVersion: 'audit.k8s.io/v1',
  kind: 'Policy',
  // One event per request once answered (ResponseStarted for watches, which answer for long).
  omitStages: ['RequestReceived'],
  rules: [{ level: 'Metadata', users: [USER] }, { level: 'None' }],
};

const network = (replicas: number) => ({
  apiVersion: 'peertunnel.io/v1alpha1',
  kind: 'PeerNetwork',
  metadata: { name: 'mesh', namespace: NS },
  spec: {
    swarmKeySecretRef: { name: 'mesh-key' },
    relay: { enabled: true, serviceType: 'ClusterIP', replicas },
    trust: {},
  },
});

interface RbacObject {
  kind: string;
  metadata: { name: string; namespace?: string };
  rules?: unknown;
}

interface NetworkWithStatus extends ObjWithStatus {
  status?: ObjWithStatus['status'] & { relayAddresses?: string[] };
}

const relayAddresses = async (cp: ControlPlane) =>
  (await getJson<NetworkWithStatus>(cp, ['-n', NS, 'get', 'peernetwork', 'mesh'])).status?.relayAddresses ??
  [];

async function gone(cp: ControlPlane, what: string): Promise<boolean> {
  const r = await cp.kubectl(['-n', NS, 'get', what]);
  if (r.code === 0) return false;
  if (r.stderr.includes('NotFound')) return true;
  throw new Error(`kubectl get ${what}: ${r.stderr}`);
}

/** The audit log once the API server has stopped writing to it (sizes equal 500 ms apart). */
async function settledAuditLog(path: string): Promise<string> {
  let size = -1;
  for (let i = 0; i < 20; i++) {
    const now = (await stat(path)).size;
    if (now === size) break;
    size = now;
    await sleep(500);
  }
  return readFile(path, 'utf8');
}

describeWithControlPlane(
  'operator RBAC: every grant of operatorRbac() is used, and no request is refused',
  (env) => {
    const ops: OperatorProcess[] = [];
    let webhookPort = 0;
    const started = Date.now();

    beforeAll(async () => {
      const { cp } = env;
      await installOperatorPrerequisites(cp);
      await cp.kubectlOk(['create', 'namespace', NS]);
      await cp.kubectlOk([
        '-n',
        NS,
        'create',
        'secret',
        'generic',
        'mesh-key',
        `--from-literal=swarm.key=${testSwarmKey()}`,
      ]);
      const port = await freePort();
      // The first replica creates the status token, the webhook Secret and configuration and the
      // Lease; the second finds them (get), applies the configuration again (patch) and follows.
      // With a cluster name: the first also creates the cluster key Secret, the second reads it.
      const extraArgs = ['--cluster-name=a'];
      const a = await startOperator(cp, { identity: 'op-a', webhookPort: port, extraArgs });
      ops.push(a);
      await a.waitFor((l) => l.event === 'leader_elected');
      ops.push(await startOperator(cp, { identity: 'op-b', webhookPort: port, extraArgs }));
      webhookPort = port;
    }, 90_000);

    afterAll(async () => {
      for (const op of ops) await op.stop();
    });

    it('runs a relay 1 → 2 → 1 replicas and a tunnel, then stops both replicas', async () => {
      const { cp } = env;
      await cp.apply([
        network(1),
        {
          apiVersion: 'peertunnel.io/v1alpha1',
          kind: 'PeerTunnel',
          metadata: { name: 'db', namespace: NS },
          spec: {
            networkRef: { name: 'mesh' },
            selector: { matchLabels: { app: 'db' } },
            expose: [{ name: 'db', port: 5432 }],
          },
        },
      ]);
      await waitForReason(cp, 'peernetwork/mesh', NS, 'Ready');
      await waitForReason(cp, 'peertunnel/db', NS, 'NoPodsSelected');
      expect(await relayAddresses(cp)).toHaveLength(1);

      // A credential request: a TokenReview (create) and the pod read fresh (get).
      await cp.apply([{ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'db', namespace: NS } }]);
      const pod = await createPod(cp, NS, 'db-0', 'db', 'db');
      const asked = await askCredential(
        webhookPort,
        await webhookCa(cp),
        await boundToken(cp, NS, 'db', pod.metadata),
        await requester(),
      );
      expect(asked.status).toBe(200);

      // A second identity in the existing Secret (update), a second Service and Deployment.
      await cp.apply([network(2)]);
      await eventually('two relay addresses', async () =>
        (await relayAddresses(cp)).length === 2 ? true : undefined,
      );
      // Back to one: the second Deployment and Service are deleted.
      await cp.apply([network(1)]);
      await eventually('the second relay deleted', async () =>
        (await gone(cp, 'deployment/mesh-relay-1')) && (await gone(cp, 'service/mesh-relay-1'))
          ? true
          : undefined,
      );
      expect(await relayAddresses(cp)).toHaveLength(1);

      // The follower first; the leader's graceful stop releases the Lease (get, update).
      for (const op of [...ops].reverse()) await op.stop();
      expect(ops[0]?.logs.some((l) => l.event === 'operator_stopped')).toBe(true);
    }, 60_000);

    it('each grant allowed some request that nothing else allows; none was refused', async () => {
      const { cp } = env;
      const log = cp.auditLogPath;
      if (log === undefined) throw new Error('no audit log');
      const events = parseAuditLog(await settledAuditLog(log));
      const mine = events.filter((e) => e.user.username === USER);
      expect(mine.length).toBeGreaterThan(0);

      // What the cluster has is what operatorRbac() says.
      const rbacItems = (
        await getJson<{ items: object[] }>(cp, [
          'get',
          'clusterroles,clusterrolebindings,roles,rolebindings',
          '-A',
        ])
      ).items;
      const key = (o: RbacObject) => `${o.kind} ${o.metadata.namespace ?? ''}/${o.metadata.name}`;
      const installed = new Map((rbacItems as RbacObject[]).map((o) => [key(o), o]));
      for (const o of RBAC as RbacObject[]) {
        if (o.rules !== undefined) expect(installed.get(key(o))?.rules).toEqual(o.rules);
      }

      const grants = expandGrants(RBAC);
      const names = grants.map(describeGrant);
      // A grant listed twice could be removed once and nothing would notice.
      expect(names.filter((n, i) => names.indexOf(n) !== i)).toEqual([]);
      const user = cp.users.operator;
      if (user === undefined) throw new Error('no operator user');
      const ours = new Set(
        (RBAC as RbacObject[])
          .filter((o) => o.kind.endsWith('Binding'))
          .map((b) =>
            b.kind === 'RoleBinding'
              ? `RoleBinding ${b.metadata.namespace}/${b.metadata.name}`
              : `ClusterRoleBinding ${b.metadata.name}`,
          ),
      );
      const others: BoundRule[] = boundRules(rbacItems, user).filter((r) => !ours.has(r.binding));

      const refused: string[] = [];
      const unexplained: string[] = [];
      const counts = new Map<string, number>(names.map((n) => [n, 0]));
      const shared = new Map<string, number>();
      const elsewhere = new Map<string, number>();
      const bump = (m: Map<string, number>, k: string) => m.set(k, (m.get(k) ?? 0) + 1);
      for (const e of mine) {
        const code = e.responseStatus?.code;
        if (e.annotations?.[DECISION] !== 'allow' || code === 403) {
          // A 403 after an allowed patch is the create on apply refused.
          refused.push(
            `${e.verb} ${e.requestURI} → ${code} (${e.annotations?.[DECISION] ?? 'no decision'}: ${e.annotations?.[REASON] ?? ''})`,
          );
          continue;
        }
        const accesses = accessesOf(e);
        if (accesses === undefined) {
          bump(elsewhere, `(non-resource) ${e.verb} ${new URL(e.requestURI, 'https://x').pathname}`);
          continue;
        }
        for (const a of accesses) {
          const by = grants.filter((g) => grantApplies(g, a));
          const also = others.filter((r) => boundRuleApplies(r, a));
          if (by.length === 0) {
            // Allowed, but not by the operator's rules: it would depend on the cluster's defaults.
            unexplained.push(
              `${describeAccess(a)} (${also.map((r) => r.binding).join(', ') || e.annotations?.[REASON]})`,
            );
          } else if (by.length === 1 && also.length === 0) {
            const [g] = by;
            if (g === undefined) continue;
            // The authorizer's own account agrees (a create on apply has none of its own).
            if (!a.implicit) expect(e.annotations?.[REASON]).toMatch(/Binding "peertunnel-operator[/"]/);
            bump(counts, describeGrant(g));
          } else {
            for (const g of by) bump(shared, describeGrant(g));
          }
        }
      }

      const width = Math.max(...names.map((n) => n.length));
      const rows = [
        `RBAC grant → requests of ${USER} it alone allowed (${mine.length} requests audited, ${Math.round((Date.now() - started) / 1000)} s)`,
        ...names.map(
          (n) =>
            `  ${n.padEnd(width)}  ${String(counts.get(n)).padStart(4)}${shared.has(n) ? `  (+${shared.get(n)} also allowed otherwise)` : ''}`,
        ),
        ...[...elsewhere].map(([k, n]) => `  ${k.padEnd(width)}  ${String(n).padStart(4)}  (default roles)`),
      ];
      console.log(rows.join('\n'));

      expect(refused).toEqual([]);
      expect(unexplained).toEqual([]);
      expect(names.filter((n) => (counts.get(n) ?? 0) === 0)).toEqual([]);
    }, 30_000);
  },
  { users: operatorUsers, auditPolicy },
);
