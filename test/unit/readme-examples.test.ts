/**
 * The README's walk-through shows the example manifests verbatim, and the end-to-end test
 * (test/e2e/two-clusters.test.ts) applies those same files: so what the README shows is what was
 * proven to work. A YAML block in the README preceded by `<!-- examples/... -->` must equal that
 * file byte for byte; every example file must be shown; every example path the README's commands
 * name must exist.
 */
import { readdir, readFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { describe, expect, it } from '@jest/globals';
import { REPO_ROOT } from '../helpers/node-process.js';

const EXAMPLES = join(REPO_ROOT, 'examples');

/** `<!-- path -->` on its own line, then a fenced yaml block: [path, block body]. */
function shownFiles(readme: string): Array<[string, string]> {
  const re = /^<!-- (examples\/[^\s]+) -->\n```ya?ml\n([\s\S]*?)^```$/gm;
  return [...readme.matchAll(re)].map((m) => [m[1] ?? '', m[2] ?? '']);
}

async function exampleFiles(dir = EXAMPLES): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await exampleFiles(p)));
    else if (/\.ya?ml$/.test(e.name)) out.push(relative(REPO_ROOT, p));
  }
  return out.sort();
}

describe('README walk-through = examples/ (the files the e2e test applies)', () => {
  it('shows each example file verbatim under its path', async () => {
    const readme = await readFile(join(REPO_ROOT, 'README.md'), 'utf8');
    const shown = shownFiles(readme);
    expect(shown.length).toBeGreaterThan(0);
    for (const [path, body] of shown) {
      const file = await readFile(join(REPO_ROOT, path), 'utf8');
      // A mismatch names the file: copy it into the README (or the README's change into the file).
      expect({ path, body }).toEqual({ path, body: file });
    }
  });

  it('shows every example file, once', async () => {
    const readme = await readFile(join(REPO_ROOT, 'README.md'), 'utf8');
    const shown = shownFiles(readme).map(([p]) => p);
    expect([...shown].sort()).toEqual(await exampleFiles());
  });

  it('names only example files that exist in its commands', async () => {
    const readme = await readFile(join(REPO_ROOT, 'README.md'), 'utf8');
    const files = new Set(await exampleFiles());
    const named = [...readme.matchAll(/-f (examples\/[^\s|]+)|"[^"]*" (examples\/[^\s|]+)/g)].map(
      (m) => m[1] ?? m[2] ?? '',
    );
    expect(named.length).toBeGreaterThan(0);
    for (const n of named) expect({ named: n, exists: files.has(n) }).toEqual({ named: n, exists: true });
  });

  it('leaves the one placeholder the README tells to replace', async () => {
    const readme = await readFile(join(REPO_ROOT, 'README.md'), 'utf8');
    const networkA = await readFile(join(EXAMPLES, 'two-clusters', 'cluster-a', 'network.yaml'), 'utf8');
    expect(networkA).toContain('RELAY_ADDRESS');
    expect(readme).toContain('sed "s|RELAY_ADDRESS|$RELAY|" examples/two-clusters/cluster-a/network.yaml');
  });
});
