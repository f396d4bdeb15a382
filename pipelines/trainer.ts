import { map } from 'rxjs';
import { DEFAULT_MAX_BATCH_RECORDS, type Log, type LogRecord } from '../connectors/log.js';
import { withItems } from '../operators/batch.js';
import { DeadLetterBuffer, parseRecords, type DeadLetterSink } from '../operators/dead-letters.js';
import { learnOperator, type LearnReport } from '../operators/learn.js';
import { defineOperator, type Operator } from '../operators/operator.js';
import { Pipeline } from '../operators/pipeline.js';
import { PipelineRunner } from '../operators/runtime.js';
import { Guardrails, type GuardrailOptions, type RollbackDecision } from '../models/guardrails.js';
import { decodeModelVersion, type Learner, type ModelVersion, type Predictor, type Sample, type SparseFeatures } from '../models/learner.js';
import { FtrlLearner, type FtrlOptions } from '../models/learners/ftrl.js';
import { predictorFor } from '../models/learners/index.js';
import { OnlineFmLearner, type OnlineFmOptions } from '../models/learners/online-fm.js';
import { headBaseOf, headSampleProblem, OnlineHeadLearner, type HeadFeatures, type OnlineHeadOptions } from '../models/learners/online-head.js';
import { importOnnx, onnxDigest } from '../models/rankers/import.js';
import type { Ranker as DeepRanker } from '../models/rankers/ranker.js';
import { ITEM_FIELD, itemIndex } from '../operators/rank.js';
import { CallbackModelSink, LogModelSink, ModelPublisher, type ModelSink } from '../models/publisher.js';
import { ModelRegistry } from '../models/registry.js';
import { RowEncoder } from '../models/row-features.js';
import { parseLabelledSample, type LabelledSample } from '../schema/samples.js';
import { readTopic } from './samples.js';

/** What the trainer's learners read: hashed sparse rows (FTRL, FM) or penultimate activations plus hashed ids (head). */
export type TrainerFeatures = SparseFeatures | HeadFeatures;

/** A learner the trainer runs: any kind, with hashed features sized by `bits`. */
export type TrainerLearner = Learner<TrainerFeatures> & { readonly bits: number };

/**
 * The `trainer` role: labelled samples become versions of an online model (FTRL, FM, or a head on the deep ranker).
 * Each sample is encoded exactly as serving encodes a feature row (RowEncoder over names, values and item id; for the
 * head, also the deep model's penultimate activations, see `encodeHeadSamples`), scored by the serving version and
 * its parent before it is learned (progressive validation, rolling logloss and AUC per version), then learned. A
 * version is published every `publishEverySamples` samples or `publishIntervalMs`, to the `models` topic and to an
 * optional in-process callback; one that degrades is rolled back and the learner restored to its parent.
 *
 * Offsets and model move together: the checkpoint before each commit publishes whatever was learned since the last
 * version, so every committed sample is in a published version, and a restart resumes from the newest version on
 * the `models` topic and from the committed offsets without losing or repeating learning.
 */

export interface TrainerTopics {
  /** Default `samples`. */
  readonly samples: string;
  /** Default `models`. */
  readonly models: string;
  /** Default `dead-letters`. */
  readonly deadLetters: string;
}

export const DEFAULT_TRAINER_TOPICS: TrainerTopics = { samples: 'samples', models: 'models', deadLetters: 'dead-letters' };

export const TRAINER_DEFAULTS = {
  model: 'ftrl',
  publishEverySamples: 5000,
  publishIntervalMs: 5000,
} as const;

export interface TrainerStats {
  /** Sample records read. */
  received: number;
  learned: number;
  /** Records that did not parse or could not be learned. */
  deadLettered: number;
  /** Versions this trainer published (by cadence, timer or checkpoint; rollbacks not included). */
  published: number;
  rollbacks: RollbackDecision[];
  /** Mean progressive-validation logloss of the learner over the last batch that learned something. */
  lastLogloss: number;
}

/**
 * Labelled samples to learner samples. Names arrays are interned by content, so the encoder's per-names cache of
 * hashed buckets holds across samples that carry equal (but separately parsed) name lists. Samples handed over in
 * the samples job's thread share one list, which the identity check finds without joining it.
 */
export function encodeSamples(encoder: RowEncoder): Operator<LabelledSample, Sample<SparseFeatures>> {
  const interned = new Map<string, readonly string[]>();
  let lastNames: readonly string[] | undefined;
  let lastCanonical: readonly string[] = [];
  const intern = (names: readonly string[]): readonly string[] => {
    if (names === lastNames) return lastCanonical;
    lastNames = names;
    lastCanonical = internByContent(names);
    return lastCanonical;
  };
  const internByContent = (names: readonly string[]): readonly string[] => {
    const key = names.join('\u0000');
    let canonical = interned.get(key);
    if (canonical === undefined) {
      // A runaway variety of feature sets must not grow without bound; starting over only costs re-hashing.
      if (interned.size >= 1024) interned.clear();
      canonical = names;
      interned.set(key, canonical);
    }
    return canonical;
  };
  return defineOperator<LabelledSample, Sample<SparseFeatures>>(
    { name: 'encode-rows', kind: 'map', params: { bits: encoder.bits } },
    (source$) =>
      source$.pipe(
        map((batch) =>
          withItems(
            batch,
            batch.items.map((s) => ({ features: encoder.encode(intern(s.names), s.values, s.itemId), label: s.label })),
          ),
        ),
      ),
  );
}

/**
 * Labelled samples to online-head samples: the frozen deep model's penultimate activations h, recomputed by the
 * TypeScript forward pass of the very ranker serving runs (rebuilt from its ONNX bytes) on the point-in-time feature
 * values the sample carries, plus the same hashed row features the other learners read. A sample that lacks a
 * feature the deep model takes is dead-lettered: scoring it with a made-up value would teach the head a wrong row.
 */
export function encodeHeadSamples(deep: DeepRanker, encoder: RowEncoder, deadLetters: DeadLetterSink, sourceTopic = DEFAULT_TRAINER_TOPICS.samples): Operator<LabelledSample, Sample<HeadFeatures>> {
  if (deep.categoricalFields.length !== 1 || deep.categoricalFields[0]!.name !== ITEM_FIELD) {
    throw new Error(`the online head needs a deep model served on feature rows, with the one categorical field "${ITEM_FIELD}"; this one has ${deep.categoricalFields.map((f) => f.name).join(', ')}`);
  }
  const vocabulary = deep.categoricalFields[0]!.vocabularySize;
  const nDense = deep.nDense;
  const columns = new Map<string, Int32Array | string>();
  /** Per distinct names list: the sample's column of each dense feature, or the first feature it lacks. */
  const columnsOf = (names: readonly string[]): Int32Array | string => {
    const key = names.join('\u0000');
    let found = columns.get(key);
    if (found === undefined) {
      const position = new Map(names.map((name, j) => [name, j]));
      const missing = deep.denseFeatures.find((name) => !position.has(name));
      found = missing !== undefined ? missing : Int32Array.from(deep.denseFeatures, (name) => position.get(name)!);
      if (columns.size >= 1024) columns.clear();
      columns.set(key, found);
    }
    return found;
  };
  const dense = new Float64Array(nDense);
  const categorical = new Int32Array(1);
  const row = { dense, categorical };
  return defineOperator<LabelledSample, Sample<HeadFeatures>>(
    { name: 'deep-penultimate', kind: 'map', params: { model: deep.kind, inputs: nDense, width: deep.layout.layers.at(-1)?.inputs ?? 0 }, sideOutputs: ['dead-letters'] },
    (source$) =>
      source$.pipe(
        map((batch) => {
          const out: Sample<HeadFeatures>[] = [];
          for (const s of batch.items) {
            const at = columnsOf(s.names);
            if (typeof at === 'string') {
              deadLetters.push({ reason: `sample lacks feature "${at}" the deep model takes`, raw: JSON.stringify(s), source: { topic: sourceTopic, partition: -1, offset: -1 } });
              continue;
            }
            // Serving rounds rows to float32 before the ONNX run; the same rounding keeps h equal up to float error.
            for (let j = 0; j < nDense; j++) dense[j] = Math.fround(s.values[at[j]!]!);
            categorical[0] = itemIndex(s.itemId, vocabulary);
            out.push({ features: { dense: deep.penultimate(row), sparse: encoder.encode(s.names, s.values, s.itemId) }, label: s.label });
          }
          return withItems(batch, out);
        }),
      ),
  );
}

export interface TrainerPipelineOptions<F = SparseFeatures> {
  readonly learner: Learner<F>;
  readonly encoder: RowEncoder;
  readonly registry: ModelRegistry;
  readonly deadLetters: DeadLetterSink;
  /** Labelled samples to the learner's samples. Default `encodeSamples(encoder)`, the hashed rows FTRL and FM read. */
  readonly encode?: Operator<LabelledSample, Sample<F>>;
  /** Why a sample cannot be learned. Default the learnOperator's check of hashed sparse samples. */
  readonly validate?: (sample: Sample<F>) => string | undefined;
  readonly guardrails?: Guardrails<F>;
  readonly publisher?: ModelPublisher<F>;
  readonly topics?: Partial<TrainerTopics>;
}

export function trainerPipeline<F = SparseFeatures>(options: TrainerPipelineOptions<F>): Pipeline<LogRecord, LearnReport> {
  const topics = { ...DEFAULT_TRAINER_TOPICS, ...options.topics };
  const encode = options.encode ?? (encodeSamples(options.encoder) as unknown as Operator<LabelledSample, Sample<F>>);
  return Pipeline.from<LogRecord>('trainer', { name: topics.samples, kind: 'topic' })
    .pipe(parseRecords(parseLabelledSample, options.deadLetters, 'parse-samples'))
    .pipe(encode)
    .pipe(
      learnOperator<F>({
        learner: options.learner,
        registry: options.registry,
        deadLetters: options.deadLetters,
        sourceTopic: topics.samples,
        ...(options.validate ? { validate: options.validate } : {}),
        ...(options.guardrails ? { guardrails: options.guardrails } : {}),
        ...(options.publisher ? { publisher: options.publisher } : {}),
      }),
    )
    .to({ name: topics.models, kind: 'topic', params: { key: 'model name' } })
    .routeSide('dead-letters', { name: topics.deadLetters, kind: 'topic' });
}

/** The newest version of `model` on the models topic, or undefined when it has none. */
export async function latestPublishedVersion(log: Log, model: string, topic = DEFAULT_TRAINER_TOPICS.models): Promise<ModelVersion | undefined> {
  let latest: LogRecord | undefined;
  for (const record of await readTopic(log, topic)) {
    if (record.key !== model) continue;
    if (!latest || record.timestamp > latest.timestamp || (record.timestamp === latest.timestamp && record.offset > latest.offset)) latest = record;
  }
  if (!latest) return undefined;
  try {
    return decodeModelVersion(latest.value);
  } catch (error) {
    throw new Error(`the newest version of ${model} on ${topic} (offset ${latest.offset}) cannot be read`, { cause: error });
  }
}

export interface RunTrainerOptions {
  readonly log: Log;
  /** Consumer group. Default `trainer`. */
  readonly group?: string;
  readonly topics?: Partial<TrainerTopics>;
  /** Model name: the `models` topic key and the registry name. Default `ftrl`. */
  readonly model?: string;
  /**
   * The online learner: FTRL-Proximal logistic regression, a factorization machine, or `head`, fine-tuning of the
   * deep model's last layer plus hashed embeddings on its penultimate activations (needs `deepModel`). Default `ftrl`.
   */
  readonly learner?: TrainerLearnerKind;
  /** FTRL hyper-parameters (defaults as FtrlLearner: 20 bits, alpha 0.1, beta 1, l1 1, l2 1). */
  readonly ftrl?: FtrlOptions;
  /** FM hyper-parameters (defaults as OnlineFmLearner); `bits` defaults to `ftrl.bits`, so one setting sizes both. */
  readonly fm?: OnlineFmOptions;
  /**
   * With `learner: 'head'`: the served deep ranker's ONNX bytes (an Eddy-exported MLP kind whose one categorical field
   * is the item, as serving's EDDY_MODEL_FILE). Its last layer starts the head and its forward pass gives h.
   */
  readonly deepModel?: Uint8Array;
  /** Head hyper-parameters (defaults as OnlineHeadLearner); `bits` defaults to `ftrl.bits`. */
  readonly head?: Omit<OnlineHeadOptions, 'inputSize' | 'initialWeights' | 'initialBias' | 'base'>;
  /** Must be the encoder serving's OnlineRanker uses. Default `new RowEncoder({ bits: ftrl.bits ?? 20 })`. */
  readonly encoder?: RowEncoder;
  /** Default `EDDY_PUBLISH_EVERY_SAMPLES`'s default, 5000. */
  readonly publishEverySamples?: number;
  /** Default 5000 ms. */
  readonly publishIntervalMs?: number;
  /** Gets every version that starts serving (published, restored at start, rolled back to): the ranker swap. */
  readonly onVersion?: (version: ModelVersion) => void;
  /** Guardrail settings, or false for none. Default GuardrailOptions' defaults. */
  readonly guardrails?: GuardrailOptions | false;
  /** Shared registry (for `eddy models` commands in the same process). Default a new one. */
  readonly registry?: ModelRegistry;
  /** Resume from the newest version on the models topic. Default true. */
  readonly resume?: boolean;
  /** Least time between commits, each of which publishes pending learning. Default `publishIntervalMs`. */
  readonly commitIntervalMs?: number;
  readonly maxBatchRecords?: number;
  /** Told about failures of the publish timer. Default: rethrown on the next checkpoint. */
  readonly onError?: (error: Error) => void;
  /** Wall clock for version names and cadence. Default Date.now. */
  readonly clock?: () => number;
}

export type TrainerLearnerKind = 'ftrl' | 'fm' | 'head';

export interface TrainerJob {
  readonly runner: PipelineRunner;
  readonly learner: TrainerLearner;
  readonly encoder: RowEncoder;
  readonly registry: ModelRegistry;
  readonly guardrails: Guardrails<TrainerFeatures> | undefined;
  readonly publisher: ModelPublisher<TrainerFeatures>;
  readonly deadLetters: DeadLetterBuffer;
  readonly stats: TrainerStats;
  readonly pipeline: Pipeline<LogRecord, LearnReport>;
  /** The version the learner was restored from at start, if any. */
  readonly resumedFrom: string | undefined;
  /** Finishes in-flight batches, publishes what they taught, commits, leaves the group. */
  stop(): Promise<void>;
}

export async function runTrainer(options: RunTrainerOptions): Promise<TrainerJob> {
  const topics = { ...DEFAULT_TRAINER_TOPICS, ...options.topics };
  const model = options.model ?? TRAINER_DEFAULTS.model;
  const publishIntervalMs = options.publishIntervalMs ?? TRAINER_DEFAULTS.publishIntervalMs;
  const bits = options.ftrl?.bits ? { bits: options.ftrl.bits } : {};
  const deep = options.learner === 'head' ? deepModelOf(options.deepModel) : undefined;
  const learner: TrainerLearner = deep
    ? new OnlineHeadLearner({ ...bits, ...options.head, inputSize: deep.width, initialWeights: deep.last.weights, initialBias: deep.last.bias, base: deep.base })
    : options.learner === 'fm'
      ? new OnlineFmLearner({ ...bits, ...options.fm })
      : new FtrlLearner(options.ftrl);
  const encoder = options.encoder ?? new RowEncoder({ bits: learner.bits });
  const registry = options.registry ?? new ModelRegistry();
  const deadLetters = new DeadLetterBuffer();

  let resumedFrom: string | undefined;
  if (options.resume ?? true) {
    const found = await latestPublishedVersion(options.log, model, topics.models);
    // A version of another learner kind, or a head learned on another deep model, means nothing to this learner
    // (the deployment switched learner or model): start over rather than refuse to start.
    const latest = found && found.kind === learner.kind && (!deep || headBaseOf(found) === deep.base) ? found : undefined;
    if (latest) {
      try {
        learner.restore(latest);
      } catch (error) {
        throw new Error(`cannot resume ${model} from ${latest.version} on ${topics.models}`, { cause: error });
      }
      if (!registry.get(model, latest.version)) registry.register(latest);
      resumedFrom = latest.version;
      options.onVersion?.(latest);
    }
  }

  const everySamples = options.publishEverySamples ?? TRAINER_DEFAULTS.publishEverySamples;
  const sinks: ModelSink[] = [new LogModelSink(options.log, topics.models)];
  if (options.onVersion) sinks.push(new CallbackModelSink(options.onVersion));
  const publisher = new ModelPublisher<TrainerFeatures>({
    model,
    learner,
    registry,
    sinks,
    everyMs: publishIntervalMs,
    everySamples,
    ...(options.clock ? { clock: options.clock } : {}),
  });
  const guardrails =
    options.guardrails === false ? undefined : new Guardrails<TrainerFeatures>(registry, model, (version) => predictorFor(version) as Predictor<TrainerFeatures>, options.guardrails ?? {});

  const stats: TrainerStats = { received: 0, learned: 0, deadLettered: 0, published: 0, rollbacks: [], lastLogloss: NaN };
  const tally = defineOperator<LearnReport, LearnReport>({ name: 'trainer-stats', kind: 'tap' }, (source$) =>
    source$.pipe(
      map((batch) => {
        for (const report of batch.items) {
          stats.learned += report.learned;
          if (report.rollback) stats.rollbacks.push(report.rollback);
          if (report.learned > 0) stats.lastLogloss = report.learnerLogloss;
        }
        stats.deadLettered = deadLetters.total;
        stats.published = publisher.published;
        return batch;
      }),
    ),
  );
  const countReceived = defineOperator<LogRecord, LogRecord>({ name: 'count-received', kind: 'tap' }, (source$) =>
    source$.pipe(
      map((batch) => {
        stats.received += batch.items.length;
        return batch;
      }),
    ),
  );
  const core = trainerPipeline<TrainerFeatures>({
    learner,
    encoder,
    registry,
    deadLetters,
    topics,
    publisher,
    ...(guardrails ? { guardrails } : {}),
    ...(deep
      ? {
          encode: encodeHeadSamples(deep.ranker, encoder, deadLetters, topics.samples) as Operator<LabelledSample, Sample<TrainerFeatures>>,
          validate: (sample: Sample<TrainerFeatures>) => headSampleProblem(sample as Sample<HeadFeatures>, deep.width),
        }
      : {}),
  });
  const pipeline = Pipeline.from<LogRecord>('trainer', { name: topics.samples, kind: 'topic' })
    .pipe(countReceived)
    .pipe(defineOperator<LogRecord, LearnReport>({ name: 'trainer', kind: 'subgraph' }, (source$) => core.apply(source$)))
    .pipe(tally);

  let timerError: Error | undefined;
  const runner = new PipelineRunner(pipeline as Pipeline<LogRecord, unknown>, {
    log: options.log,
    group: options.group ?? 'trainer',
    topics: [topics.samples],
    fromBeginning: true,
    commitIntervalMs: options.commitIntervalMs ?? publishIntervalMs,
    // Versions are published between batches, so a batch never holds more samples than one version's worth.
    maxBatchRecords: Math.min(options.maxBatchRecords ?? DEFAULT_MAX_BATCH_RECORDS, everySamples),
    checkpoint: async () => {
      if (timerError) throw timerError;
      await deadLetters.flush(options.log, topics.deadLetters);
      // due(Infinity) is true exactly when something was learned since the last version.
      if (publisher.due(Infinity)) {
        await publisher.publishNow();
        stats.published = publisher.published;
      }
    },
  });
  publisher.start((error) => {
    if (options.onError) options.onError(error);
    else timerError = error;
  });
  runner.start();
  return {
    runner,
    learner,
    encoder,
    registry,
    guardrails,
    publisher,
    deadLetters,
    stats,
    pipeline: core,
    resumedFrom,
    stop: async () => {
      try {
        await runner.stop();
      } finally {
        publisher.close();
        guardrails?.close();
      }
    },
  };
}

interface DeepModel {
  readonly ranker: DeepRanker;
  /** The digest of the ONNX bytes that names the deep model in head versions. */
  readonly base: string;
  readonly width: number;
  readonly last: { readonly weights: Float64Array; readonly bias: number };
}

function deepModelOf(bytes: Uint8Array | undefined): DeepModel {
  if (!bytes) throw new Error('the online head learner needs the deep model it fine-tunes (deepModel; EDDY_MODEL_FILE)');
  let ranker: DeepRanker;
  try {
    ranker = importOnnx(bytes);
  } catch (cause) {
    throw new Error('the online head learner cannot rebuild the deep model from its ONNX bytes', { cause });
  }
  if (!ranker.architecture.mlp) throw new Error(`the online head fine-tunes an MLP's last layer; a ${ranker.kind} has none`);
  const last = ranker.finalLayer();
  return { ranker, base: onnxDigest(bytes), width: last.weights.length, last };
}
