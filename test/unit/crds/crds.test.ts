/**
 * The CRDs: the committed YAML is what crds/generate.ts writes, every field is described and
 * bounded, patterns mean the same in RE2, and the invalid-object fixtures that the integration
 * test applies to a real API server are well formed (schema ones fail here at the expected field;
 * CEL ones pass the structural schema and name a rule that exists).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from '@jest/globals';
import { parse } from 'yaml';
import { LIMITS } from '../../../contracts/limits.js';
import type { JsonSchemaProps } from '../../../crds/builder.js';
import { generatedFiles } from '../../../crds/generate.js';
import {
  CRD_FILES,
  type CustomResourceDefinition,
  type PeerTunnel,
  peerNetworkCrd,
  peerTunnelCrd,
} from '../../../crds/schema.js';
import { SERVICE_NAME_PATTERN } from '../../../sidecar/config/config.js';
import { loadInvalidCrdFixtures, loadValidCrdFixtures } from './crd-fixtures.js';
import { validateStructural, walkSchema } from './openapi-validate.js';

const CRDS_DIR = fileURLToPath(new URL('../../../crds/', import.meta.url));

const rootOf = (crd: CustomResourceDefinition): JsonSchemaProps => {
  const v = crd.spec.versions[0];
  if (v === undefined) throw new Error(`${crd.metadata.name} has no version`);
  return v.schema.openAPIV3Schema;
};
const crdFor = (kind: unknown) => (kind === 'PeerTunnel' ? peerTunnelCrd : peerNetworkCrd);

describe('generated CRD YAML', () => {
  it.each(generatedFiles().map((g) => [g.file, g.text] as const))('%s is up to date', (file, text) => {
    const committed: unknown = parse(readFileSync(join(CRDS_DIR, file), 'utf8'));
    // Parsed, not bytes: a YAML library upgrade that changes quoting is not drift.
    expect(committed).toEqual(parse(text));
  });

  it('names, scope, short names, categories, status subresource, printer columns', () => {
    expect(peerTunnelCrd.spec.names).toMatchObject({ plural: 'peertunnels', shortNames: ['pt'] });
    expect(peerNetworkCrd.spec.names).toMatchObject({ plural: 'peernetworks', shortNames: ['pnet'] });
    for (const { crd } of CRD_FILES) {
      expect(crd.spec.scope).toBe('Namespaced');
      expect(crd.spec.group).toBe('peertunnel.io');
      expect(crd.spec.names.categories.length).toBeGreaterThan(0);
      expect(crd.spec.versions.map((v) => [v.name, v.served, v.storage, v.subresources])).toEqual([
        ['v1alpha1', true, true, { status: {} }],
      ]);
    }
    const columns = peerTunnelCrd.spec.versions[0]?.additionalPrinterColumns.map((c) => c.name);
    expect(columns).toEqual(expect.arrayContaining(['Ready', 'Pods', 'Providers', 'Path', 'Age']));
  });
});

describe('schema rules of the house', () => {
  const nodes = CRD_FILES.flatMap(({ crd }) =>
    [...walkSchema(rootOf(crd))].map(([path, s]) => [`${crd.spec.names.kind} ${path}`, s] as const),
  );

  it('describes every field', () => {
    // metadata is the exception: the API server allows nothing but `type: object` there.
    const undescribed = nodes.filter(
      ([p, s]) => !/ metadata$/.test(p) && (s.description ?? '').trim() === '',
    );
    expect(undescribed.map(([p]) => p)).toEqual([]);
  });

  it('bounds every string, list, map and integer', () => {
    const unbounded = nodes
      .filter(([path, s]) => {
        if (/ (apiVersion|kind)$/.test(path)) return false; // set by the server, as in every CRD
        if (s.type === 'string') return s.maxLength === undefined && s.enum === undefined;
        if (s.type === 'array') return s.maxItems === undefined;
        if (s.type === 'integer') return s.minimum === undefined || s.maximum === undefined;
        if (s.type === 'object' && s.additionalProperties !== undefined) return s.maxProperties === undefined;
        return false;
      })
      .map(([p]) => p);
    expect(unbounded).toEqual([]);
  });

  it('gives every port 1-65535', () => {
    const ports = nodes.filter(([path]) => /\.(port|localPort)$/.test(path));
    expect(ports.length).toBeGreaterThanOrEqual(3);
    for (const [, s] of ports) expect([s.minimum, s.maximum]).toEqual([1, 65535]);
  });

  it('uses patterns that ECMAScript and RE2 read alike', () => {
    for (const [path, s] of nodes) {
      if (s.pattern === undefined) continue;
      expect(() => new RegExp(s.pattern ?? '')).not.toThrow();
      // RE2 has no lookaround and no backreferences.
      expect({ path, lookaround: /\(\?[=!<]|\\[1-9]/.test(s.pattern) }).toEqual({ path, lookaround: false });
    }
  });

  it('gives every CEL rule a message and a known reason', () => {
    const rules = nodes.flatMap(([, s]) => s['x-kubernetes-validations'] ?? []);
    expect(rules.length).toBeGreaterThanOrEqual(4);
    for (const r of rules) {
      expect(r.message.length).toBeGreaterThan(10);
      // FieldValueDuplicate is left out on purpose: the API server drops the message with it.
      expect(['FieldValueInvalid', 'FieldValueForbidden', 'FieldValueRequired']).toContain(r.reason);
    }
  });

  it("uses the node config's service names and limits", () => {
    const names = nodes.filter(([path]) => /(expose|forward)s?\[\]\.name$/.test(path));
    expect(names.length).toBeGreaterThanOrEqual(2);
    for (const [, s] of names) {
      expect(s.pattern).toBe(SERVICE_NAME_PATTERN.source);
      expect(s.maxLength).toBe(63);
    }
    expect([LIMITS.exposes, LIMITS.forwards, LIMITS.bootstrap, LIMITS.publicRanges]).toEqual([
      64, 64, 64, 64,
    ]);
  });

  it('types the objects it describes', () => {
    // Compile-time check as much as a run-time one: this literal must satisfy PeerTunnel.
    const t: PeerTunnel = {
      apiVersion: 'peertunnel.io/v1alpha1',
      kind: 'PeerTunnel',
      metadata: { name: 'orders-app', namespace: 'shop' },
      spec: {
        networkRef: { name: 'mesh' },
        selector: { matchExpressions: [{ key: 'app', operator: 'In', values: ['orders'] }] },
        forward: [{ name: 'orders-db', localPort: 5432 }],
      },
      status: {
        pods: { selected: 1, injected: 1, ready: 1 },
        forwards: [{ name: 'orders-db', providers: 2, path: 'direct' }],
      },
    };
    expect(validateStructural(rootOf(peerTunnelCrd), t)).toEqual([]);
  });
});

describe('CRD fixtures for the API server test', () => {
  const valid = loadValidCrdFixtures();
  const invalid = loadInvalidCrdFixtures();

  it.each(valid.map((v) => [v.file, v.object] as const))(
    'valid/%s passes the structural schema',
    (_file, object) => {
      expect(validateStructural(rootOf(crdFor(object.kind)), object)).toEqual([]);
    },
  );

  it('has at least eight kinds of invalid objects, each with by/field/message', () => {
    expect(invalid.length).toBeGreaterThanOrEqual(8);
    for (const c of invalid) {
      expect({
        file: c.file,
        by: ['schema', 'cel'].includes(c.by),
        field: c.field !== '',
        message: c.message !== '',
      }).toEqual({
        file: c.file,
        by: true,
        field: true,
        message: true,
      });
    }
  });

  it.each(invalid.map((c) => [c.file, c] as const))('invalid/%s', (_file, c) => {
    const issues = validateStructural(rootOf(crdFor(c.object.kind)), c.object);
    if (c.by === 'schema') {
      expect(issues.map((i) => i.field)).toContain(c.field);
      return;
    }
    // A CEL case must get past the structural schema, so the rule is what refuses it...
    expect(issues).toEqual([]);
    // ...and the rule it expects must exist, with that message.
    const messages = [...walkSchema(rootOf(crdFor(c.object.kind)))].flatMap(([, s]) =>
      (s['x-kubernetes-validations'] ?? []).map((r) => r.message),
    );
    expect(messages.some((m) => m.includes(c.message))).toBe(true);
  });
});
