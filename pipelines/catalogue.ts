import type { LogRecord } from '../connectors/log.js';
import { MemoryFeatureStore } from '../connectors/memory-store.js';
import { Experiments } from '../models/ab/experiments.js';
import { DeadLetterBuffer } from '../operators/dead-letters.js';
import type { Pipeline } from '../operators/pipeline.js';
import { featuresPipeline } from './features.js';
import { recallStack } from './recall-stack.js';
import { samplesPipeline } from './samples.js';
import { DEFAULT_SERVE_TOPICS, requestsPipeline, servingStatePipeline } from './serve.js';
import { ServingPipeline } from './serving.js';
import { EmbeddedLog } from '../connectors/embedded-log.js';
import { trainerPipeline } from './trainer.js';
import { FtrlLearner } from '../models/learners/ftrl.js';
import { ModelRegistry } from '../models/registry.js';
import { RowEncoder } from '../models/row-features.js';

type AnyPipeline = Pipeline<LogRecord, unknown>;

function servingFor(store: MemoryFeatureStore): ServingPipeline {
  const stack = recallStack();
  return new ServingPipeline({ store, recaller: stack.recaller, rankers: { default: { name: 'none', version: '0', score: () => ({ scores: new Float32Array(0), version: '0' }) } }, reranker: stack.reranker });
}

/**
 * Every pipeline Eddy runs, by name, built with default settings and inert sinks so it can describe itself without
 * connecting to anything.
 */
export const catalogue: Readonly<Record<string, () => Promise<AnyPipeline>>> = {
  features: async () => featuresPipeline({ store: new MemoryFeatureStore(), deadLetters: new DeadLetterBuffer() }) as AnyPipeline,
  samples: async () => samplesPipeline({ sink: { append: async () => undefined }, deadLetters: new DeadLetterBuffer() }).pipeline as AnyPipeline,
  trainer: async () =>
    trainerPipeline({ learner: new FtrlLearner(), encoder: new RowEncoder(), registry: new ModelRegistry(), deadLetters: new DeadLetterBuffer() }) as AnyPipeline,
  'serving-state': async () => servingStatePipeline(recallStack(), new Experiments(), new DeadLetterBuffer(), DEFAULT_SERVE_TOPICS) as AnyPipeline,
  requests: async () => requestsPipeline(new EmbeddedLog(), servingFor(new MemoryFeatureStore()), new DeadLetterBuffer(), DEFAULT_SERVE_TOPICS) as AnyPipeline,
};
