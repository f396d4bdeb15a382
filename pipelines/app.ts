import { readFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { basename } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { collectDefaultMetrics, Registry, type Histogram } from 'prom-client';
import { EmbeddedLog, expiredUnreadError } from '../connectors/embedded-log.js';
import type { FeatureStore } from '../connectors/feature-store.js';
import { dashboardPlugin } from '../connectors/dashboard/plugin.js';
import { metricsDashboardSource } from '../connectors/dashboard/metrics-source.js';
import { createHttpServer, type EddyService, type ModelAdmin } from '../connectors/http.js';
import { httpLoggerOptions } from '../connectors/observability/logger.js';
import { createMetrics, type EddyMetrics } from '../connectors/observability/metrics.js';
import { createLog, ensureTopics } from '../connectors/kafka/index.js';
import type { Log, LogRecord } from '../connectors/log.js';
import type { BehaviourEvent } from '../schema/events.js';
import { MemoryFeatureStore } from '../connectors/memory-store.js';
import { RedisFeatureStore } from '../connectors/redis-store.js';
import { Experiments, type ExperimentConfig } from '../models/ab/experiments.js';
import { decodeModelVersion, type ModelVersion, type Predictor, type SparseFeatures } from '../models/learner.js';
import { ONLINE_HEAD_KIND } from '../models/learners/online-head.js';
import { predictorFor } from '../models/learners/index.js';
import { RowEncoder } from '../models/row-features.js';
import { DeadLetterBuffer } from '../operators/dead-letters.js';
import { TopicFeatureLog } from '../operators/features/feature-log.js';
import { registerFeatureStoreMetrics } from '../operators/features/metrics.js';
import type { Pipeline } from '../operators/pipeline.js';
import type { PipelineRunner } from '../operators/runtime.js';
import { coldStartPredictor, HeadRanker, OnlineRanker, OnnxRanker, servingLayout, type Ranker } from '../operators/rank.js';
import { Scorer } from '../models/scorer.js';
import type { AppConfig } from './config.js';
import { runFeatures } from './features.js';
import type { SamplesJob } from './samples.js';
import { startSamplesRole } from './samples-role.js';
import { startSamplesThread } from './samples-thread.js';
import { runTrainer } from './trainer.js';
import { registryAdmin, servingQuality, type ServingQuality } from './model-admin.js';
import { recallStack } from './recall-stack.js';
import { createService, ProactivePusher, requestsPipeline, runWithDeadLetters, servingStatePipeline, type ServeTopics } from './serve.js';
import { SERVING_STAGES, ServingPipeline, type ServingStage } from './serving.js';

/**
 * The features and serving-state jobs feed what the next request sees, so they batch for a few milliseconds at most:
 * under load that gathers the impressions of several requests into one batch, and it adds at most this to the time a
 * click takes to show.
 */
const FRESH_STATE_FETCH = { fetchMinRecords: 256, fetchMaxWaitMs: 4 } as const;

export const ROLES = ['all', 'features', 'samples', 'trainer', 'serve'] as const;
export type Role = (typeof ROLES)[number];

/** Bits of the hashed feature space shared by the online ranker at serving and the trainer. */
export const ONLINE_MODEL_BITS = 18;
export const ONLINE_MODEL_NAME = 'ranker';

export interface StartOptions {
  readonly config: AppConfig;
  readonly role: Role;
  /** Errors of background work (pushes, snapshots) that must not stop serving. */
  readonly onError?: (error: unknown) => void;
  /** Serve HTTP. Default true for `serve` and `all`; every role answers /healthz, /readyz and /metrics. */
  readonly http?: boolean;
  /** Extra HTTP routes (the dashboard). */
  readonly httpPlugins?: readonly ((app: FastifyInstance) => void | Promise<void>)[];
  /** An already created log, for tests and for several roles in one process. */
  readonly log?: Log;
}

export interface RunningEddy {
  readonly role: Role;
  readonly config: AppConfig;
  readonly log: Log;
  readonly registry: Registry;
  readonly store?: FeatureStore;
  readonly serving?: ServingPipeline;
  readonly service?: EddyService;
  readonly http?: FastifyInstance;
  /** Where HTTP listens, once started. */
  readonly url?: string;
  readonly runners: ReadonlyMap<string, RunningPart>;
  /** Topologies of the pipelines this process runs, those on its samples thread included. */
  readonly pipelines: readonly Pick<Pipeline<LogRecord, unknown>, 'describe'>[];
  stop(): Promise<void>;
}

/** Something a role runs in the background: a pipeline runner, or a follower of a topic. */
export interface RunningPart {
  readonly failed: boolean;
  readonly stats: { readonly records: number };
  /** Records this part has sent to the dead-letter topic. */
  readonly deadLettered?: number;
  stop(): Promise<void>;
}

/**
 * A part whose state is read from `job` at each access: a runner in this process, or a job on the samples thread
 * whose statistics are those the thread last reported.
 */
function partFrom(job: { readonly failed: boolean; readonly runnerStats: RunningPart['stats']; readonly deadLettered: number }, stop: () => Promise<void>): RunningPart {
  return {
    get failed() {
      return job.failed;
    },
    stats: job.runnerStats,
    get deadLettered() {
      return job.deadLettered;
    },
    stop,
  };
}

function partOf(runner: PipelineRunner, deadLetters: DeadLetterBuffer, stop: () => Promise<void> = () => runner.stop()): RunningPart {
  const job = {
    get failed() {
      return runner.failed;
    },
    runnerStats: runner.stats,
    get deadLettered() {
      return deadLetters.total;
    },
  };
  return partFrom(job, stop);
}

export function topicsOf(config: AppConfig): ServeTopics & { samples: string; models: string } {
  const t = config.kafka.topics;
  return {
    events: t.events.name,
    items: t.items.name,
    users: t.users.name,
    requests: t.recommendationRequests.name,
    recommendations: t.recommendations.name,
    deadLetters: t.deadLetters.name,
    samples: t.samples.name,
    models: t.models.name,
  };
}

function createStore(config: AppConfig, role: Role): FeatureStore {
  if (config.redis) {
    return new RedisFeatureStore({
      connection: config.redis,
      role: role === 'serve' ? 'reader' : 'writer',
      maxStalenessMs: config.featureMaxStalenessMs,
    });
  }
  return new MemoryFeatureStore({
    ...(config.dataDir ? { snapshotDir: config.dataDir } : {}),
    snapshotIntervalMs: config.snapshotIntervalMs,
  });
}

/**
 * Starts one role, or every role in one process (`all`). The stream roles run pipelines over consumer groups; the
 * serving role keeps recall indices and experiment counters from the event stream, answers HTTP and the
 * `recommendation-requests` topic, swaps in model versions from the `models` topic, and pushes refreshed lists.
 */
export async function startEddy(options: StartOptions): Promise<RunningEddy> {
  const { config, role } = options;
  const onError = options.onError ?? ((error: unknown) => console.error(error));
  const topics = topicsOf(config);
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const metrics = createMetrics(registry);

  const log =
    options.log ??
    (config.kafka.client === 'embedded'
      ? new EmbeddedLog({
          defaultPartitions: 1,
          retentionBytes: config.logRetentionBytes,
          onExpiredUnread: (expired) => onError(expiredUnreadError(expired)),
        })
      : await createLog(config.kafka));
  await ensureTopics(log, config.kafka);
  await log.ensureTopic('feature-log', { partitions: config.kafka.topics.events.partitions });

  const runners = new Map<string, RunningPart>();
  const pipelines: Pick<Pipeline<LogRecord, unknown>, 'describe'>[] = [];
  const stoppers: (() => Promise<void> | void)[] = [];
  const runs = (name: string) => role === 'all' || role === name;

  const needsStore = runs('features') || runs('serve');
  const store = needsStore ? createStore(config, role) : undefined;
  if (store) {
    const restored = await store.restore();
    if (log instanceof EmbeddedLog) log.continueFrom(restored);
    registerFeatureStoreMetrics(store, registry);
  }

  if (runs('features') && store) {
    const { runner, deadLetters } = await runFeatures({ log, store, group: 'eddy-features', registry, commitIntervalMs: config.redis ? 200 : 0, ...FRESH_STATE_FETCH });
    runners.set('features', partOf(runner, deadLetters));
  }

  const trainerSettings = runs('trainer')
    ? {
        group: 'eddy-trainer',
        topics: { samples: topics.samples, models: topics.models, deadLetters: topics.deadLetters },
        model: ONLINE_MODEL_NAME,
        learner: config.onlineLearner,
        ...(config.onlineLearner === 'head' && config.modelFile ? { deepModel: await readFile(config.modelFile) } : {}),
        ftrl: { bits: ONLINE_MODEL_BITS },
        publishEverySamples: config.publishEverySamples,
        publishIntervalMs: config.publishIntervalMs,
      }
    : undefined;
  let samplesJob: Pick<SamplesJob, 'stats' | 'heldItems'> | undefined;
  let modelAdmin: ModelAdmin | undefined;
  /** The serving version of the online model and its online quality, when this process runs the trainer. */
  let onlineQuality: (() => ServingQuality | undefined) | undefined;
  if (runs('samples')) {
    const samples = {
      topics: { events: topics.events, samples: topics.samples, deadLetters: topics.deadLetters },
      attributionWindowMs: config.attributionWindowMs,
      maxStateItems: config.samplesMaxItems,
      checkpointOnLog: !(log instanceof EmbeddedLog),
    };
    if (role === 'all' && log instanceof EmbeddedLog && config.samplesThread === 'worker') {
      const thread = await startSamplesThread(log, samples, onError, { logRetentionBytes: config.logRetentionBytes, ...(trainerSettings ? { trainer: trainerSettings } : {}) });
      runners.set('samples', partFrom(thread, () => thread.stop()));
      pipelines.push(thread.pipeline);
      samplesJob = thread;
      const trainer = thread.trainer;
      if (trainer) {
        // The thread stops both jobs, and the samples part already asks it to.
        runners.set('trainer', partFrom(trainer, async () => {}));
        pipelines.push(trainer.pipeline);
        modelAdmin = trainer.admin;
        onlineQuality = () => trainer.serving();
      }
    } else {
      const job = await startSamplesRole({ log, ...samples });
      runners.set('samples', partOf(job.runner, job.deadLetters, () => job.stop()));
      pipelines.push(job.pipeline as Pipeline<LogRecord, unknown>);
      samplesJob = job;
    }
  }

  if (trainerSettings && !runners.has('trainer')) {
    const job = await runTrainer({ log, ...trainerSettings, onError });
    runners.set('trainer', partOf(job.runner, job.deadLetters, () => job.stop()));
    pipelines.push(job.pipeline as Pipeline<LogRecord, unknown>);
    modelAdmin = registryAdmin(job.registry);
    onlineQuality = () => servingQuality(job.registry, ONLINE_MODEL_NAME);
  }
  if (onlineQuality) {
    const quality = onlineQuality;
    const qualitySampler = setInterval(() => {
      const serving = quality();
      if (!serving) return;
      const { auc, logloss } = serving;
      if (auc !== undefined && Number.isFinite(auc)) metrics.onlineAuc.labels(ONLINE_MODEL_NAME, serving.version).set(auc);
      if (logloss !== undefined && Number.isFinite(logloss)) metrics.onlineLogloss.labels(ONLINE_MODEL_NAME, serving.version).set(logloss);
    }, 1000);
    qualitySampler.unref();
    stoppers.push(() => clearInterval(qualitySampler));
  }

  let serving: ServingPipeline | undefined;
  let experimentsForMetrics: Experiments | undefined;
  let service: EddyService | undefined;
  if (runs('serve') && store) {
    const experiments = new Experiments(config.experiments as ExperimentConfig[]);
    const stack = recallStack();
    const encoder = new RowEncoder({ bits: ONLINE_MODEL_BITS });
    const onlineRanker = new OnlineRanker('ftrl', encoder, coldStartPredictor(encoder), 'cold-start');
    const featureLog = new TopicFeatureLog(log, { maxBuffered: 64 });
    const impressionLog = new ImpressionLog(log, topics.events, featureLog, onError);
    stoppers.push(() => impressionLog.flush());
    const rankers: Record<string, Ranker> & { default: Ranker } = { default: onlineRanker, online: onlineRanker };
    let headRanker: HeadRanker | undefined;
    if (config.modelFile) {
      const bytes = await readFile(config.modelFile).catch((error: unknown) => {
        throw new Error(`EDDY_MODEL_FILE: cannot read ${config.modelFile}`, { cause: error });
      });
      if (config.onlineLearner === 'head') {
        const head = (headRanker = await HeadRanker.create(bytes, { layout: servingLayout(store.names), version: basename(config.modelFile), encoder, thread: config.scorerThread }));
        stoppers.push(() => head.close());
        rankers.default = rankers.onnx = head;
      } else {
        const scorer = await Scorer.create(bytes, { layout: servingLayout(store.names), version: basename(config.modelFile), thread: config.scorerThread });
        stoppers.push(() => scorer.close());
        rankers.default = rankers.onnx = new OnnxRanker(scorer);
      }
    }
    const stageSeconds = Object.fromEntries(SERVING_STAGES.map((stage) => [stage, metrics.recommendStage.labels(stage)])) as Record<ServingStage, Histogram.Internal<'stage'>>;
    serving = new ServingPipeline({
      store,
      recaller: stack.recaller,
      rankers,
      reranker: stack.reranker,
      experiments,
      featureLog,
      explorationShare: config.explorationShare,
      onTimings: (timings) => {
        for (const stage of SERVING_STAGES) stageSeconds[stage].observe(timings[stage] / 1000);
      },
      logImpressions: (impressions) => {
        metrics.eventsOut.labels(topics.events).inc(impressions.length);
        impressionLog.push(impressions);
      },
    });
    const servingRef = serving;
    const pusher = new ProactivePusher(log, serving, topics.recommendations, config.pushDebounceMs, 10, onError, () =>
      metrics.eventsOut.labels(topics.recommendations).inc(),
    );
    stoppers.push(() => pusher.close());

    const instance = `${hostname()}-${process.pid}-${Date.now()}`;
    const stateLetters = new DeadLetterBuffer();
    const statePipeline = servingStatePipeline(stack, experiments, stateLetters, topics, (userId) => pusher.notify(userId));
    runners.set('serving-state', partOf(runWithDeadLetters(log, statePipeline, stateLetters, { group: `eddy-serve-state-${instance}`, topics: [topics.events, topics.items], deadLetterTopic: topics.deadLetters, ...FRESH_STATE_FETCH }), stateLetters));
    pipelines.push(statePipeline);

    const requestLetters = new DeadLetterBuffer();
    const requests = requestsPipeline(log, serving, requestLetters, topics, (count) => metrics.eventsOut.labels(topics.recommendations).inc(count));
    runners.set('requests', partOf(runWithDeadLetters(log, requests, requestLetters, { group: 'eddy-serve-requests', topics: [topics.requests], deadLetterTopic: topics.deadLetters, fromBeginning: false }), requestLetters));
    pipelines.push(requests);

    runners.set('model-updates', followModels(log, topics.models, instance, (decoded) => {
      if (decoded.kind === ONLINE_HEAD_KIND) {
        if (!headRanker) throw new Error('an online-head version needs EDDY_ONLINE_LEARNER=head and EDDY_MODEL_FILE at serving');
        headRanker.swapVersion(decoded);
      } else onlineRanker.swap(predictorFor(decoded) as Predictor<SparseFeatures>, decoded.version);
      metrics.setServingVersion(ONLINE_MODEL_NAME, decoded.version);
    }, onError));
    metrics.setServingVersion(ONLINE_MODEL_NAME, onlineRanker.version);
    experimentsForMetrics = experiments;
    service = createService({
      log,
      topics,
      serving: servingRef,
      stack,
      store,
      experiments,
      registry,
      metrics,
      checks: () => Object.fromEntries([...runners].map(([name, runner]) => [name, { ok: !runner.failed, records: runner.stats.records }])),
    });
  }

  const sampler = sampleIntoMetrics(metrics, runners, experimentsForMetrics, store, samplesJob);
  stoppers.push(() => clearInterval(sampler));

  let http: FastifyInstance | undefined;
  let url: string | undefined;
  if (options.http ?? true) {
    http = await createHttpServer(service ?? probesOnly(registry, runners), {
      logger: httpLoggerOptions({ level: config.logLevel, bindings: { role } }),
      bodyLimitBytes: config.bodyLimitBytes,
      ...(modelAdmin ? { modelAdmin } : {}),
      ...(config.authToken ? { authToken: config.authToken } : {}),
      plugins: [dashboardPlugin(metricsDashboardSource(metrics)), ...(options.httpPlugins ?? [])],
    });
    url = await http.listen({ port: config.port, host: config.host });
  }

  return {
    role,
    config,
    log,
    registry,
    ...(store ? { store } : {}),
    ...(serving ? { serving } : {}),
    ...(service ? { service } : {}),
    ...(http ? { http } : {}),
    ...(url ? { url } : {}),
    runners,
    pipelines,
    async stop() {
      await http?.close();
      for (const stop of stoppers) await stop();
      await Promise.all([...runners.values()].map((r) => r.stop().catch(onError)));
      await store?.close();
      if (!options.log) await log.close();
    },
  };
}

/**
 * Appends served impressions to the events topic once per turn of the event loop rather than once per request, after
 * the served features of the same requests (so a samples job never sees an impression before its features): under
 * load a turn finishes several requests, and every append wakes the consumers that read the topic.
 */
class ImpressionLog {
  private pending: { key: string; value: string }[] = [];
  private scheduled: NodeJS.Immediate | undefined;

  constructor(
    private readonly log: Log,
    private readonly topic: string,
    private readonly featureLog: TopicFeatureLog,
    private readonly onError: (error: unknown) => void,
  ) {}

  push(impressions: readonly BehaviourEvent[]): void {
    for (const event of impressions) this.pending.push({ key: event.userId, value: JSON.stringify(event) });
    this.scheduled ??= setImmediate(() => void this.flush());
  }

  /** Appends what is pending; failures go to `onError`, as serving does not wait for them. */
  async flush(): Promise<void> {
    if (this.scheduled) clearImmediate(this.scheduled);
    this.scheduled = undefined;
    const records = this.pending;
    this.pending = [];
    try {
      await this.featureLog.flush();
      if (records.length > 0) await this.log.append(this.topic, records);
    } catch (error) {
      this.onError(error);
    }
  }
}

/**
 * Once a second, turns what the running parts count into Prometheus series: records in per pipeline, consumer lag
 * per partition, exposures and clicks per experiment variant, and the age of the newest event in the feature store.
 */
function sampleIntoMetrics(
  metrics: EddyMetrics,
  runners: ReadonlyMap<string, RunningPart>,
  experiments: Experiments | undefined,
  store: FeatureStore | undefined,
  samples: Pick<SamplesJob, 'stats' | 'heldItems'> | undefined,
): NodeJS.Timeout {
  const seen = new Map<string, number>();
  const delta = (key: string, total: number) => {
    const change = total - (seen.get(key) ?? 0);
    seen.set(key, total);
    return change;
  };
  const timer = setInterval(() => {
    for (const [name, runner] of runners) {
      const change = delta(`in:${name}`, runner.stats.records);
      if (change > 0) metrics.eventsIn.labels(name).inc(change);
      const dead = delta(`dead:${name}`, runner.deadLettered ?? 0);
      if (dead > 0) metrics.eventsDeadLettered.labels(name).inc(dead);
      for (const [partition, lag] of (runner.stats as { lag?: Map<string, number> }).lag ?? []) {
        const [topic, index] = partition.split('/') as [string, string];
        metrics.consumerLag.labels(name, topic, index).set(lag);
      }
    }
    for (const id of experiments?.ids ?? []) {
      for (const variant of experiments!.report(id)?.variants ?? []) {
        const exposures = delta(`exp:${id}/${variant.name}`, variant.exposures);
        const clicks = delta(`click:${id}/${variant.name}`, variant.clicks);
        if (exposures > 0) metrics.abExposures.labels(id, variant.name).inc(exposures);
        if (clicks > 0) metrics.abClicks.labels(id, variant.name).inc(clicks);
      }
    }
    if (samples) {
      const { stats } = samples;
      const outcomes = { positive: stats.positives, negative: stats.negatives, skipped: stats.skipped, missing_features: stats.missingFeatures };
      for (const [outcome, total] of Object.entries(outcomes)) {
        const change = delta(`samples:${outcome}`, total);
        if (change > 0) metrics.samplesImpressions.labels(outcome).inc(change);
      }
      const closedEarly = delta('samples:closed-early', stats.closedEarly);
      if (closedEarly > 0) metrics.samplesClosedEarly.inc(closedEarly);
      metrics.samplesJoinItems.set(samples.heldItems());
    }
    const newest = store?.health().newestEventTs ?? Number.NaN;
    if (Number.isFinite(newest) && newest > 0) metrics.featureFreshness.labels('newest-event').set(Math.max(0, Date.now() - newest) / 1000);
  }, 1000);
  timer.unref();
  return timer;
}

/** Follows the `models` topic from its start (it is compacted) and swaps each decodable ranker version in. */
function followModels(
  log: Log,
  topic: string,
  instance: string,
  swap: (version: ModelVersion) => void,
  onError: (error: unknown) => void,
): RunningPart {
  const consumer = log.consumer({ group: `eddy-serve-models-${instance}`, topics: [topic], fromBeginning: true, pollTimeoutMs: 200 });
  let stopped = false;
  const stats = { records: 0 };
  const done = (async () => {
    while (!stopped) {
      const batch = await consumer.next();
      if (batch === undefined) break;
      if (!batch) continue;
      stats.records += batch.records.length;
      const latest = batch.records.filter((r) => r.key === ONLINE_MODEL_NAME).at(-1);
      if (!latest) continue;
      try {
        swap(decodeModelVersion(latest.value));
      } catch (error) {
        onError(new Error(`model version at ${topic}/${latest.partition}@${latest.offset} could not be loaded`, { cause: error }));
      }
    }
  })();
  return {
    stats,
    failed: false,
    async stop() {
      stopped = true;
      await consumer.close();
      await done;
    },
  };
}

/** The service of a stream role: only health, readiness and metrics answer; the API routes say it is not served here. */
function probesOnly(registry: Registry, runners: ReadonlyMap<string, RunningPart>): EddyService {
  const notHere = async (): Promise<never> => {
    throw Object.assign(new Error('this role does not serve recommendations'), { statusCode: 404 });
  };
  return {
    ingest: notHere,
    recommend: notHere,
    similar: notHere,
    experiment: () => undefined,
    async readiness() {
      const checks = Object.fromEntries([...runners].map(([name, runner]) => [name, { ok: !runner.failed, records: runner.stats.records }]));
      return { ready: Object.values(checks).every((c) => c.ok), checks };
    },
    async metrics() {
      return { contentType: registry.contentType, body: await registry.metrics() };
    },
  };
}
