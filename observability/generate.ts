/**
 * Writes the chart's Grafana dashboards from observability/dashboards.ts:
 *   npm run build && node dist/observability/generate.js
 * test/unit/observability/dashboards.test.ts fails when the committed files differ from this output.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { renderDashboards } from './dashboards.js';

const root = resolve(import.meta.dirname, '..', import.meta.dirname.includes('/dist/') ? '..' : '.');
const dir = join(root, 'charts', 'peertunnel', 'dashboards');
await mkdir(dir, { recursive: true });
for (const [file, text] of renderDashboards()) {
  await writeFile(join(dir, file), text);
  process.stdout.write(`wrote ${join('charts', 'peertunnel', 'dashboards', file)}\n`);
}
