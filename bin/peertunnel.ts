#!/usr/bin/env node
/**
 * The one CLI: node | keygen | identity | cluster-key | credential | cid | status | demo | operator.
 * Each command imports what it needs only when it runs, so `node` never loads the Kubernetes
 * client and `keygen` never loads libp2p.
 */
import { enableCompileCache, flushCompileCache } from 'node:module';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

/**
 * From the bundle (dist/bundle/), V8's compiled code of the chunks a command loads is kept beside
 * them: compiling a few MB of JavaScript is most of a cold start (spawn → ready about halved).
 * `npm run build` fills it (so the image ships it); a read-only root filesystem only reads it.
 * Portable: the image's build stage and its runtime put the bundle under different paths.
 */
const here = dirname(fileURLToPath(import.meta.url));
const compileCache =
  basename(here) === 'bundle'
    ? enableCompileCache({ directory: join(here, '.compile-cache'), portable: true })
    : undefined;
/** Writes what the command's imports compiled now, not at exit (a pod is often killed, not exited). */
function cacheCompiled(): void {
  if (compileCache !== undefined) flushCompileCache();
}

const USAGE = `usage: peertunnel <command> [options]

commands:
  node --config FILE        run a node (sidecar or relay); the config may also come from $PEERTUNNEL_CONFIG
  keygen                    print a new swarm key (kubo/go-libp2p swarm.key format)
  identity --out FILE       write a new node identity (protobuf Ed25519 private key)
  cluster-key --out FILE [--name NAME]
                            write a new cluster signing key (Ed25519 PEM); print its trusted-list line
  credential issue --cluster-key FILE --network NET --cluster NAME --namespace NS
                   --service-account SA --peer PEER_ID [--expose NAME]... [--ttl 1h] [--out FILE]
                            sign a workload credential for a node (stdout without --out)
  credential inspect FILE [--public-key ed25519:...]
                            print a credential's claims, whether it is valid now, its signature
  cid NAME                  print the DHT key (CID) under which a service name is announced
  status [--admin H:P]      summarise a running node's /status (default 127.0.0.1:9090)
  demo [--duration SEC]     a relay and two nodes on this machine, traffic through a tunnel
  operator                  run the Kubernetes operator
`;

/** Errors that are the user's to fix: print one line, no stack. */
const USER_ERRORS = new Set([
  'ConfigError',
  'SwarmKeyError',
  'UsageError',
  'CredentialError',
  'ClusterKeyError',
]);

class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'node': {
      const { values } = parseArgs({ args: rest, options: { config: { type: 'string', short: 'c' } } });
      const { runNode } = await import('../sidecar/cli/node.js');
      cacheCompiled();
      return runNode(values.config, process.env);
    }
    case 'keygen': {
      const { generateSwarmKey } = await import('../sidecar/config/swarm-key.js');
      process.stdout.write(generateSwarmKey());
      return 0;
    }
    case 'identity': {
      const { values } = parseArgs({ args: rest, options: { out: { type: 'string', short: 'o' } } });
      if (values.out === undefined) throw new UsageError('identity needs --out FILE');
      const { writeIdentity } = await import('../sidecar/cli/node.js');
      process.stdout.write(`${await writeIdentity(values.out)}\n`);
      return 0;
    }
    case 'cluster-key': {
      const { values } = parseArgs({
        args: rest,
        options: { out: { type: 'string', short: 'o' }, name: { type: 'string' } },
      });
      if (values.out === undefined) throw new UsageError('cluster-key needs --out FILE');
      const { writeClusterKey } = await import('../sidecar/cli/credential.js');
      process.stdout.write(`${await writeClusterKey(values.out, values.name)}\n`);
      return 0;
    }
    case 'credential': {
      const { runCredential } = await import('../sidecar/cli/credential-command.js');
      return runCredential(rest);
    }
    case 'cid': {
      const name = rest[0];
      if (name === undefined) throw new UsageError('cid needs a service name');
      const { serviceKey } = await import('../sidecar/discovery/service-directory.js');
      process.stdout.write(`${(await serviceKey(name)).toString()}\n`);
      return 0;
    }
    case 'status': {
      const { values } = parseArgs({
        args: rest,
        options: { admin: { type: 'string' }, json: { type: 'boolean' } },
      });
      const { printStatus } = await import('../sidecar/cli/status.js');
      return printStatus(values.admin ?? '127.0.0.1:9090', values.json === true);
    }
    case 'demo': {
      const { values } = parseArgs({
        args: rest,
        options: { duration: { type: 'string' }, port: { type: 'string' } },
      });
      const duration = values.duration === undefined ? undefined : Number(values.duration);
      if (duration !== undefined && !(duration > 0))
        throw new UsageError('--duration takes a number of seconds');
      const { runDemo } = await import('../sidecar/cli/demo.js');
      return runDemo({
        durationSeconds: duration,
        forwardPort: values.port === undefined ? undefined : Number(values.port),
      });
    }
    case 'operator': {
      const { runOperator } = await import('../operator/main.js');
      cacheCompiled();
      return runOperator(rest, process.env);
    }
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(USAGE);
      return command === undefined ? 2 : 0;
    default:
      throw new UsageError(`unknown command "${command}"\n${USAGE}`);
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    const e = err instanceof Error ? err : new Error(String(err));
    if (
      USER_ERRORS.has(e.name) ||
      (e.name === 'TypeError' &&
        'code' in e &&
        String((e as { code: unknown }).code).startsWith('ERR_PARSE_ARGS'))
    ) {
      process.stderr.write(`peertunnel: ${e.message}\n`);
      process.exitCode = 2;
    } else {
      process.stderr.write(`peertunnel: ${e.stack ?? e.message}\n`);
      process.exitCode = 1;
    }
  },
);
