/**
 * Node config: the schema, loading from a file or the environment, and one-line errors.
 *
 * This module is the contract between the operator (which renders configs into pods) and the node
 * (which runs them). It is pure apart from `loadConfig`, which reads files and the environment.
 */
import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { ConfigError } from './errors.js';

/** A service name: a DNS label, because it becomes part of a libp2p protocol string and a DHT key. */
export const SERVICE_NAME_PATTERN = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
export const DEFAULT_DHT_PROTOCOL = '/peertunnel/kad/1.0.0';
export const DEFAULT_ADMIN_LISTEN = '127.0.0.1:9090';
export const DEFAULT_LISTEN = ['/ip4/0.0.0.0/tcp/4001'];
/** The env var the operator fills from the network's swarm-key Secret. */
export const DEFAULT_SWARM_KEY_ENV = 'PEERTUNNEL_SWARM_KEY';
/** Inline config (YAML or JSON), used when no `--config` file is given. */
export const CONFIG_ENV = 'PEERTUNNEL_CONFIG';

const port = (what: string) =>
  z
    .number({ error: `expected an integer port from 1 to 65535` })
    .int({ error: `expected an integer port from 1 to 65535` })
    .min(1, { error: `expected ${what} from 1 to 65535` })
    .max(65535, { error: `expected ${what} from 1 to 65535` });

const serviceName = z.string({ error: 'expected a service name (string)' }).regex(SERVICE_NAME_PATTERN, {
  error: 'expected a DNS label: 1-63 lowercase letters, digits or "-", starting and ending alphanumeric',
});

const ipHost = z.string().refine((h) => isIP(h) !== 0, { error: 'expected an IPv4 or IPv6 address' });

const multiaddrString = z
  .string({ error: 'expected a multiaddr string' })
  .regex(/^\/(ip4|ip6|dns|dns4|dns6|dnsaddr|p2p-circuit|p2p)\//, {
    error: 'expected a multiaddr such as /ip4/1.2.3.4/tcp/4001',
  });

const cidr = z.string().refine(
  (s) => {
    const [addr, bits, extra] = s.split('/');
    if (addr === undefined || bits === undefined || extra !== undefined || !/^\d{1,3}$/.test(bits))
      return false;
    const family = isIP(addr);
    const n = Number(bits);
    return (family === 4 && n <= 32) || (family === 6 && n <= 128);
  },
  { error: 'expected a CIDR range such as 203.0.113.0/24' },
);

const hostPort = z.string().refine(
  (s) => {
    const i = s.lastIndexOf(':');
    if (i <= 0) return false;
    const host = s.slice(0, i).replace(/^\[|\]$/g, '');
    const p = Number(s.slice(i + 1));
    return isIP(host) !== 0 && Number.isInteger(p) && p >= 0 && p <= 65535;
  },
  { error: 'expected HOST:PORT with an IP address, such as 127.0.0.1:9090 (port 0 picks a free one)' },
);

export const exposeSchema = z.strictObject({
  /** The service name other nodes forward to. */
  name: serviceName,
  /** The port of the local target the exposer dials for each incoming stream. */
  port: port('an exposed port'),
  /** The target host; nothing in a stream can change it. @default 127.0.0.1 */
  host: ipHost.default('127.0.0.1'),
});

export const forwardSchema = z.strictObject({
  /** The service name to reach. */
  name: serviceName,
  /** The local port that accepts connections to forward. */
  localPort: port('a local port'),
  /** The local address to listen on. @default 127.0.0.1 */
  bind: ipHost.default('127.0.0.1'),
});

const swarmKeySchema = z
  .strictObject({
    /** A file in the kubo/go-libp2p swarm.key format. */
    file: z.string().min(1).optional(),
    /** An environment variable holding the swarm.key text (how a pod gets it from a Secret). */
    env: z.string().min(1).optional(),
  })
  .refine((k) => (k.file === undefined) !== (k.env === undefined), {
    error: 'expected exactly one of "file" or "env"',
  });

export const natSchema = z
  .strictObject({
    /** Try UPnP-IGD port mapping on the gateway. @default false */
    upnp: z.boolean().default(false),
    /** Try NAT-PMP port mapping on the gateway. @default false */
    natPmp: z.boolean().default(false),
    /** Upgrade relayed connections by hole punching (DCUtR). @default true */
    holePunch: z.boolean().default(true),
    /** The gateway for NAT-PMP / UPnP; discovered when absent. */
    gateway: ipHost.optional(),
    /**
     * Relay reservations a sidecar holds at once, on different bootstrap/relay peers (0: none, the
     * node is then unreachable through relays). Relays do not hold reservations. @default 2
     */
    relayReservations: z
      .number({ error: 'expected an integer from 0 to 8' })
      .int({ error: 'expected an integer from 0 to 8' })
      .min(0, { error: 'expected an integer from 0 to 8' })
      .max(8, { error: 'expected an integer from 0 to 8' })
      .default(2),
  })
  .default({ upnp: false, natPmp: false, holePunch: true, relayReservations: 2 });

export const nodeConfigSchema = z
  .strictObject({
    /** `sidecar` runs in a pod (or standalone) and forwards/exposes; `relay` is a bootstrap, DHT server and relay. */
    role: z.enum(['sidecar', 'relay'], { error: 'expected "sidecar" or "relay"' }).default('sidecar'),
    /** Where the network's pre-shared key comes from. */
    swarmKey: swarmKeySchema,
    /** A protobuf-encoded libp2p private key file; an ephemeral identity when absent. */
    identity: z.strictObject({ file: z.string().min(1) }).optional(),
    /** Multiaddrs to listen on. */
    listen: z.array(multiaddrString).max(16).default(DEFAULT_LISTEN),
    /** Multiaddrs to announce instead of the observed ones (a LoadBalancer's address, say). */
    announce: z.array(multiaddrString).max(16).default([]),
    /** Bootstrap/relay peers, each with its /p2p/ peer ID. */
    bootstrap: z
      .array(
        multiaddrString.refine((a) => a.includes('/p2p/'), {
          error: 'expected a multiaddr ending in /p2p/<peer id>',
        }),
      )
      .max(64)
      .default([]),
    dht: z
      .strictObject({
        /** The Kademlia protocol string of this network (kubo's is /ipfs/kad/1.0.0). */
        protocol: z
          .string()
          .regex(/^\/[\x21-\x7e]+$/, { error: 'expected a protocol string such as /peertunnel/kad/1.0.0' })
          .default(DEFAULT_DHT_PROTOCOL),
        /** Serve the DHT: `auto` serves when the node is a relay or has a public address. */
        server: z.enum(['auto', 'always', 'never']).default('auto'),
      })
      .default({ protocol: DEFAULT_DHT_PROTOCOL, server: 'auto' }),
    /**
     * Address ranges that count as reachable between sites. Empty means the usual public internet
     * ranges; a lab or an all-private WAN lists its own.
     */
    publicRanges: z.array(cidr).max(64).default([]),
    nat: natSchema,
    /** Ports of this pod offered to the network. */
    expose: z.array(exposeSchema).max(64).default([]),
    /** Local ports that reach services exposed elsewhere. */
    forward: z.array(forwardSchema).max(64).default([]),
    admin: z
      .strictObject({
        /** HOST:PORT of the admin HTTP server (/metrics /livez /readyz /status). */
        listen: hostPort.default(DEFAULT_ADMIN_LISTEN),
      })
      .default({ listen: DEFAULT_ADMIN_LISTEN }),
    log: z
      .strictObject({
        level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
      })
      .default({ level: 'info' }),
  })
  .superRefine((cfg, ctx) => {
    const dup = <T>(items: T[], key: (t: T) => string, field: string, what: string) => {
      const seen = new Map<string, number>();
      items.forEach((item, i) => {
        const k = key(item);
        const first = seen.get(k);
        if (first !== undefined) {
          ctx.addIssue({
            code: 'custom',
            path: [field, i, what],
            message: `duplicate ${what} "${k}" (also ${field}[${first}])`,
          });
        } else seen.set(k, i);
      });
    };
    dup(cfg.expose, (e) => e.name, 'expose', 'name');
    dup(cfg.forward, (f) => f.name, 'forward', 'name');
    dup(cfg.forward, (f) => `${f.bind}:${f.localPort}`, 'forward', 'localPort');
  });

/** The config as written (defaults optional). */
export type NodeConfigInput = z.input<typeof nodeConfigSchema>;
/** The config with every default applied. */
export type NodeConfig = z.output<typeof nodeConfigSchema>;
export type ExposeConfig = z.output<typeof exposeSchema>;
export type ForwardConfig = z.output<typeof forwardSchema>;

function formatPath(path: ReadonlyArray<PropertyKey>): string {
  let out = '';
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : out === '' ? String(p) : `.${String(p)}`;
  return out === '' ? '(top level)' : out;
}

function describeValue(root: unknown, path: ReadonlyArray<PropertyKey>): string {
  let v: unknown = root;
  for (const p of path) {
    if (v === null || typeof v !== 'object') return '';
    v = (v as Record<PropertyKey, unknown>)[p];
  }
  if (v === undefined) return ', got nothing';
  const s = JSON.stringify(v);
  return s === undefined ? '' : `, got ${s.length > 60 ? `${s.slice(0, 57)}...` : s}`;
}

/** Validates a parsed config; throws ConfigError naming the first bad field in one line. */
export function parseConfig(raw: unknown): NodeConfig {
  const result = nodeConfigSchema.safeParse(raw ?? {});
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  if (issue === undefined) throw new ConfigError('(top level)', 'invalid config');
  if (issue.code === 'unrecognized_keys') {
    const field = formatPath([...issue.path, issue.keys[0] ?? '?']);
    throw new ConfigError(field, `unknown field "${issue.keys.join('", "')}"`);
  }
  const field = formatPath(issue.path);
  const got = issue.code === 'custom' ? '' : describeValue(raw, issue.path);
  throw new ConfigError(field, `${issue.message}${got}`);
}

/** Parses YAML or JSON text (JSON is YAML) into a validated config. */
export function parseConfigText(text: string, source: string): NodeConfig {
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (err) {
    const line = err instanceof Error ? (err.message.split('\n')[0] ?? '') : String(err);
    throw new ConfigError('(file)', `${source} is not valid YAML or JSON: ${line}`);
  }
  return parseConfig(raw);
}

/** Loads the config from `file`, or else from the PEERTUNNEL_CONFIG environment variable. */
export async function loadConfig(file: string | undefined, env: NodeJS.ProcessEnv): Promise<NodeConfig> {
  if (file !== undefined) {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'error';
      throw new ConfigError('--config', `cannot read ${file} (${code})`);
    }
    return parseConfigText(text, file);
  }
  const inline = env[CONFIG_ENV];
  if (inline !== undefined && inline.trim() !== '') return parseConfigText(inline, CONFIG_ENV);
  throw new ConfigError(
    '--config',
    `expected a config file (--config FILE) or ${CONFIG_ENV} in the environment`,
  );
}
