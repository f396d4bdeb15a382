/**
 * Kafka settings from the environment: which client, where the brokers are, how to authenticate, and the name and
 * partition count of each Eddy topic.
 */
import { readFileSync } from 'node:fs';

export type LogKind = 'embedded' | 'kafkajs' | 'confluent';

export const TOPIC_ROLES = [
  'events',
  'items',
  'users',
  'samples',
  'models',
  'recommendationRequests',
  'recommendations',
  'deadLetters',
] as const;
export type TopicRole = (typeof TOPIC_ROLES)[number];

export interface TopicSettings {
  readonly name: string;
  readonly partitions: number;
  readonly compacted: boolean;
}

export interface SaslSettings {
  readonly mechanism: 'plain' | 'scram-sha-256' | 'scram-sha-512';
  readonly username: string;
  readonly password: string;
}

export interface TlsSettings {
  /** PEM text of the CA that signed the brokers' certificates; the system CAs when absent. */
  readonly ca?: string;
  /** Default true. */
  readonly rejectUnauthorized: boolean;
}

export interface KafkaConfig {
  readonly client: LogKind;
  readonly brokers: readonly string[];
  readonly clientId: string;
  readonly sasl?: SaslSettings;
  readonly tls?: TlsSettings;
  readonly topics: Readonly<Record<TopicRole, TopicSettings>>;
}

const DEFAULT_TOPICS: Record<TopicRole, TopicSettings> = {
  events: { name: 'events', partitions: 12, compacted: false },
  items: { name: 'items', partitions: 3, compacted: true },
  users: { name: 'users', partitions: 3, compacted: true },
  samples: { name: 'samples', partitions: 6, compacted: false },
  models: { name: 'models', partitions: 1, compacted: true },
  recommendationRequests: { name: 'recommendation-requests', partitions: 6, compacted: false },
  recommendations: { name: 'recommendations', partitions: 6, compacted: false },
  deadLetters: { name: 'dead-letters', partitions: 1, compacted: false },
};

/** `recommendationRequests` -> `RECOMMENDATION_REQUESTS`. */
function envSuffix(role: TopicRole): string {
  return role.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase();
}

function positiveInt(env: NodeJS.ProcessEnv, name: string, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 1) throw new Error(`${name} must be a positive integer, got "${raw}"`);
  return value;
}

/**
 * Reads:
 * - `KAFKA_CLIENT`: `embedded` | `kafkajs` | `confluent`. Default `kafkajs` when `KAFKA_BROKERS` is set, else `embedded`.
 * - `KAFKA_BROKERS`: comma-separated `host:port` list. Required unless the client is `embedded`.
 * - `KAFKA_CLIENT_ID`: default `eddy`.
 * - `KAFKA_SASL_MECHANISM` (`plain` | `scram-sha-256` | `scram-sha-512`), `KAFKA_SASL_USERNAME`, `KAFKA_SASL_PASSWORD`.
 * - `KAFKA_TLS=true` turns TLS on; `KAFKA_TLS_CA_FILE` (PEM path) and `KAFKA_TLS_REJECT_UNAUTHORIZED=false` tune it.
 *   SASL implies TLS unless `KAFKA_TLS=false`.
 * - `KAFKA_TOPIC_<ROLE>` and `KAFKA_PARTITIONS_<ROLE>` per topic, e.g. `KAFKA_TOPIC_DEAD_LETTERS=eddy.dlq`,
 *   `KAFKA_PARTITIONS_EVENTS=24`. Defaults: the names of DESIGN.md; events 12 partitions.
 */
export function kafkaConfigFromEnv(env: NodeJS.ProcessEnv = process.env): KafkaConfig {
  const brokers = (env.KAFKA_BROKERS ?? '')
    .split(',')
    .map((b) => b.trim())
    .filter((b) => b.length > 0);
  const client = (env.KAFKA_CLIENT || (brokers.length > 0 ? 'kafkajs' : 'embedded')) as LogKind;
  if (!['embedded', 'kafkajs', 'confluent'].includes(client)) {
    throw new Error(`KAFKA_CLIENT must be embedded, kafkajs or confluent, got "${client}"`);
  }
  if (client !== 'embedded' && brokers.length === 0) throw new Error(`KAFKA_CLIENT=${client} needs KAFKA_BROKERS`);

  let sasl: SaslSettings | undefined;
  if (env.KAFKA_SASL_MECHANISM) {
    const mechanism = env.KAFKA_SASL_MECHANISM.toLowerCase();
    if (mechanism !== 'plain' && mechanism !== 'scram-sha-256' && mechanism !== 'scram-sha-512') {
      throw new Error(`KAFKA_SASL_MECHANISM must be plain, scram-sha-256 or scram-sha-512, got "${mechanism}"`);
    }
    if (!env.KAFKA_SASL_USERNAME || !env.KAFKA_SASL_PASSWORD) {
      throw new Error('KAFKA_SASL_MECHANISM needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD');
    }
    sasl = { mechanism, username: env.KAFKA_SASL_USERNAME, password: env.KAFKA_SASL_PASSWORD };
  }

  const tlsOn = env.KAFKA_TLS !== undefined && env.KAFKA_TLS !== '' ? env.KAFKA_TLS === 'true' : sasl !== undefined;
  let tls: TlsSettings | undefined;
  if (tlsOn) {
    let ca: string | undefined;
    if (env.KAFKA_TLS_CA_FILE) {
      try {
        ca = readFileSync(env.KAFKA_TLS_CA_FILE, 'utf8');
      } catch (error) {
        throw new Error(`cannot read KAFKA_TLS_CA_FILE ${env.KAFKA_TLS_CA_FILE}`, { cause: error });
      }
    }
    tls = { ...(ca !== undefined ? { ca } : {}), rejectUnauthorized: env.KAFKA_TLS_REJECT_UNAUTHORIZED !== 'false' };
  }

  const topics = Object.fromEntries(
    TOPIC_ROLES.map((role) => {
      const suffix = envSuffix(role);
      const defaults = DEFAULT_TOPICS[role];
      return [
        role,
        {
          name: env[`KAFKA_TOPIC_${suffix}`] || defaults.name,
          partitions: positiveInt(env, `KAFKA_PARTITIONS_${suffix}`, defaults.partitions),
          compacted: defaults.compacted,
        },
      ];
    }),
  ) as Record<TopicRole, TopicSettings>;

  return {
    client,
    brokers,
    clientId: env.KAFKA_CLIENT_ID || 'eddy',
    ...(sasl ? { sasl } : {}),
    ...(tls ? { tls } : {}),
    topics,
  };
}
