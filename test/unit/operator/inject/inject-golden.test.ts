/**
 * Golden tests of injection (inject is a pure function, so its output is data): every `test/fixtures/inject/NAME.input.yaml` is run
 * through `inject` and compared, as parsed YAML, with `NAME.golden.yaml`. `UPDATE_GOLDEN=1`
 * rewrites the goldens; review the diff. Patches are applied with our own RFC 6902 applier
 * (`operator/inject/jsonpatch.ts`), and injecting the patched pod again must change nothing.
 *
 * An input holds `expect` ("patch" or a skip reason), `settings` (overrides of the base below),
 * `pod`, `tunnels` and `networks`.
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from '@jest/globals';
import type { V1Container, V1Pod } from '@kubernetes/client-node';
import { parse, stringify } from 'yaml';
import type { PeerNetwork, PeerTunnel } from '../../../../crds/schema.js';
import { HASH_ANNOTATION, type InjectResult, inject } from '../../../../operator/inject/inject.js';
import { applyPatch } from '../../../../operator/inject/jsonpatch.js';
import { SWARM_KEY_VOLUME } from '../../../../operator/inject/render.js';
import { type InjectSettings, injectSettings } from '../../../../operator/inject/settings.js';
import { CONFIG_ENV, parseConfig } from '../../../../sidecar/config/config.js';

const DIR = fileURLToPath(new URL('../../../fixtures/inject/', import.meta.url));
const INPUT = '.input.yaml';
const GOLDEN = '.golden.yaml';
const update = process.env.UPDATE_GOLDEN === '1';

interface Fixture {
  expect: string;
  settings?: Partial<InjectSettings>;
  pod: V1Pod;
  tunnels: PeerTunnel[];
  networks: PeerNetwork[];
}

const baseSettings = (overrides: Partial<InjectSettings> | undefined): InjectSettings =>
  injectSettings({
    operatorNamespace: 'peertunnel-system',
    image: 'ghcr.io/peertunnel/peertunnel:0.1.0',
    ...overrides,
  });

function sidecarOf(pod: V1Pod, name: string): V1Container | undefined {
  return [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])].find((c) => c.name === name);
}

/** What a golden file holds: the result, the readable config, the patch, and the pod after it. */
function goldenOf(fx: Fixture, settings: InjectSettings, result: InjectResult): Record<string, unknown> {
  if (result.kind === 'skipped') return { result };
  const pod = applyPatch(fx.pod, result.patch);
  const env = sidecarOf(pod, settings.containerName)?.env?.find((e) => e.name === CONFIG_ENV)?.value;
  return {
    result: {
      kind: result.kind,
      tunnels: result.tunnels,
      network: result.network,
      hash: result.hash,
      replaced: result.replaced,
    },
    config: env === undefined ? null : JSON.parse(env),
    patch: result.patch,
    pod,
  };
}

const files = readdirSync(DIR);
const names = files.filter((f) => f.endsWith(INPUT)).map((f) => f.slice(0, -INPUT.length));

describe('inject golden files', () => {
  it('has no stale fixtures: every input has a golden, every golden an input, nothing else', () => {
    const goldens = files.filter((f) => f.endsWith(GOLDEN)).map((f) => f.slice(0, -GOLDEN.length));
    const others = files.filter((f) => !f.endsWith(INPUT) && !f.endsWith(GOLDEN));
    expect({
      inputsWithoutGolden: update ? [] : names.filter((n) => !goldens.includes(n)),
      goldensWithoutInput: goldens.filter((n) => !names.includes(n)),
      others,
    }).toEqual({ inputsWithoutGolden: [], goldensWithoutInput: [], others: [] });
    expect(names.length).toBeGreaterThanOrEqual(8);
  });

  it.each(names)('%s', (name) => {
    const fx = parse(readFileSync(join(DIR, name + INPUT), 'utf8')) as Fixture;
    const settings = baseSettings(fx.settings);
    const result = inject(fx.pod, fx.tunnels, fx.networks, settings);
    // Checked before writing, so UPDATE_GOLDEN cannot bless a wrong outcome.
    expect(result.kind === 'patch' ? 'patch' : result.reason).toBe(fx.expect);
    const actual = goldenOf(fx, settings, result);
    const goldenPath = join(DIR, name + GOLDEN);
    if (update) {
      const header = `# Generated from ${name}${INPUT} by test/unit/operator/inject/inject-golden.test.ts; UPDATE_GOLDEN=1 rewrites it.\n`;
      writeFileSync(goldenPath, header + stringify(actual, { lineWidth: 0, aliasDuplicateObjects: false }));
    }
    expect(actual).toEqual(parse(readFileSync(goldenPath, 'utf8')));

    if (result.kind === 'patch') {
      const pod = applyPatch(fx.pod, result.patch);
      // The config in the pod is one the sidecar accepts.
      const sidecar = sidecarOf(pod, settings.containerName);
      const env = sidecar?.env?.find((e) => e.name === CONFIG_ENV)?.value;
      expect(() => parseConfig(JSON.parse(env ?? 'null'))).not.toThrow();
      // Exactly one sidecar, in the list the settings ask for.
      const all = [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])];
      expect(all.filter((c) => c.name === settings.containerName)).toHaveLength(1);
      const inInit = (pod.spec?.initContainers ?? []).some((c) => c.name === settings.containerName);
      expect(inInit).toBe(settings.nativeSidecars);
      expect(pod.metadata?.annotations?.[HASH_ANNOTATION]).toBe(result.hash);
      // The swarm key is a read-only file from the Secret, never in the sidecar's environment.
      expect((sidecar?.env ?? []).filter((e) => e.valueFrom !== undefined || /SWARM/i.test(e.name))).toEqual(
        [],
      );
      expect(sidecar?.envFrom).toBeUndefined();
      const mount = sidecar?.volumeMounts?.find((m) => m.name === SWARM_KEY_VOLUME);
      expect(mount?.readOnly).toBe(true);
      expect(JSON.parse(env ?? 'null').swarmKey).toEqual({ file: `${mount?.mountPath}/swarm.key` });
      const volumes = (pod.spec?.volumes ?? []).filter((v) => v.name === SWARM_KEY_VOLUME);
      expect(volumes.map((v) => v.secret?.secretName)).toEqual([fx.networks[0]?.spec.swarmKeySecretRef.name]);
      // Inject twice gives the same pod.
      const again = inject(pod, fx.tunnels, fx.networks, settings);
      expect(again).toMatchObject({ kind: 'skipped', reason: 'AlreadyInjected' });
    } else {
      // A skipped pod stays as it was, and says why in words.
      expect(result.message.length).toBeGreaterThan(0);
    }
  });
});
