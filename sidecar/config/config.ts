/**
 * Over 300 lines on purpose: the node config is one contract (schema, bounds, one-line errors).
 *
 * Node config: the schema, loading from a file or the environment, and one-line errors.
 *
 * This module is the contract between the operator (which renders configs into pods) and the node
 * (which runs them). It is pure apart from `loadConfig`, which reads files and the environment.
 */
import { readFile, stat } from 'node:fs/promises';
import { isIP } from 'node:net';
import { z } from 'zod';
import { LIMITS } from '../../contracts/limits.js';
import { LOG_LEVELS } from '../../contracts/log-levels.js';
import { SERVICE_NAME_PATTERN } from '../../contracts/names.js';
import { ConfigError } from '../node/errors.js';
import {
  exposeHostProblem,
  MAX_MULTIADDR_LENGTH,
  type MultiaddrRules,
  multiaddrProblem,
} from './address-check.js';
import { configErrorOf } from './config-error.js';
import { allowFromSchema, trustSchema } from './trust-config.js';

/** A service name (contracts/names.ts): re-exported for the CRDs, which take it from here. */
export { SERVICE_NAME_PATTERN };
export const DEFAULT_DHT_PROTOCOL = '/peertunnel/kad/1.0.0';
export const DEFAULT_ADMIN_LISTEN = '127.0.0.1:9090';
export const DEFAULT_LISTEN = ['/ip4/0.0.0.0/tcp/4001'];
/** The env var the operator fills from the network's swarm-key Secret. */
export const DEFAULT_SWARM_KEY_ENV = 'PEERTUNNEL_SWARM_KEY';
/** Inline config (YAML or JSON), used when no `--config` file is given. */
export const CONFIG_ENV = 'PEERTUNNEL_CONFIG';
/** Longest path or environment variable name a config may name. */
const MAX_PATH = 4096;
/** A config file larger than this is refused before parsing (every field is far smaller). */
export const MAX_CONFIG_BYTES = 16 * 1024 * 1024;
/** Seconds a stopping node lets open connections finish (below Kubernetes' default grace of 30 s). */
export const DEFAULT_DRAIN_SECONDS = 20;

const port = (what: string) =>
  z
    .number({ error: `expected an integer port from 1 to 65535` })
    .int({ error: `expected an integer port from 1 to 65535` })
    .min(1, { error: `expected ${what} from 1 to 65535` })
    .max(65535, { error: `expected ${what} from 1 to 65535` });

const serviceName = z.string({ error: 'expected a service name (string)' }).regex(SERVICE_NAME_PATTERN, {
  error: 'expected a DNS label: 1-63 lowercase letters, digits or "-", starting and ending alphanumeric',
});

const ipHost = z
  .string({ error: 'expected an IP address (string)' })
  .max(45, { error: 'expected an IPv4 or IPv6 address (at most 45 characters)', abort: true })
  .refine((h) => isIP(h) !== 0, { error: 'expected an IPv4 or IPv6 address' });

const exposeHost = z
  .string({ error: 'expected an IP address (string)' })
  .max(45, { error: 'expected an IPv4 or IPv6 address (at most 45 characters)', abort: true })
  .superRefine((h, ctx) => {
    const problem = exposeHostProblem(h);
    if (problem !== undefined) ctx.addIssue({ code: 'custom', message: problem, input: h });
  });

/** A multiaddr string checked part by part (sidecar/config/address-check.ts), one line naming the part. */
const multiaddrString = (rules: MultiaddrRules) =>
  z
    .string({ error: 'expected a multiaddr string' })
    .max(MAX_MULTIADDR_LENGTH, {
      error: `expected a multiaddr of at most ${MAX_MULTIADDR_LENGTH} characters`,
      // The address parser never sees an oversized string.
      abort: true,
    })
    .superRefine((a, ctx) => {
      const problem = multiaddrProblem(a, rules);
      if (problem !== undefined) ctx.addIssue({ code: 'custom', message: problem, input: a });
    });

const filePath = z
  .string({ error: 'expected a file path (string)' })
  .min(1, { error: 'expected a file path' })
  .max(MAX_PATH, { error: `expected a path of at most ${MAX_PATH} characters` });

const cidr = z
  .string({ error: 'expected a CIDR range (string)' })
  .max(49, { error: 'expected a CIDR range such as 203.0.113.0/24', abort: true })
  .refine(
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

const hostPort = z
  .string({ error: 'expected HOST:PORT (string)' })
  .max(64, { error: 'expected HOST:PORT', abort: true })
  .refine(
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
  /**
   * The target host; nothing in a stream can change it. Never link-local (the cloud metadata
   * service), unspecified or multicast. @default 127.0.0.1
   */
  host: exposeHost.default('127.0.0.1'),
  /**
   * Close a tunnelled connection after this many seconds without a byte either way (0: never;
   * database pools may sit idle for hours). @default 0
   */
  idleTimeoutSeconds: z
    .number({ error: 'expected an integer number of seconds from 0 to 604800' })
    .int({ error: 'expected an integer number of seconds from 0 to 604800' })
    .min(0, { error: 'expected an integer number of seconds from 0 to 604800' })
    .max(604_800, { error: 'expected an integer number of seconds from 0 to 604800' })
    .default(0),
  /**
   * Workloads whose streams this expose serves ({cluster, namespace, serviceAccount}, each may be
   * "*"); needs a `trust` section. Absent: every credentialed member.
   */
  allowFrom: allowFromSchema.optional(),
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
    /** A file in the kubo/go-libp2p swarm.key format (how a pod gets it: a read-only Secret volume). */
    file: filePath.optional(),
    /**
     * An environment variable holding the swarm.key text, for standalone use; the node deletes it
     * from its environment once read. A file is safer: /proc/<pid>/environ keeps the initial value.
     */
    env: z
      .string({ error: 'expected an environment variable name' })
      .regex(/^[A-Za-z_][A-Za-z0-9_]{0,255}$/, { error: 'expected an environment variable name' })
      .optional(),
  })
  .refine((k) => (k.file === undefined) !== (k.env === undefined), {
    error: 'expected exactly one of "file" or "env"',
  });

const RESERVATIONS_RANGE = `expected an integer from 0 to ${LIMITS.relayReservations}`;

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
      .number({ error: RESERVATIONS_RANGE })
      .int({ error: RESERVATIONS_RANGE })
      .min(0, { error: RESERVATIONS_RANGE })
      .max(LIMITS.relayReservations, { error: RESERVATIONS_RANGE })
      .default(2),
  })
  .default({ upnp: false, natPmp: false, holePunch: true, relayReservations: 2 });

const intIn = (min: number, max: number) =>
  z
    .number({ error: `expected an integer from ${min} to ${max}` })
    .int({ error: `expected an integer from ${min} to ${max}` })
    .min(min, { error: `expected an integer from ${min} to ${max}` })
    .max(max, { error: `expected an integer from ${min} to ${max}` });

export const DEFAULT_INBOUND = {
  nonceTimeoutMs: 3_000,
  pendingPerAddress: 32,
  newPerAddressPerSecond: 100,
} as const;

/**
 * Bounds on inbound connections before they prove the swarm key, per source IP address (many
 * nodes behind one NAT, or one test machine, share one: hence the generous defaults).
 */
export const inboundSchema = z
  .strictObject({
    /** How long a connecting peer may take to send its pnet nonce, in ms. @default 3000 */
    nonceTimeoutMs: intIn(100, 60_000).default(DEFAULT_INBOUND.nonceTimeoutMs),
    /** Inbound connections of one address not yet authenticated (noise not done). @default 32 */
    pendingPerAddress: intIn(1, 256).default(DEFAULT_INBOUND.pendingPerAddress),
    /** New inbound connections one address may open per second. @default 100 */
    newPerAddressPerSecond: intIn(1, 1_000).default(DEFAULT_INBOUND.newPerAddressPerSecond),
  })
  .default(DEFAULT_INBOUND);

/** The memory a node assumes it may use when nothing says: the chart's sidecar limit. */
export const DEFAULT_MEMORY_MIB = 256;

export const limitsSchema = z
  .strictObject({
    /**
     * The container's memory limit in MiB (the operator renders the sidecar's limit here); the
     * stream limits below default to what fits in it. @default 256
     */
    memoryMiB: intIn(64, 1_048_576).default(DEFAULT_MEMORY_MIB),
    /** Tunnel streams this node's exposes serve at once, from all peers. Derived from memoryMiB when absent. */
    streams: intIn(1, 100_000).optional(),
    /** Tunnel streams one peer may hold open at this node's exposes at once. Derived when absent. */
    streamsPerPeer: intIn(1, 100_000).optional(),
    /** On a relay: reservations held at once by peers connected from one IP address. @default 128 */
    reservationsPerAddress: intIn(1, 4_096).default(128),
  })
  .default({ memoryMiB: DEFAULT_MEMORY_MIB, reservationsPerAddress: 128 });

export const nodeConfigSchema = z
  .strictObject({
    /** `sidecar` runs in a pod (or standalone) and forwards/exposes; `relay` is a bootstrap, DHT server and relay. */
    role: z.enum(['sidecar', 'relay'], { error: 'expected "sidecar" or "relay"' }).default('sidecar'),
    /** Where the network's pre-shared key comes from. */
    swarmKey: swarmKeySchema,
    /**
     * The key a rollover brings in, from a source of its own (docs/architecture.md, Swarm-key
     * rollover): connections under either key are accepted, dials try this one first.
     */
    nextSwarmKey: swarmKeySchema.optional(),
    /** A protobuf-encoded libp2p private key file; an ephemeral identity when absent. */
    identity: z.strictObject({ file: filePath }).optional(),
    /** Multiaddrs to listen on (TCP; port 0 picks a free one). */
    listen: z
      .array(multiaddrString({ peer: 'forbidden', portZero: true }), {
        error: 'expected a list of multiaddrs',
      })
      .max(LIMITS.listen, { error: `expected at most ${LIMITS.listen} addresses` })
      .default(DEFAULT_LISTEN),
    /** Multiaddrs to announce instead of the observed ones (a LoadBalancer's address, say). */
    announce: z
      .array(multiaddrString({ peer: 'forbidden' }), { error: 'expected a list of multiaddrs' })
      .max(LIMITS.announce, { error: `expected at most ${LIMITS.announce} addresses` })
      .default([]),
    /** Bootstrap/relay peers, each with its /p2p/ peer ID. */
    bootstrap: z
      .array(multiaddrString({ peer: 'required' }), { error: 'expected a list of multiaddrs' })
      .max(LIMITS.bootstrap, { error: `expected at most ${LIMITS.bootstrap} bootstrap peers` })
      .default([]),
    dht: z
      .strictObject({
        /** The Kademlia protocol string of this network (kubo's is /ipfs/kad/1.0.0). */
        protocol: z
          .string({ error: 'expected a protocol string' })
          .max(256, { error: 'expected a protocol string of at most 256 characters', abort: true })
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
    publicRanges: z
      .array(cidr, { error: 'expected a list of CIDR ranges' })
      .max(LIMITS.publicRanges, { error: `expected at most ${LIMITS.publicRanges} ranges` })
      .default([]),
    nat: natSchema,
    inbound: inboundSchema,
    /** What one peer, and all peers together, may hold at this node. */
    limits: limitsSchema,
    /**
     * Workload credentials: who may serve which name and reach which expose. Absent: an open
     * network, where every swarm key holder may serve any name and reach any expose.
     */
    trust: trustSchema.optional(),
    /** Ports of this pod offered to the network. */
    expose: z
      .array(exposeSchema, { error: 'expected a list of exposes' })
      .max(LIMITS.exposes, { error: `expected at most ${LIMITS.exposes} exposes` })
      .default([]),
    /** Local ports that reach services exposed elsewhere. */
    forward: z
      .array(forwardSchema, { error: 'expected a list of forwards' })
      .max(LIMITS.forwards, { error: `expected at most ${LIMITS.forwards} forwards` })
      .default([]),
    shutdown: z
      .strictObject({
        /**
         * On SIGTERM the node stops announcing and accepting, then lets open connections finish
         * for at most this long before it closes them; keep it below the pod's grace period.
         * @default 20
         */
        drainSeconds: z
          .number({ error: 'expected a number of seconds from 0 to 3600' })
          .min(0, { error: 'expected a number of seconds from 0 to 3600' })
          .max(3600, { error: 'expected a number of seconds from 0 to 3600' })
          .default(DEFAULT_DRAIN_SECONDS),
      })
      .default({ drainSeconds: DEFAULT_DRAIN_SECONDS }),
    admin: z
      .strictObject({
        /** HOST:PORT of the admin HTTP server (/metrics /livez /readyz /status). */
        listen: hostPort.default(DEFAULT_ADMIN_LISTEN),
        /**
         * Hex SHA-256 of the bearer token that may read /status from another host (the operator's);
         * without it only loopback callers may. The token itself never appears in the config.
         */
        statusTokenSha256: z
          .string({ error: 'expected the SHA-256 of the status token: 64 hex characters' })
          .regex(/^[0-9a-f]{64}$/, {
            error: 'expected the SHA-256 of the status token: 64 lowercase hex characters',
          })
          .optional(),
      })
      .default({ listen: DEFAULT_ADMIN_LISTEN }),
    log: z
      .strictObject({
        level: z.enum(LOG_LEVELS).default('info'),
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
    cfg.expose.forEach((e, i) => {
      if (e.allowFrom === undefined) return;
      const problem =
        cfg.trust === undefined
          ? 'allowFrom needs a trust section (without one every member may reach every expose)'
          : cfg.trust.uncredentialed.includes(e.name)
            ? `"${e.name}" is in trust.uncredentialed: any member may reach it, allowFrom cannot restrict it`
            : undefined;
      if (problem !== undefined)
        ctx.addIssue({ code: 'custom', path: ['expose', i, 'allowFrom'], message: problem });
    });
  });

/** The config as written (defaults optional). */
export type NodeConfigInput = z.input<typeof nodeConfigSchema>;
/** The config with every default applied. */
export type NodeConfig = z.output<typeof nodeConfigSchema>;
export type ExposeConfig = z.output<typeof exposeSchema>;
export type ForwardConfig = z.output<typeof forwardSchema>;

/** Validates a parsed config; throws ConfigError naming the first bad field in one line. */
export function parseConfig(raw: unknown): NodeConfig {
  const result = nodeConfigSchema.safeParse(raw ?? {});
  if (result.success) return result.data;
  throw configErrorOf(result.error, raw);
}

/**
 * Parses YAML or JSON text into a validated config. JSON (what the operator renders) is read
 * without loading the YAML parser at all; anything else goes to it.
 */
export async function parseConfigText(text: string, source: string): Promise<NodeConfig> {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    raw = undefined;
  }
  if (raw !== undefined) return parseConfig(raw);
  try {
    const { parse: parseYaml } = await import('yaml');
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
      // Bounded before reading: every field has a limit, but a whole file in memory comes first.
      const size = (await stat(file)).size;
      if (size > MAX_CONFIG_BYTES)
        throw new ConfigError(
          '--config',
          `${file} is ${size} bytes, more than the ${MAX_CONFIG_BYTES} accepted`,
        );
      text = await readFile(file, 'utf8');
    } catch (err) {
      if (err instanceof ConfigError) throw err;
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
