/**
 * Every setting Eddy reads from the environment, in one table: its name, default and meaning. The README's
 * configuration reference and the deploy manifests' tests are checked against this table, so it stays the truth.
 */
import type { ScoringThread } from '../models/session-thread.js';
import { readFileSync } from 'node:fs';
import { DEFAULT_RETENTION_BYTES } from '../connectors/embedded-log.js';
import { kafkaConfigFromEnv, type KafkaConfig } from '../connectors/kafka/config.js';
import { redisOptionsFromEnv } from '../connectors/redis-store.js';
import type { RedisOptions } from 'ioredis';

export interface Setting {
  readonly name: string;
  /** The default as text, or undefined when unset means "off". */
  readonly default?: string;
  readonly description: string;
}

export const SETTINGS: readonly Setting[] = [
  { name: 'PORT', default: '8080', description: 'HTTP port of the serving API and dashboard.' },
  { name: 'HOST', default: '0.0.0.0', description: 'Address the HTTP server binds.' },
  { name: 'LOG_LEVEL', default: 'info', description: 'pino log level: fatal, error, warn, info, debug, trace or silent.' },
  { name: 'EDDY_AUTH_TOKEN', description: 'When set, write and admin endpoints need `Authorization: Bearer <token>`.' },
  { name: 'EDDY_BODY_LIMIT_BYTES', default: '1048576', description: 'Largest HTTP request body.' },
  { name: 'EDDY_DATA_DIR', default: '.eddy', description: 'Embedded default: where snapshots of the in-memory store and model registry are kept across restarts. Empty turns snapshots off.' },
  { name: 'EDDY_SNAPSHOT_INTERVAL_MS', default: '10000', description: 'Embedded default: time between snapshots to EDDY_DATA_DIR.' },
  { name: 'EDDY_LOG_RETENTION_BYTES', default: String(DEFAULT_RETENTION_BYTES), description: 'Embedded log: bytes of records kept per topic, shared by its partitions, oldest first out (compacted topics keep every key\'s newest record), so a long-running `eddy all` keeps a bounded heap. A consumer that falls so far behind that records it had yet to read are removed says so in an error line.' },
  { name: 'EDDY_SIMULATE', default: 'true', description: '`eddy all`: run the built-in traffic simulator on a demo catalogue (`--no-simulate` also turns it off).' },
  { name: 'EDDY_SIMULATOR_RPS', default: '20', description: 'Simulated recommendation requests per second.' },
  { name: 'EDDY_EXPERIMENTS_FILE', description: 'JSON file of A/B experiments (see the README). No experiments when unset.' },
  { name: 'EDDY_MODEL_FILE', description: 'An ONNX ranker that declares its input contract, served instead of the online model.' },
  { name: 'EDDY_SCORER_THREAD', default: 'worker', description: 'Where an ONNX ranker runs: `worker` (a thread of its own, so scoring overlaps with recall and event processing, and loading a version never stalls requests) or `main` (the event loop).' },
  { name: 'EDDY_SAMPLES_THREAD', default: 'worker', description: '`eddy all` on the embedded log: where the samples job and the trainer run, `worker` (a thread with a heap of its own, so collecting the impressions it holds never pauses requests, and the samples topic stays on that thread) or `main` (the event loop). Other roles run them in their own processes.' },
  { name: 'EDDY_ONLINE_LEARNER', default: 'ftrl', description: 'Trainer: the online learner, `ftrl` (FTRL-Proximal logistic regression), `fm` (factorization machine) or `head` (online fine-tuning of the last layer of the EDDY_MODEL_FILE ranker plus hashed embeddings, served on top of that model; needs EDDY_MODEL_FILE).' },
  { name: 'EDDY_PUBLISH_INTERVAL_MS', default: '5000', description: 'Trainer: publish a new model version at least this often while learning.' },
  { name: 'EDDY_PUBLISH_EVERY_SAMPLES', default: '5000', description: 'Trainer: publish a new model version after this many samples.' },
  { name: 'EDDY_ATTRIBUTION_WINDOW_MS', default: '1800000', description: 'Samples: how long after an impression a click still counts for it. `eddy all` with its simulator uses 60000 unless this is set, so the demo ranker learns within minutes.' },
  { name: 'EDDY_SAMPLES_MAX_ITEMS', default: '1000000', description: 'Samples: impressions and clicks the attribution join holds at most (about 0.4 KB an impression with 40 features). Past it the oldest impressions are labelled before their window ends (`eddy_samples_closed_early_total`).' },
  { name: 'EDDY_EXPLORATION_SHARE', default: '0.05', description: 'Share of served slots filled by a random recalled candidate (epsilon-greedy), so the ranker learns about items it would not show.' },
  { name: 'EDDY_PUSH_DEBOUNCE_MS', default: '2000', description: 'Proactive push: least time between two pushed recommendation lists for one user; 0 turns pushes off.' },
  { name: 'EDDY_REDIS_URL', description: 'Redis for the feature store (`redis://` or `rediss://`). The in-memory store when unset.' },
  { name: 'EDDY_REDIS_PASSWORD', description: 'Redis password (overrides one in the URL).' },
  { name: 'EDDY_REDIS_TLS', description: '`1` for TLS on a `redis://` URL.' },
  { name: 'EDDY_FEATURE_MAX_STALENESS_MS', default: '1000', description: 'Serving replicas reload a cached feature record older than this from Redis.' },
  { name: 'KAFKA_CLIENT', description: '`embedded`, `kafkajs` or `confluent`. Default `kafkajs` when KAFKA_BROKERS is set, else `embedded`.' },
  { name: 'KAFKA_BROKERS', description: 'Comma-separated `host:port` list. The embedded log when unset.' },
  { name: 'KAFKA_CLIENT_ID', default: 'eddy', description: 'Kafka client id.' },
  { name: 'KAFKA_SASL_MECHANISM', description: '`plain`, `scram-sha-256` or `scram-sha-512`; implies TLS unless KAFKA_TLS=false.' },
  { name: 'KAFKA_SASL_USERNAME', description: 'SASL user.' },
  { name: 'KAFKA_SASL_PASSWORD', description: 'SASL password.' },
  { name: 'KAFKA_TLS', description: '`true` turns TLS on.' },
  { name: 'KAFKA_TLS_CA_FILE', description: 'PEM file of the CA that signed the brokers’ certificates.' },
  { name: 'KAFKA_TLS_REJECT_UNAUTHORIZED', default: 'true', description: '`false` accepts any broker certificate (testing only).' },
  ...(['EVENTS', 'ITEMS', 'USERS', 'SAMPLES', 'MODELS', 'RECOMMENDATION_REQUESTS', 'RECOMMENDATIONS', 'DEAD_LETTERS'] as const).flatMap(
    (topic) => [
      { name: `KAFKA_TOPIC_${topic}`, default: topic.toLowerCase().replace(/_/g, '-'), description: `Name of the ${topic.toLowerCase().replace(/_/g, '-')} topic.` },
      { name: `KAFKA_PARTITIONS_${topic}`, description: `Partitions of the ${topic.toLowerCase().replace(/_/g, '-')} topic when Eddy creates it.` },
    ],
  ),
];

export const SETTING_NAMES: ReadonlySet<string> = new Set(SETTINGS.map((s) => s.name));

export interface AppConfig {
  readonly port: number;
  readonly host: string;
  readonly logLevel: string;
  readonly authToken?: string;
  readonly bodyLimitBytes: number;
  /** Undefined turns snapshots off. */
  readonly dataDir?: string;
  readonly snapshotIntervalMs: number;
  readonly logRetentionBytes: number;
  readonly simulate: boolean;
  readonly simulatorRps: number;
  readonly experiments: readonly unknown[];
  readonly modelFile?: string;
  readonly scorerThread: ScoringThread;
  /** `eddy all` on the embedded log: the samples job on a thread of its own (`worker`) or on the event loop. */
  readonly samplesThread: 'worker' | 'main';
  readonly onlineLearner: 'ftrl' | 'fm' | 'head';
  readonly publishIntervalMs: number;
  readonly publishEverySamples: number;
  readonly attributionWindowMs: number;
  readonly samplesMaxItems: number;
  readonly pushDebounceMs: number;
  readonly explorationShare: number;
  /** Undefined means the in-memory store. */
  readonly redis?: RedisOptions;
  readonly featureMaxStalenessMs: number;
  readonly kafka: KafkaConfig;
}

function defaultOf(name: string): string | undefined {
  return SETTINGS.find((s) => s.name === name)?.default;
}

function read(env: NodeJS.ProcessEnv, name: string): string | undefined {
  const value = env[name];
  return value === undefined || value === '' ? defaultOf(name) : value;
}

function integer(env: NodeJS.ProcessEnv, name: string, min: number): number {
  const raw = read(env, name)!;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min) throw new Error(`${name} must be an integer >= ${min}, got "${raw}"`);
  return value;
}

function share(env: NodeJS.ProcessEnv, name: string): number {
  const raw = read(env, name)!;
  const value = Number(raw);
  if (!(value >= 0 && value <= 1)) throw new Error(`${name} must be a number from 0 to 1, got "${raw}"`);
  return value;
}

function scoringThread(value: string): ScoringThread {
  if (value === 'worker' || value === 'main') return value;
  throw new Error(`EDDY_SCORER_THREAD must be worker or main, got "${value}"`);
}

function samplesThread(value: string): 'worker' | 'main' {
  if (value === 'worker' || value === 'main') return value;
  throw new Error(`EDDY_SAMPLES_THREAD must be worker or main, got "${value}"`);
}

function learnerKind(raw: string, modelFile: string | undefined): 'ftrl' | 'fm' | 'head' {
  if (raw === 'head' && !modelFile) throw new Error('EDDY_ONLINE_LEARNER=head fine-tunes the EDDY_MODEL_FILE ranker; set EDDY_MODEL_FILE');
  if (raw === 'ftrl' || raw === 'fm' || raw === 'head') return raw;
  throw new Error(`EDDY_ONLINE_LEARNER must be ftrl, fm or head, got "${raw}"`);
}

function boolean(env: NodeJS.ProcessEnv, name: string): boolean {
  const raw = (read(env, name) ?? 'false').toLowerCase();
  if (raw === 'true' || raw === '1') return true;
  if (raw === 'false' || raw === '0') return false;
  throw new Error(`${name} must be true or false, got "${raw}"`);
}

/** Reads and checks every setting; a bad value fails with the setting's name, before anything starts. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): AppConfig {
  const unknown = Object.keys(env).filter((k) => (k.startsWith('EDDY_') || k.startsWith('KAFKA_')) && !SETTING_NAMES.has(k));
  if (unknown.length > 0) throw new Error(`unknown setting ${unknown.join(', ')}; see the configuration reference in the README`);

  const experimentsFile = read(env, 'EDDY_EXPERIMENTS_FILE');
  let experiments: unknown[] = [];
  if (experimentsFile) {
    try {
      const parsed = JSON.parse(readFileSync(experimentsFile, 'utf8')) as unknown;
      experiments = Array.isArray(parsed) ? parsed : [parsed];
    } catch (error) {
      throw new Error(`EDDY_EXPERIMENTS_FILE: cannot read experiments from ${experimentsFile}`, { cause: error });
    }
  }
  const authToken = read(env, 'EDDY_AUTH_TOKEN');
  const dataDir = env.EDDY_DATA_DIR === '' ? undefined : read(env, 'EDDY_DATA_DIR');
  const modelFile = read(env, 'EDDY_MODEL_FILE');
  return {
    port: integer(env, 'PORT', 0),
    host: read(env, 'HOST')!,
    logLevel: read(env, 'LOG_LEVEL')!,
    ...(authToken ? { authToken } : {}),
    bodyLimitBytes: integer(env, 'EDDY_BODY_LIMIT_BYTES', 1024),
    ...(dataDir ? { dataDir } : {}),
    snapshotIntervalMs: integer(env, 'EDDY_SNAPSHOT_INTERVAL_MS', 100),
    logRetentionBytes: integer(env, 'EDDY_LOG_RETENTION_BYTES', 1),
    simulate: boolean(env, 'EDDY_SIMULATE'),
    simulatorRps: integer(env, 'EDDY_SIMULATOR_RPS', 1),
    experiments,
    ...(modelFile ? { modelFile } : {}),
    scorerThread: scoringThread(read(env, 'EDDY_SCORER_THREAD')!),
    samplesThread: samplesThread(read(env, 'EDDY_SAMPLES_THREAD')!),
    onlineLearner: learnerKind(read(env, 'EDDY_ONLINE_LEARNER')!, modelFile),
    publishIntervalMs: integer(env, 'EDDY_PUBLISH_INTERVAL_MS', 100),
    publishEverySamples: integer(env, 'EDDY_PUBLISH_EVERY_SAMPLES', 1),
    attributionWindowMs: integer(env, 'EDDY_ATTRIBUTION_WINDOW_MS', 1),
    samplesMaxItems: integer(env, 'EDDY_SAMPLES_MAX_ITEMS', 1),
    pushDebounceMs: integer(env, 'EDDY_PUSH_DEBOUNCE_MS', 0),
    explorationShare: share(env, 'EDDY_EXPLORATION_SHARE'),
    ...(env.EDDY_REDIS_URL ? { redis: redisOptionsFromEnv(env) } : {}),
    featureMaxStalenessMs: integer(env, 'EDDY_FEATURE_MAX_STALENESS_MS', 0),
    kafka: kafkaConfigFromEnv(env),
  };
}
