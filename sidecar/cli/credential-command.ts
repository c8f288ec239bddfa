/** `peertunnel credential issue|inspect`: arguments to sidecar/cli/credential.ts. */
import { parseArgs } from 'node:util';
import { CredentialError } from '../../contracts/credential.js';
import { inspectCredential, issueCredential, parseTtl, writeAtomically } from './credential.js';

const ISSUE_FLAGS = ['cluster-key', 'network', 'cluster', 'namespace', 'service-account', 'peer'] as const;

export async function runCredential(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === 'issue') {
    const { values } = parseArgs({
      args: rest,
      options: {
        ...Object.fromEntries(ISSUE_FLAGS.map((f) => [f, { type: 'string' as const }])),
        expose: { type: 'string', multiple: true },
        ttl: { type: 'string' },
        out: { type: 'string', short: 'o' },
      },
    });
    const v = values as Record<string, string | string[] | undefined>;
    const one = (f: string): string => {
      const x = v[f];
      if (typeof x !== 'string') throw new CredentialError('malformed', `credential issue needs --${f}`);
      return x;
    };
    const expose = ((v.expose as string[] | undefined) ?? [])
      .flatMap((e) => e.split(','))
      .filter((e) => e !== '');
    const text = await issueCredential({
      clusterKeyFile: one('cluster-key'),
      network: one('network'),
      cluster: one('cluster'),
      namespace: one('namespace'),
      serviceAccount: one('service-account'),
      peer: one('peer'),
      expose,
      ttlSeconds: parseTtl(typeof v.ttl === 'string' ? v.ttl : '1h'),
    });
    if (typeof v.out === 'string') await writeAtomically(v.out, text);
    else process.stdout.write(text);
    return 0;
  }
  if (sub === 'inspect') {
    const { values, positionals } = parseArgs({
      args: rest,
      allowPositionals: true,
      options: { 'public-key': { type: 'string' } },
    });
    const file = positionals[0];
    if (file === undefined) throw new CredentialError('malformed', 'credential inspect needs a FILE');
    process.stdout.write(await inspectCredential(file, values['public-key']));
    return 0;
  }
  throw new CredentialError('malformed', 'expected "credential issue" or "credential inspect"');
}
