/**
 * The log levels PeerTunnel accepts anywhere: the node config's `log.level`, the operator's
 * `--log-level` and its sidecar `logLevel` setting, the chart's `operator.logLevel` (its
 * values.schema.json enum is checked against this list). pino's levels, plus `silent`.
 */
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export const isLogLevel = (value: unknown): value is LogLevel =>
  typeof value === 'string' && (LOG_LEVELS as readonly string[]).includes(value);
