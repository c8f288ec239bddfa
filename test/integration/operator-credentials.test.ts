/**
 * Workload credentials from the operator, through a real API server: sidecars (real node
 * processes on 127.0.0.1, run from their injected pod specs) prove who they are with a real
 * projected token bound to their pod (TokenRequest, checked by TokenReview), get a credential
 * signed by cluster "a", renew it before it expires; an expose's allowFrom (namespace shop)
 * serves a pod of shop and refuses one of another namespace, and the refusal shows in the
 * PeerTunnel's status. Requests with a deleted pod's token, a token for another audience or a
 * proof by another key are refused and counted.
 */
import { afterAll, beforeAll, expect, it } from '@jest/globals';
import { decodeCredential } from '../../contracts/credential.js';
import type { ControlPlane } from '../env/control-plane.js';
import { type RunningSidecar, runPodSidecar } from '../env/pod-runner.js';
import { describeWithControlPlane } from '../env/skip.js';
import { type NodeProcess, startNodeProcess, testSwarmKey } from '../helpers/node-process.js';
import { echoRoundTrip, echoServer, type TestServer } from '../helpers/traffic.js';
import {
  askCredential,
  boundToken,
  createPod,
  credentialedNamespace,
  requester,
} from './credential-harness.js';
import {
  eventually,
  freePort,
  getJson,
  installOperatorPrerequisites,
  type OperatorProcess,
  operatorUsers,
  startOperator,
  waitForReason,
  webhookCa,
} from './operator-harness.js';

const KEY = testSwarmKey();
const KEY_ENV = 'PEERTUNNEL_TEST_RELAY_KEY';
const TTL = 10;

interface TunnelTrust {
  status?: {
    trust?: { refused: number; refusals?: Array<Record<string, string>> };
    summary?: { refused?: string };
  };
}

const tunnel = (ns: string, name: string, spec: object) => ({
  apiVersion: 'peertunnel.io/v1alpha1',
  kind: 'PeerTunnel',
  metadata: { name, namespace: ns },
  spec: { networkRef: { name: 'mesh' }, ...spec },
});

describeWithControlPlane(
  'operator: workload credentials, allowFrom, renewal',
  (env) => {
    let op: OperatorProcess;
    let relay: NodeProcess;
    let echo: TestServer;
    let webhookPort = 0;
    let shopPort = 0;
    let otherPort = 0;
    const sidecars = new Map<string, RunningSidecar>();
    const refused = (reason: string) =>
      op.metric('peertunnel_operator_credentials_refused_total', { reason }).catch(() => 0);

    beforeAll(async () => {
      const cp: ControlPlane = env.cp;
      await installOperatorPrerequisites(cp);
      webhookPort = await freePort();
      op = await startOperator(cp, {
        identity: 'op-cred',
        webhookPort,
        extraArgs: ['--trust-admin-address-annotation', '--cluster-name=a'],
      });
      relay = await startNodeProcess(
        { role: 'relay', swarmKey: { env: KEY_ENV }, listen: ['/ip4/127.0.0.1/tcp/0'] },
        { env: { [KEY_ENV]: KEY } },
      );
      const bootstrap = relay.addresses.filter((a) => a.startsWith('/ip4/127.0.0.1/'));
      echo = await echoServer();
      shopPort = await freePort();
      otherPort = await freePort();
      await credentialedNamespace(cp, 'shop', {
        key: KEY,
        bootstrap,
        serviceAccounts: ['db', 'web'],
        ttlSeconds: TTL,
      });
      await credentialedNamespace(cp, 'other', {
        key: KEY,
        bootstrap,
        serviceAccounts: ['intruder'],
        ttlSeconds: TTL,
      });
      await cp.apply([
        tunnel('shop', 'db', {
          selector: { matchLabels: { app: 'db' } },
          expose: [{ name: 'echo', port: echo.port, allowFrom: [{ cluster: 'a', namespace: 'shop' }] }],
        }),
        tunnel('shop', 'client', {
          selector: { matchLabels: { app: 'client' } },
          forward: [{ name: 'echo', localPort: shopPort }],
        }),
        tunnel('other', 'client', {
          selector: { matchLabels: { app: 'client' } },
          forward: [{ name: 'echo', localPort: otherPort }],
        }),
      ]);
      await waitForReason(cp, 'peertunnel/db', 'shop', 'NoPodsSelected');
    }, 120_000);

    afterAll(async () => {
      await Promise.all([...sidecars.values()].map((s) => s.stop()));
      await relay?.stop();
      await echo?.close();
      await op?.stop();
    });

    it('shows this cluster and its public key in the network status', async () => {
      const n = await eventually('status.trust on the network', async () => {
        const o = await getJson<{ status?: { trust?: { cluster: string; publicKey: string } } }>(env.cp, [
          '-n',
          'shop',
          'get',
          'peernetwork',
          'mesh',
        ]);
        return o.status?.trust;
      });
      expect(n.cluster).toBe('a');
      expect(n.publicKey).toMatch(/^ed25519:[A-Za-z0-9_-]{43}$/);
    });

    it("gives an injected sidecar a credential through its pod's bound token", async () => {
      await createPod(env.cp, 'shop', 'db-0', 'db', 'db');
      const db = await runPodSidecar(env.cp, 'shop', 'db-0');
      sidecars.set('db', db);
      await db.node.waitFor((l) => l.event === 'credential_fetched', 30_000);
      const status = await eventually('the credential in /status', async () => {
        const s = await db.node.status();
        return s.trust?.credential ?? undefined;
      });
      expect(status).toMatchObject({
        cluster: 'a',
        namespace: 'shop',
        serviceAccount: 'db',
        expose: ['echo'],
      });
      await op.waitFor((l) => l.event === 'credential_issued' && l.pod === 'db-0');
      expect(await op.metric('peertunnel_operator_credentials_issued_total')).toBeGreaterThanOrEqual(1);
    });

    it("refuses a deleted pod's token, another audience's token and a proof by another key, and counts each", async () => {
      const ca = await webhookCa(env.cp);
      const who = await requester();
      const live = await createPod(env.cp, 'shop', 'probe-0', 'nothing', 'db');
      // The checks pass for the right token and key: what follows fails for its one difference.
      const good = await askCredential(
        webhookPort,
        ca,
        await boundToken(env.cp, 'shop', 'db', live.metadata),
        who,
      );
      expect(good.body.reason).toBe('no_tunnel');
      const dbPod = await getJson<{ metadata: { name: string; uid: string } }>(env.cp, [
        '-n',
        'shop',
        'get',
        'pod',
        'db-0',
      ]);
      const ok = await askCredential(
        webhookPort,
        ca,
        await boundToken(env.cp, 'shop', 'db', dbPod.metadata),
        who,
      );
      expect(ok.status).toBe(200);
      expect(decodeCredential(ok.body.credential ?? '').claims).toMatchObject({
        peer: who.peer,
        namespace: 'shop',
        serviceAccount: 'db',
        expose: ['echo'],
      });

      const gone = await createPod(env.cp, 'shop', 'gone-0', 'db', 'db');
      const goneToken = await boundToken(env.cp, 'shop', 'db', gone.metadata);
      await env.cp.kubectlOk(['-n', 'shop', 'delete', 'pod', 'gone-0', '--wait=true']);
      const before = { invalid: await refused('token_invalid'), proof: await refused('bad_proof') };
      const deleted = await askCredential(webhookPort, ca, goneToken, who);
      expect(deleted).toMatchObject({ status: 403, body: { reason: 'token_invalid' } });

      const apiToken = await boundToken(
        env.cp,
        'shop',
        'db',
        dbPod.metadata,
        'https://kubernetes.default.svc.cluster.local',
      );
      const audience = await askCredential(webhookPort, ca, apiToken, who);
      expect(audience).toMatchObject({ status: 403, body: { reason: 'token_invalid' } });
      expect(await refused('token_invalid')).toBe(before.invalid + 2);

      const stranger = await requester();
      const token = await boundToken(env.cp, 'shop', 'db', dbPod.metadata);
      const forged = await askCredential(webhookPort, ca, token, who, stranger.key);
      expect(forged).toMatchObject({ status: 403, body: { reason: 'bad_proof' } });
      expect(await refused('bad_proof')).toBe(before.proof + 1);
      await op.waitFor((l) => l.event === 'credential_refused' && l.reason === 'bad_proof');
    });

    it('serves a credentialed pod of namespace shop, refuses one of another namespace, and shows it', async () => {
      await createPod(env.cp, 'shop', 'client-0', 'client', 'web');
      await createPod(env.cp, 'other', 'client-0', 'client', 'intruder');
      sidecars.set('shop-client', await runPodSidecar(env.cp, 'shop', 'client-0'));
      sidecars.set('other-client', await runPodSidecar(env.cp, 'other', 'client-0'));
      await eventually(
        'an echo from shop through the tunnel',
        async () => ((await echoRoundTrip(shopPort, 4096).catch(() => false)) ? true : undefined),
        60_000,
      );
      let intruderGotThrough = false;
      const t = await eventually(
        'the refusal in the db tunnel status',
        async () => {
          if (await echoRoundTrip(otherPort, 4096).catch(() => false)) intruderGotThrough = true;
          const o = await getJson<TunnelTrust>(env.cp, ['-n', 'shop', 'get', 'peertunnel', 'db']);
          const r = o.status?.trust?.refusals?.find((x) => x.namespace === 'other');
          return r === undefined ? undefined : o;
        },
        60_000,
      );
      expect(intruderGotThrough).toBe(false);
      expect(t.status?.trust?.refusals?.[0]).toMatchObject({
        pod: 'db-0',
        side: 'expose',
        service: 'echo',
        reason: 'not_allowed',
        cluster: 'a',
        namespace: 'other',
        serviceAccount: 'intruder',
      });
      expect(t.status?.trust?.refusals?.some((x) => x.namespace === 'shop')).toBe(false);
      const printed = await env.cp.kubectlOk(['-n', 'shop', 'get', 'peertunnel', 'db']);
      expect(printed).toMatch(/REFUSED/);
      expect(printed).toMatch(new RegExp(`db\\s+True\\s+1/1\\s+-\\s+-\\s+${t.status?.summary?.refused}\\s`));
    });

    it('renews credentials before they expire, so tunnels outlive the first credential', async () => {
      const db = sidecars.get('db');
      if (db === undefined) throw new Error('no db sidecar');
      await db.node.waitFor(
        () => db.node.logs.filter((l) => l.event === 'credential_fetched').length >= 4,
        4 * TTL * 1000,
      );
      const fetched = db.node.logs.filter((l) => l.event === 'credential_fetched');
      for (let i = 1; i < fetched.length; i++) {
        const prev = fetched[i - 1];
        const next = fetched[i];
        // Each renewal lands while the previous credential is still valid.
        expect(Date.parse(String(next?.time))).toBeLessThan(Date.parse(String(prev?.expires)));
      }
      // Both ends have been through several lifetimes: the tunnel still carries traffic.
      expect(await echoRoundTrip(shopPort, 4096)).toBe(true);
    });
  },
  { users: operatorUsers },
);
