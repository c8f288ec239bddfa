/**
 * pino JSON logs with stable field names. Fields used across the node:
 *   msg, level, time, component, event (a stable identifier of what happened), service,
 *   peer, path, reason, err.
 * A logger is created once per process and passed down; no module keeps a global one.
 */
import { pino } from 'pino';
import type { LogLevel } from '../../contracts/log-levels.js';

export type Logger = pino.Logger;

export function createLogger(level: LogLevel, bindings: Record<string, string> = {}): Logger {
  return pino({
    level,
    base: { component: 'peertunnel', ...bindings },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  });
}

/** A logger that drops everything, for tests and library use. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
