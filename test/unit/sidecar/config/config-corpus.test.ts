/**
 * Every entry of the malformed-config corpus is refused by the node's schema with one line naming
 * its field, never a stack trace; the valid bases the corpus builds on are accepted.
 */
import { describe, expect, it } from '@jest/globals';
import { parseConfig } from '../../../../sidecar/config/config.js';
import { loadConfigCorpus, loadCorpusBaseConfig } from './config-corpus.js';

const corpus = loadConfigCorpus();

function refusal(raw: unknown): { name: string; field: string; message: string } {
  try {
    parseConfig(raw);
  } catch (err) {
    const e = err as Error & { field?: string };
    return { name: e.name, field: e.field ?? '', message: e.message };
  }
  return { name: 'accepted', field: '', message: '' };
}

describe('malformed-config corpus', () => {
  it('has at least 62 kinds, uniquely named, 50 of them with a PeerNetwork or PeerTunnel twin', () => {
    expect(corpus.length).toBeGreaterThanOrEqual(62);
    expect(new Set(corpus.map((e) => e.name)).size).toBe(corpus.length);
    expect(corpus.filter((e) => e.crd !== undefined).length).toBeGreaterThanOrEqual(50);
  });

  it('builds on a valid config', () => {
    expect(parseConfig(loadCorpusBaseConfig()).swarmKey).toEqual({ file: '/etc/peertunnel/swarm.key' });
  });

  it.each(corpus.map((e) => [e.name, e] as const))('%s: one line naming the field', (_name, e) => {
    const r = refusal(e.config);
    expect({ name: r.name, field: r.field }).toEqual({ name: 'ConfigError', field: e.field });
    expect(r.message.split('\n')).toHaveLength(1);
    expect(r.message).toContain(`: ${e.field}: `);
    // Values are quoted cut short: an 8 MiB field does not make an 8 MiB line.
    expect(r.message.length).toBeLessThan(400);
  });
});
