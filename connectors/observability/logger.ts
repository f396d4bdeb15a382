/**
 * Structured JSON logs with pino. Every role logs through `createLogger`; the HTTP server logs through fastify, which
 * builds its own pino logger from `httpLoggerOptions` and binds each request's id (`reqId`, taken from the client's
 * `x-request-id` or generated) to every line logged while serving it.
 */
import { pino, type Logger, type LoggerOptions, type DestinationStream } from 'pino';

export interface LoggerSettings {
  /** pino level: fatal, error, warn, info, debug, trace or silent. Default `info` (the LOG_LEVEL setting). */
  readonly level?: string;
  /** Bound to every line, e.g. `{ role: 'features' }`. Default none. */
  readonly bindings?: Readonly<Record<string, unknown>>;
  /** Where lines go. Default standard output. */
  readonly destination?: DestinationStream;
}

/** Secrets that must never reach a log line, wherever they appear in a logged request. */
const REDACTED_PATHS = ['req.headers.authorization', 'req.headers.cookie', 'headers.authorization'];

/** The pino options shared by role loggers and fastify: ISO timestamps, level names, redaction. */
export function loggerOptions(settings: Omit<LoggerSettings, 'destination'> = {}): LoggerOptions {
  return {
    level: settings.level ?? 'info',
    base: { service: 'eddy', ...settings.bindings },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
    redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
  };
}

/** A pino logger writing one JSON object per line. */
export function createLogger(settings: LoggerSettings = {}): Logger {
  const options = loggerOptions(settings);
  return settings.destination ? pino(options, settings.destination) : pino(options);
}

/**
 * What to pass as `logger` to `createHttpServer` (fastify builds the logger; fastify 5 refuses a ready pino
 * instance there). Fastify adds `reqId` to each request's lines and logs one line per request and response.
 */
export function httpLoggerOptions(settings: LoggerSettings = {}): LoggerOptions & { stream?: DestinationStream } {
  const { destination, ...rest } = settings;
  return { ...loggerOptions(rest), ...(destination ? { stream: destination } : {}) };
}
