/**
 * libp2p's debug loggers only when `DEBUG` is set. Otherwise one shared no-op logger: the stock
 * `defaultLogger()` builds a debug instance per component, per stream and per scope even with
 * every namespace off, which costs time and heap on each new stream.
 */
import type { ComponentLogger, Logger } from '@libp2p/interface';
import { defaultLogger } from '@libp2p/logger';

const noop = (): void => {};

/** One logger that drops everything; its scopes are itself. */
export const SILENT_LIBP2P_LOGGER: Logger = Object.assign(noop, {
  error: noop,
  trace: noop,
  enabled: false,
  newScope: (): Logger => SILENT_LIBP2P_LOGGER,
});

const silent: ComponentLogger = { forComponent: () => SILENT_LIBP2P_LOGGER };

/** libp2p's `logger` option: the debug-based one when `DEBUG` names anything, else a no-op. */
export function libp2pLogger(env: NodeJS.ProcessEnv = process.env): ComponentLogger {
  return env.DEBUG !== undefined && env.DEBUG !== '' ? defaultLogger() : silent;
}
