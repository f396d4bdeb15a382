/** Eddy's public API: the typed client for services, the seams, and the pieces to build pipelines of your own. */
export { EddyClient, EddyHttpError, EddyValidationError, routeEvent, DEFAULT_CLIENT_TOPICS } from './connectors/client.js';
export type { ClientTopics, EddyClientOptions, SubscribeOptions, Subscription } from './connectors/client.js';
export { createLog, ensureTopics, kafkaConfigFromEnv } from './connectors/kafka/index.js';
export type { KafkaConfig } from './connectors/kafka/index.js';
export { installGracefulShutdown } from './connectors/kafka/shutdown.js';
export { EmbeddedLog } from './connectors/embedded-log.js';
export { DeferredJson, valueText } from './connectors/log.js';
export type { DeferredValue, Log, LogConsumer, LogRecord, ProducerRecord, RecordBatch, TopicPartition } from './connectors/log.js';
export type { FeatureStore } from './connectors/feature-store.js';
export { MemoryFeatureStore } from './connectors/memory-store.js';
export { RedisFeatureStore } from './connectors/redis-store.js';
export * from './schema/events.js';
export { Pipeline, formatTopology } from './operators/pipeline.js';
export { PipelineRunner } from './operators/runtime.js';
export { defineOperator } from './operators/operator.js';
export { batchOf, withItems, Ticket, type Batch } from './operators/batch.js';
export { startEddy, type RunningEddy, type Role } from './pipelines/app.js';
export { loadConfig, SETTINGS } from './pipelines/config.js';
