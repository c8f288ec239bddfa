/**
 * The Helm chart with the real helm: `helm lint` passes; `helm template` of four value sets matches
 * the golden files (as parsed YAML; UPDATE_GOLDEN=1 rewrites them); bad values are refused by
 * values.schema.json with a message naming the value. And the chart cannot drift from the code it
 * packages: its RBAC rules are operatorRbac()'s, its MutatingWebhookConfiguration is
 * renderWebhookConfiguration()'s without caBundle, its CRDs are crds/*.yaml, the operator accepts
 * the flags the Deployment passes, a relay's config passes the node's own validation, the
 * PrometheusRule carries files/alerts.yaml and each dashboards/*.json becomes a labelled ConfigMap.
 */
import { cp as copy, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from '@jest/globals';
import { parse, stringify } from 'yaml';
import { DEFAULT_SETTINGS } from '../../operator/inject/settings.js';
import { DEFAULT_OBJECT_NAMES, operatorRbac } from '../../operator/kube/rbac.js';
import { parseOperatorArgs } from '../../operator/main.js';
import { renderWebhookConfiguration } from '../../operator/webhook/configuration.js';
import { parseConfig } from '../../sidecar/config/config.js';
import { requireTools } from '../env/skip.js';
import { REPO_ROOT } from '../helpers/node-process.js';
import { CHART, FIXTURES, find, flag, type K8sObject, parseManifests, runHelm } from './chart-helpers.js';

const UPDATE = process.env.UPDATE_GOLDEN === '1';

/** The value sets with golden files, each installed under its own release name and namespace. */
const CASES = [
  { name: 'default', release: 'peertunnel', namespace: 'peertunnel-system' },
  { name: 'cert-manager-monitoring', release: 'peertunnel', namespace: 'peertunnel-system' },
  { name: 'relay', release: 'edge', namespace: 'edge-system' },
  { name: 'custom', release: 'tunnels', namespace: 'infra' },
] as const;

let helm = '';
let skip = false;

async function template(
  values: { file?: string; set?: string[] },
  release = 'peertunnel',
  namespace = 'peertunnel-system',
  chart = CHART,
): Promise<K8sObject[]> {
  const args = ['template', release, chart, '--namespace', namespace];
  if (values.file !== undefined) args.push('--values', values.file);
  for (const s of values.set ?? []) args.push('--set', s);
  const r = await runHelm(helm, args);
  if (r.code !== 0) throw new Error(`helm ${args.join(' ')} failed: ${r.stderr}`);
  return parseManifests(r.stdout);
}

const alertsText = () => readFile(join(CHART, 'files', 'alerts.yaml'), 'utf8');

/**
 * What the golden files hold: the rendered objects, except the parts that belong to other files of
 * the chart and are checked against them below (dashboards' JSON, the alert rules), so editing a
 * dashboard or an alert does not churn four golden files.
 */
async function forGolden(objects: K8sObject[]): Promise<K8sObject[]> {
  const alerts = parse(await alertsText()) as { groups: unknown[] };
  return objects
    .filter((o) => !(o.kind === 'ConfigMap' && o.metadata.labels?.grafana_dashboard === '1'))
    .map((o) => {
      if (o.kind !== 'PrometheusRule') return o;
      expect(o.spec.groups).toEqual(alerts.groups);
      return { ...o, spec: { ...o.spec, groups: '<files/alerts.yaml groups>' } };
    });
}

beforeAll(async () => {
  const tools = await requireTools('the Helm chart tests');
  if (tools === undefined) skip = true;
  else helm = tools.helm;
}, 60 * 60_000);

describe('Helm chart, rendered by the real helm', () => {
  it('passes helm lint --strict, with the defaults and with every value set', async () => {
    if (skip) return;
    for (const c of [undefined, ...CASES.map((x) => x.name)]) {
      const args = ['lint', CHART, '--strict'];
      if (c !== undefined) args.push('--values', join(FIXTURES, `${c}.values.yaml`));
      const r = await runHelm(helm, args);
      expect({ values: c, code: r.code, out: r.stdout + r.stderr }).toMatchObject({ code: 0 });
      expect(r.stdout).toContain('1 chart(s) linted, 0 chart(s) failed');
    }
  });

  it.each(CASES)('helm template with $name values matches its golden file', async (c) => {
    if (skip) return;
    const objects = await forGolden(
      await template({ file: join(FIXTURES, `${c.name}.values.yaml`) }, c.release, c.namespace),
    );
    const path = join(FIXTURES, `${c.name}.golden.yaml`);
    if (UPDATE) {
      const header = `# helm template ${c.release} charts/peertunnel -n ${c.namespace} -f ${c.name}.values.yaml\n# Rewrite: UPDATE_GOLDEN=1 jest test/integration/chart.test.ts\n`;
      await writeFile(path, header + objects.map((o) => stringify(o, { lineWidth: 0 })).join('---\n'));
    }
    const golden = parseManifests(await readFile(path, 'utf8'));
    expect(objects).toEqual(golden);
  });

  it.each([
    { set: 'operator.replicaCount=-1', names: '/operator/replicaCount' },
    { set: 'image.pullPolicy=Sometimes', names: '/image/pullPolicy' },
    { set: 'webhook.failurePolicy=Maybe', names: '/webhook/failurePolicy' },
    { set: 'webhook.timeoutSeconds=60', names: '/webhook/timeoutSeconds' },
    { set: 'webhook.urlOverride=http://127.0.0.1:9443/x', names: '/webhook/urlOverride' },
    { set: 'operator.logLevel=loud', names: '/operator/logLevel' },
    { set: 'relay.enabled=true', names: '/relay/identitySecret' },
    { set: 'replicaCount=2', names: "'replicaCount'" },
  ])('refuses $set, naming $names', async ({ set, names }) => {
    if (skip) return;
    const r = await runHelm(helm, ['template', 'peertunnel', CHART, '--set', set]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain("values don't meet the specifications of the schema");
    expect(r.stderr).toContain(names);
  });

  it('grants exactly the RBAC of operator/kube/rbac.ts, to the chart’s ServiceAccount', async () => {
    if (skip) return;
    for (const c of CASES) {
      const objects = await template(
        { file: join(FIXTURES, `${c.name}.values.yaml`) },
        c.release,
        c.namespace,
      );
      const deployment = objects.find(
        (o) => o.kind === 'Deployment' && o.metadata.name.endsWith('-operator'),
      );
      const sa: string = deployment?.spec.template.spec.serviceAccountName;
      // The objects the operator names are the ones its flags name.
      const args: string[] = deployment?.spec.template.spec.containers[0].args;
      const parsed = parseOperatorArgs(args.slice(1), { POD_NAMESPACE: c.namespace, POD_NAME: 'x' });
      const want = operatorRbac(c.namespace, sa, {
        leaseName: parsed.leader.leaseName ?? DEFAULT_OBJECT_NAMES.leaseName,
        webhookConfig: parsed.webhook.configuration?.name,
        credentials: parsed.credentials !== undefined,
      }) as K8sObject[];
      for (const kind of ['ClusterRole', 'Role']) {
        const rendered = objects.filter((o) => o.kind === kind);
        expect(rendered).toHaveLength(1);
        expect({ kind, rules: rendered[0]?.rules }).toEqual({ kind, rules: find(want, kind).rules });
      }
      for (const kind of ['ClusterRoleBinding', 'RoleBinding']) {
        const b = find(objects, kind);
        expect(b.subjects).toEqual(find(want, kind).subjects);
        const role = find(objects, b.roleRef.kind);
        expect(b.roleRef.name).toBe(role.metadata.name);
      }
      if (c.name !== 'custom')
        expect(find(objects, 'ServiceAccount', sa).metadata.namespace).toBe(c.namespace);
    }
  });

  it('renders the MutatingWebhookConfiguration the operator applies, minus caBundle', async () => {
    if (skip) return;
    for (const c of CASES) {
      const objects = await template(
        { file: join(FIXTURES, `${c.name}.values.yaml`) },
        c.release,
        c.namespace,
      );
      const mwc = find(objects, 'MutatingWebhookConfiguration');
      const args: string[] = find(objects, 'Deployment').spec.template.spec.containers[0].args;
      const parsed = parseOperatorArgs(args.slice(1), { POD_NAMESPACE: c.namespace, POD_NAME: 'x' });
      const service = find(objects, 'Service', flag(args, 'webhook-service'));
      expect(service.spec.ports).toEqual([
        expect.objectContaining({ port: 443, targetPort: 'https-webhook' }),
      ]);
      const url = flag(args, 'webhook-url');
      const operatorView = renderWebhookConfiguration({
        name: mwc.metadata.name,
        target:
          url !== undefined
            ? { url }
            : { service: { namespace: c.namespace, name: service.metadata.name, port: 443 } },
        caPem: '',
        operatorNamespace: c.namespace,
        excludedNamespaces: DEFAULT_SETTINGS.excludedNamespaces,
        failurePolicy:
          parsed.webhook.configuration?.failurePolicy ?? (flag(args, 'webhook-failure-policy') as 'Fail'),
        timeoutSeconds: Number(flag(args, 'webhook-timeout')),
      });
      for (const w of operatorView.webhooks) delete (w.clientConfig as { caBundle?: string }).caBundle;
      expect(mwc.webhooks).toEqual(operatorView.webhooks);
      expect(mwc.metadata.labels).toMatchObject(operatorView.metadata.labels);
      if (c.name === 'custom' || c.name === 'cert-manager-monitoring') {
        // cert-manager: the operator is told to leave the configuration to cainjector.
        expect(parsed.webhook.configuration).toBeUndefined();
        expect(mwc.metadata.annotations?.['cert-manager.io/inject-ca-from']).toBe(
          `${c.namespace}/${objects.find((o) => o.kind === 'Certificate' && o.spec.isCA !== true)?.metadata.name}`,
        );
      } else {
        // Self-managed: the operator keeps this very configuration's caBundle current.
        expect(parsed.webhook.configuration?.name).toBe(mwc.metadata.name);
        expect(mwc.metadata.annotations).toBeUndefined();
      }
    }
  });

  it('cert-manager mode: the Certificate fills the operator’s Secret and covers every name it requires', async () => {
    if (skip) return;
    for (const c of CASES.filter((x) => x.name === 'custom' || x.name === 'cert-manager-monitoring')) {
      const objects = await template(
        { file: join(FIXTURES, `${c.name}.values.yaml`) },
        c.release,
        c.namespace,
      );
      const args: string[] = find(objects, 'Deployment').spec.template.spec.containers[0].args;
      const parsed = parseOperatorArgs(args.slice(1), { POD_NAMESPACE: c.namespace });
      const cert = objects.find((o) => o.kind === 'Certificate' && o.spec.isCA !== true);
      expect(cert?.spec.secretName).toBe(parsed.webhook.secretName);
      const covered = [...(cert?.spec.dnsNames ?? []), ...(cert?.spec.ipAddresses ?? [])];
      expect(covered).toEqual(expect.arrayContaining(parsed.webhook.hosts));
      // Renewed by cert-manager before the operator's own 30-day re-issue threshold.
      expect(Number.parseInt(cert?.spec.renewBefore, 10)).toBeGreaterThan(30 * 24);
    }
  });

  it('runs the operator as the Deployment says: flags the CLI accepts, names the chart created', async () => {
    if (skip) return;
    for (const c of CASES) {
      const objects = await template(
        { file: join(FIXTURES, `${c.name}.values.yaml`) },
        c.release,
        c.namespace,
      );
      const d = find(objects, 'Deployment');
      const pod = d.spec.template.spec;
      const container = pod.containers[0];
      expect(container.args[0]).toBe('operator');
      const parsed = parseOperatorArgs(container.args.slice(1), {
        POD_NAMESPACE: c.namespace,
        POD_NAME: 'p',
      });
      expect(parsed.settings.operatorNamespace).toBe(c.namespace);
      expect(container.env).toEqual([
        { name: 'POD_NAMESPACE', valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } },
        { name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
      ]);
      expect(container.livenessProbe.httpGet.path).toBe('/healthz');
      expect(container.readinessProbe.httpGet.path).toBe('/readyz');
      expect(container.securityContext).toMatchObject({
        runAsNonRoot: true,
        readOnlyRootFilesystem: true,
        allowPrivilegeEscalation: false,
        capabilities: { drop: ['ALL'] },
        seccompProfile: { type: 'RuntimeDefault' },
      });
      expect(pod.affinity.podAntiAffinity ?? pod.affinity).toBeDefined();
      const pdb = find(objects, 'PodDisruptionBudget');
      expect(pdb.spec.selector.matchLabels).toEqual(d.spec.selector.matchLabels);
      if (c.name === 'default') {
        const chart = parse(await readFile(join(CHART, 'Chart.yaml'), 'utf8')) as { appVersion: string };
        expect(container.image).toBe(`ghcr.io/peertunnel/peertunnel:${chart.appVersion}`);
        expect(parsed.settings.image).toBe(container.image);
        expect(d.spec.replicas).toBe(2);
      }
    }
  });

  it('renders relays whose config the node itself accepts', async () => {
    if (skip) return;
    const objects = await template({ file: join(FIXTURES, 'relay.values.yaml') }, 'edge', 'edge-system');
    const relays = objects.filter((o) => o.kind === 'Deployment' && o.metadata.name.includes('-relay-'));
    expect(relays.map((d) => d.metadata.name)).toEqual([
      'edge-peertunnel-relay-0',
      'edge-peertunnel-relay-1',
    ]);
    for (const [i, d] of relays.entries()) {
      const container = d.spec.template.spec.containers[0];
      expect(container.args).toEqual(['node']);
      const env = Object.fromEntries(
        (container.env as Array<{ name: string; value?: string }>).map((e) => [e.name, e.value]),
      );
      const config = parseConfig(JSON.parse(env.PEERTUNNEL_CONFIG ?? '{}'));
      expect(config.role).toBe('relay');
      expect(config.announce).toEqual([`/dns4/relay-${i}.example.net/tcp/4001`]);
      expect(d.spec.template.spec.volumes[0].secret).toMatchObject({
        secretName: 'relay-identities',
        items: [{ key: `identity-${i}`, path: 'identity.key' }],
      });
      expect(find(objects, 'Service', d.metadata.name).spec.selector).toEqual(d.spec.selector.matchLabels);
    }
  });

  it('makes a ConfigMap labelled grafana_dashboard of each dashboards/*.json', async () => {
    if (skip) return;
    // A copy of the chart with one more dashboard, so this holds whatever dashboards exist today.
    const dir = await mkdtemp(join(tmpdir(), 'pt-chart-'));
    try {
      const chart = join(dir, 'peertunnel');
      await copy(CHART, chart, { recursive: true });
      const extra = JSON.stringify({ title: 'Chart test', uid: 'chart-test', panels: [] });
      await writeFile(join(chart, 'dashboards', 'chart_test.json'), extra);
      const files = (await readdir(join(chart, 'dashboards'))).filter((f) => f.endsWith('.json')).sort();
      const objects = await template(
        { set: ['dashboards.namespace=monitoring'] },
        'peertunnel',
        'ops',
        chart,
      );
      const maps = objects.filter(
        (o) => o.kind === 'ConfigMap' && o.metadata.labels?.grafana_dashboard === '1',
      );
      expect(maps.map((m) => Object.keys(m.data)[0]).sort()).toEqual(files);
      for (const m of maps) {
        const file = Object.keys(m.data)[0] ?? '';
        expect(m.metadata.namespace).toBe('monitoring');
        expect(m.data[file]).toBe((await readFile(join(chart, 'dashboards', file), 'utf8')).trimEnd());
      }
      expect(maps.find((m) => m.data['chart_test.json'] !== undefined)?.metadata.name).toBe(
        'peertunnel-dashboard-chart-test',
      );
      const off = await template({ set: ['dashboards.enabled=false'] }, 'peertunnel', 'ops', chart);
      expect(off.filter((o) => o.kind === 'ConfigMap')).toEqual([]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('ships the CRDs of crds/ unchanged', async () => {
    const source = (await readdir(join(REPO_ROOT, 'crds'))).filter((f) => f.endsWith('.yaml')).sort();
    const shipped = (await readdir(join(CHART, 'crds'))).sort();
    expect(shipped).toEqual(source);
    for (const f of source) {
      const a = parse(await readFile(join(REPO_ROOT, 'crds', f), 'utf8')) as unknown;
      const b = parse(await readFile(join(CHART, 'crds', f), 'utf8')) as unknown;
      expect({ file: f, crd: b }).toEqual({ file: f, crd: a });
    }
  });
});
