import { EmbeddedLog, type EmbeddedLogOptions } from '../embedded-log.js';
import type { Log } from '../log.js';
import type { KafkaConfig } from './config.js';
import type { GroupTimings } from './kafkajs-log.js';

export { kafkaConfigFromEnv, TOPIC_ROLES, type KafkaConfig, type LogKind, type TopicRole, type TopicSettings } from './config.js';

export interface CreateLogOptions extends GroupTimings {
  /** For `embedded`. */
  readonly embedded?: EmbeddedLogOptions;
  /** Told about commits a rebalance made the group refuse. */
  readonly onWarning?: (message: string, error: unknown) => void;
}

/**
 * The log `config.client` names. The Kafka clients load on demand, so the native confluent client is needed only when
 * chosen (it is an optional dependency).
 */
export async function createLog(config: KafkaConfig, options: CreateLogOptions = {}): Promise<Log> {
  const { embedded, ...rest } = options;
  const connection = { brokers: config.brokers, clientId: config.clientId, sasl: config.sasl, tls: config.tls };
  switch (config.client) {
    case 'embedded':
      return new EmbeddedLog(embedded);
    case 'kafkajs': {
      const { KafkajsLog } = await import('./kafkajs-log.js');
      return new KafkajsLog({ ...rest, connection });
    }
    case 'confluent': {
      const { createConfluentLog } = await import('./confluent-log.js');
      return createConfluentLog({ ...rest, connection });
    }
  }
}

/** Creates every topic of the config that does not exist yet, with its partition count. */
export async function ensureTopics(log: Log, config: KafkaConfig): Promise<void> {
  for (const topic of Object.values(config.topics)) {
    await log.ensureTopic(topic.name, { partitions: topic.partitions, compacted: topic.compacted });
  }
}
