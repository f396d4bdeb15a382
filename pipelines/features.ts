import type { Registry } from 'prom-client';
import type { FeatureStore } from '../connectors/feature-store.js';
import type { Log, LogRecord } from '../connectors/log.js';
import { DeadLetterBuffer, parseRecords, type DeadLetterSink } from '../operators/dead-letters.js';
import { applyFeatureUpdates } from '../operators/features/apply.js';
import { metricsTap } from '../operators/metrics.js';
import { Pipeline } from '../operators/pipeline.js';
import { PipelineRunner } from '../operators/runtime.js';
import { parseInputEvent, type InputEvent } from '../schema/events.js';

export interface FeatureTopics {
  /** Default `events`. */
  readonly events: string;
  /** Default `items`. */
  readonly items: string;
  /** Default `users`. */
  readonly users: string;
  /** Default `dead-letters`. */
  readonly deadLetters: string;
}

export const DEFAULT_FEATURE_TOPICS: FeatureTopics = { events: 'events', items: 'items', users: 'users', deadLetters: 'dead-letters' };

export interface FeaturesPipelineOptions {
  readonly store: FeatureStore;
  readonly deadLetters: DeadLetterSink;
  readonly topics?: Partial<FeatureTopics>;
  /** Adds a metrics tap after the store update. Default none. */
  readonly registry?: Registry;
}

/**
 * The `features` role: behaviour events and item and user metadata become feature state keyed by user and by item.
 * Any input event is accepted on any of the three topics; what does not parse is dead-lettered with its reason.
 */
export function featuresPipeline(options: FeaturesPipelineOptions): Pipeline<LogRecord, InputEvent> {
  const topics = { ...DEFAULT_FEATURE_TOPICS, ...options.topics };
  let pipeline = Pipeline.from<LogRecord>(
    'features',
    { name: topics.events, kind: 'topic' },
    { name: topics.items, kind: 'topic' },
    { name: topics.users, kind: 'topic' },
  )
    .pipe(parseRecords(parseInputEvent, options.deadLetters, 'parse-input'))
    .pipe(applyFeatureUpdates(options.store));
  if (options.registry) pipeline = pipeline.pipe(metricsTap<InputEvent>('features', options.registry));
  return pipeline
    .to({ name: 'feature-store', kind: 'store', params: { kind: options.store.kind } })
    .routeSide('dead-letters', { name: topics.deadLetters, kind: 'topic' });
}

export interface RunFeaturesOptions {
  readonly log: Log;
  readonly store: FeatureStore;
  /** Consumer group. Default `features`. */
  readonly group?: string;
  readonly topics?: Partial<FeatureTopics>;
  readonly registry?: Registry;
  readonly maxBatchRecords?: number;
  /** Consumer batching (see `ConsumerOptions.fetchMinRecords`). Default none: every record as soon as it is there. */
  readonly fetchMinRecords?: number;
  readonly fetchMaxWaitMs?: number;
  /** Least time between checkpoints. Default 0: after every batch. */
  readonly commitIntervalMs?: number;
}

/**
 * Runs the features pipeline: restores the store, seeks every assigned partition to the position stored with the
 * state (not the group's commit, which may be ahead of or behind it), and at each checkpoint writes dead letters and
 * then state with its positions.
 */
export async function runFeatures(options: RunFeaturesOptions): Promise<{ runner: PipelineRunner; deadLetters: DeadLetterBuffer }> {
  const topics = { ...DEFAULT_FEATURE_TOPICS, ...options.topics };
  const deadLetters = new DeadLetterBuffer();
  await options.store.restore();
  const pipeline = featuresPipeline({ store: options.store, deadLetters, topics, ...(options.registry ? { registry: options.registry } : {}) });
  const runner = new PipelineRunner(pipeline as Pipeline<LogRecord, unknown>, {
    log: options.log,
    group: options.group ?? 'features',
    topics: [topics.events, topics.items, topics.users],
    fromBeginning: true,
    ...(options.maxBatchRecords !== undefined ? { maxBatchRecords: options.maxBatchRecords } : {}),
    ...(options.fetchMinRecords !== undefined ? { fetchMinRecords: options.fetchMinRecords } : {}),
    ...(options.fetchMaxWaitMs !== undefined ? { fetchMaxWaitMs: options.fetchMaxWaitMs } : {}),
    ...(options.commitIntervalMs !== undefined ? { commitIntervalMs: options.commitIntervalMs } : {}),
    onAssign: (partitions, consumer) => {
      for (const tp of partitions) {
        const stored = options.store.positions().find((p) => p.topic === tp.topic && p.partition === tp.partition);
        consumer.seek(tp, stored?.offset ?? 0);
      }
    },
    checkpoint: async () => {
      await deadLetters.flush(options.log, topics.deadLetters);
      await options.store.checkpoint();
    },
  });
  return { runner: runner.start(), deadLetters };
}
