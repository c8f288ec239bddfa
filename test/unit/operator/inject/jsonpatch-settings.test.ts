import { describe, expect, it } from '@jest/globals';
import { applyPatch, escapePointerToken, type JsonPatchOp } from '../../../../operator/inject/jsonpatch.js';
import { injectSettings } from '../../../../operator/inject/settings.js';

function errorOf(fn: () => unknown): { name: string; field?: string; path?: string } {
  try {
    fn();
  } catch (err) {
    return err as { name: string; field?: string; path?: string };
  }
  throw new Error('expected an error');
}

describe('applyPatch (RFC 6902 subset)', () => {
  const doc = { metadata: { annotations: { 'a/b': '1' } }, spec: { containers: [{ name: 'app' }] } };

  it('adds, replaces and removes, leaving the input alone', () => {
    const patch: JsonPatchOp[] = [
      { op: 'add', path: '/spec/initContainers', value: [{ name: 'x' }] },
      { op: 'add', path: '/spec/initContainers/0', value: { name: 'first' } },
      { op: 'add', path: '/spec/containers/-', value: { name: 'last' } },
      { op: 'replace', path: '/spec/containers/0', value: { name: 'app2' } },
      { op: 'add', path: `/metadata/annotations/${escapePointerToken('peertunnel.io/x~y')}`, value: 'v' },
      { op: 'add', path: '/metadata/annotations/a~1b', value: '2' },
      { op: 'remove', path: '/spec/initContainers/1' },
    ];
    expect(applyPatch(doc, patch)).toEqual({
      metadata: { annotations: { 'a/b': '2', 'peertunnel.io/x~y': 'v' } },
      spec: { containers: [{ name: 'app2' }, { name: 'last' }], initContainers: [{ name: 'first' }] },
    });
    expect(doc.spec.containers).toEqual([{ name: 'app' }]);
  });

  it.each<[string, JsonPatchOp]>([
    ['a missing parent', { op: 'add', path: '/spec/initContainers/0', value: {} }],
    ['an index past the end', { op: 'add', path: '/spec/containers/2', value: {} }],
    ['replacing a missing member', { op: 'replace', path: '/metadata/labels', value: {} }],
    ['removing past the end', { op: 'remove', path: '/spec/containers/1' }],
    ['a pointer without a slash', { op: 'add', path: 'spec', value: {} }],
  ])('refuses %s', (_name, op) => {
    expect(errorOf(() => applyPatch(doc, [op]))).toMatchObject({ name: 'JsonPatchError', path: op.path });
  });
});

describe('injectSettings', () => {
  const base = { operatorNamespace: 'peertunnel-system', image: 'example/peertunnel:1' };

  it('applies defaults', () => {
    const s = injectSettings(base);
    expect(s).toMatchObject({
      nativeSidecars: true,
      adminPort: 9090,
      p2pPort: 4001,
      containerName: 'peertunnel',
    });
  });

  it.each<[string, Record<string, unknown>, string]>([
    ['a bad namespace', { operatorNamespace: 'Peer Tunnel' }, 'operatorNamespace'],
    ['an empty image', { image: ' ' }, 'image'],
    ['port 0', { adminPort: 0 }, 'adminPort'],
    ['the same port twice', { adminPort: 4001 }, 'adminPort'],
    ['root', { runAsUser: 0 }, 'runAsUser'],
    ['a bad pull policy', { imagePullPolicy: 'Sometimes' }, 'imagePullPolicy'],
  ])('refuses %s', (_name, overrides, field) => {
    expect(errorOf(() => injectSettings({ ...base, ...overrides }))).toMatchObject({
      name: 'SettingsError',
      field,
    });
  });
});
