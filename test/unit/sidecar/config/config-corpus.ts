/**
 * The malformed-config corpus (`test/fixtures/config-corpus/malformed.yaml`), expanded: each entry's
 * node config, and the PeerNetwork or PeerTunnel carrying the same value where the CRDs have it.
 * Used by the unit test (the schema, all entries), the CLI test (a sample, as real processes) and
 * the API-server test (every CRD object).
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';

export const CORPUS_FILE = fileURLToPath(
  new URL('../../../fixtures/config-corpus/malformed.yaml', import.meta.url),
);

export interface CorpusCrd {
  kind: 'PeerNetwork' | 'PeerTunnel';
  field: string;
  object: Record<string, unknown>;
}

export interface CorpusEntry {
  name: string;
  field: string;
  config: unknown;
  crd?: CorpusCrd;
}

type Json = unknown;

/** Expands { $repeat, times, prefix?, suffix? } and { $list, times } anywhere in a value. */
function expand(v: Json): Json {
  if (Array.isArray(v)) return v.map(expand);
  if (v === null || typeof v !== 'object') return v;
  const o = v as Record<string, Json>;
  if (typeof o.$repeat === 'string' && typeof o.times === 'number') {
    return `${String(o.prefix ?? '')}${o.$repeat.repeat(o.times)}${String(o.suffix ?? '')}`;
  }
  if ('$list' in o && typeof o.times === 'number') {
    return Array.from({ length: o.times }, () => expand(o.$list));
  }
  return Object.fromEntries(Object.entries(o).map(([k, x]) => [k, expand(x)]));
}

interface RawEntry {
  name: string;
  field: string;
  bare?: boolean;
  config: Json;
  crd?: { kind: 'PeerNetwork' | 'PeerTunnel'; field: string; spec: Record<string, Json> };
}

interface RawCorpus {
  base: { config: Record<string, Json>; PeerNetwork: Record<string, Json>; PeerTunnel: Record<string, Json> };
  entries: RawEntry[];
}

/** The valid objects every CRD entry is built on (an entry must fail by its own value alone). */
export function loadCorpusBases(): CorpusCrd[] {
  const raw = parse(readFileSync(CORPUS_FILE, 'utf8')) as RawCorpus;
  return (['PeerNetwork', 'PeerTunnel'] as const).map((kind) => ({
    kind,
    field: '',
    object: {
      apiVersion: 'peertunnel.io/v1alpha1',
      kind,
      metadata: { name: `corpus-base-${kind.toLowerCase()}` },
      spec: expand(raw.base[kind]),
    },
  }));
}

/** The valid node config every entry but the bare ones is built on. */
export function loadCorpusBaseConfig(): unknown {
  return (parse(readFileSync(CORPUS_FILE, 'utf8')) as RawCorpus).base.config;
}

export function loadConfigCorpus(): CorpusEntry[] {
  const raw = parse(readFileSync(CORPUS_FILE, 'utf8')) as RawCorpus;
  return raw.entries.map((e) => {
    const config =
      e.bare === true || e.config === null || typeof e.config !== 'object' || Array.isArray(e.config)
        ? expand(e.config)
        : expand({ ...raw.base.config, ...(e.config as Record<string, Json>) });
    const entry: CorpusEntry = { name: e.name, field: e.field, config };
    if (e.crd !== undefined) {
      entry.crd = {
        kind: e.crd.kind,
        field: e.crd.field,
        object: {
          apiVersion: 'peertunnel.io/v1alpha1',
          kind: e.crd.kind,
          metadata: { name: e.name },
          spec: expand({ ...raw.base[e.crd.kind], ...e.crd.spec }),
        },
      };
    }
    return entry;
  });
}
