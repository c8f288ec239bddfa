/**
 * Shared pieces of the chart tests: helm run against the chart (no cluster needed for `template`
 * and `lint`), and the rendered manifests parsed into objects.
 */
import { execFile } from 'node:child_process';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { REPO_ROOT } from '../helpers/node-process.js';

export const CHART = join(REPO_ROOT, 'charts', 'peertunnel');
export const FIXTURES = join(REPO_ROOT, 'test', 'fixtures', 'chart');

export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
  // biome-ignore lint/suspicious/noExplicitAny: rendered manifests are checked field by field
  [key: string]: any;
}

export interface HelmResult {
  code: number;
  stdout: string;
  stderr: string;
}

let helmHome: Promise<string> | undefined;

/** Runs helm with its own HELM_* directories (no user config, no repositories). */
export async function runHelm(helm: string, args: readonly string[]): Promise<HelmResult> {
  helmHome ??= mkdtemp(join(tmpdir(), 'pt-chart-helm-'));
  const home = await helmHome;
  return new Promise((resolve) => {
    execFile(
      helm,
      [...args],
      {
        env: {
          PATH: process.env.PATH,
          HOME: home,
          HELM_CACHE_HOME: join(home, 'cache'),
          HELM_CONFIG_HOME: join(home, 'config'),
          HELM_DATA_HOME: join(home, 'data'),
        },
        maxBuffer: 64 * 1024 * 1024,
      },
      (err, stdout, stderr) => {
        const code = err === null ? 0 : typeof err.code === 'number' ? err.code : 1;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

/** The objects of a multi-document YAML stream, without empty documents. */
export function parseManifests(text: string): K8sObject[] {
  return parseAllDocuments(text)
    .map((d) => {
      if (d.errors.length > 0) throw new Error(`invalid YAML from helm: ${d.errors[0]?.message}`);
      return d.toJS() as K8sObject | null;
    })
    .filter((o): o is K8sObject => o !== null && typeof o === 'object');
}

export function find(objects: K8sObject[], kind: string, name?: string): K8sObject {
  const o = objects.find((x) => x.kind === kind && (name === undefined || x.metadata.name === name));
  if (o === undefined) throw new Error(`no ${kind}${name === undefined ? '' : ` ${name}`} rendered`);
  return o;
}

/** The value of `--flag=value` in an argument list (the last one wins, as in parseArgs). */
export function flag(args: readonly string[], name: string): string | undefined {
  const prefix = `--${name}=`;
  return args
    .filter((a) => a.startsWith(prefix))
    .map((a) => a.slice(prefix.length))
    .at(-1);
}
