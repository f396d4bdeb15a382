import { EmbeddedLog } from '../connectors/embedded-log.js';
import type { Log } from '../connectors/log.js';
import { MemoryFeatureStore } from '../connectors/memory-store.js';
import { Experiments } from '../models/ab/experiments.js';
import type { FeatureConfig } from '../operators/features/config.js';
import { DeadLetterBuffer } from '../operators/dead-letters.js';
import { isBehaviourEvent, type InputEvent } from '../schema/events.js';
import { runFeatures } from './features.js';
import { recallStack, type RecallStack } from './recall-stack.js';
import { routeEvent } from '../connectors/client.js';
import { DEFAULT_SERVE_TOPICS, runWithDeadLetters, servingStatePipeline, type ServeTopics } from './serve.js';

/**
 * Replays a time-ordered event stream through the pipelines that serve live traffic: each event is appended to its
 * topic on a log (an `EmbeddedLog` unless one is given), the features pipeline (`runFeatures`) turns it into feature
 * state, and the serving-state pipeline feeds the recall indices. Nothing here computes features or recall on its
 * own, so what a replay builds is exactly what live traffic would have built.
 *
 * Pacing: as fast as possible by default; with `speed` S, an event `dt` ms of event time after the first is appended
 * no earlier than `dt / S` ms of wall time after the start (S = 60 turns an hour of history into a minute). Gaps
 * longer than `maxGapMs` of event time are shortened to it, so years-long quiet spells do not stall a demo.
 */

export interface ReplayOptions {
  /** Events in event-time order (the dataset adapters return them so). */
  readonly events: readonly InputEvent[];
  /** Event-time speed-up; 0 or undefined replays as fast as possible. */
  readonly speed?: number;
  /** Longest event-time gap honoured when pacing. Default 1 hour. */
  readonly maxGapMs?: number;
  /** Events appended per log append. Default 1,000 (as fast as possible) or 100 (paced). */
  readonly batchSize?: number;
  /** Writes the feature store's snapshot here at the end (and at its checkpoints). */
  readonly snapshotDir?: string;
  readonly features?: FeatureConfig;
  /** Called after each appended batch with the events appended and processed so far. */
  readonly onProgress?: (progress: ReplayProgress) => void;
  /** A log to replay into; default a fresh embedded log, closed at the end. */
  readonly log?: Log;
  readonly topics?: Partial<ServeTopics>;
  /** Gives up waiting for the pipelines to catch up after this long without progress. Default 30 s. */
  readonly stallTimeoutMs?: number;
  /** Wall-clock sleep, for tests. Default setTimeout. */
  readonly sleep?: (ms: number) => Promise<void>;
}

export interface ReplayProgress {
  readonly appended: number;
  readonly processed: number;
  readonly total: number;
  /** Event time of the latest appended event. */
  readonly eventTs: number;
}

export interface ReplaySummary {
  readonly events: number;
  readonly behaviourEvents: number;
  readonly itemEvents: number;
  readonly userEvents: number;
  /** Records each pipeline processed: every appended record, parsed or dead-lettered. */
  readonly processed: { readonly features: number; readonly recall: number };
  readonly deadLetters: number;
  readonly firstTs: number | null;
  readonly lastTs: number | null;
  readonly elapsedMs: number;
  readonly eventsPerSecond: number;
  /** Speed-up actually reached: event time covered over wall time. */
  readonly achievedSpeed: number | null;
  readonly features: { readonly users: number; readonly items: number };
  readonly recall: { readonly catalogue: number; readonly covisitedItems: number };
  readonly snapshotDir?: string;
}

export interface ReplayResult {
  readonly summary: ReplaySummary;
  /** The state built: feature store and recall stack, ready to serve. */
  readonly store: MemoryFeatureStore;
  readonly stack: RecallStack;
}

const sleepFor = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export async function replay(options: ReplayOptions): Promise<ReplayResult> {
  const topics = { ...DEFAULT_SERVE_TOPICS, ...options.topics };
  const speed = options.speed ?? 0;
  if (!(speed >= 0) || !Number.isFinite(speed)) throw new RangeError(`replay speed must be a finite number >= 0, got ${speed}`);
  const maxGapMs = options.maxGapMs ?? 3_600_000;
  const batchSize = options.batchSize ?? (speed > 0 ? 100 : 1000);
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new RangeError(`replay batchSize must be a positive integer, got ${batchSize}`);
  const sleep = options.sleep ?? sleepFor;
  const stallTimeoutMs = options.stallTimeoutMs ?? 30_000;

  const log = options.log ?? new EmbeddedLog({ defaultPartitions: 1 });
  for (const topic of [topics.events, topics.items, topics.users, topics.deadLetters]) await log.ensureTopic(topic, { partitions: 1 });
  const store = new MemoryFeatureStore({ ...(options.features && { features: options.features }), ...(options.snapshotDir && { snapshotDir: options.snapshotDir }) });
  const stack = recallStack();
  const stateLetters = new DeadLetterBuffer();
  const features = await runFeatures({ log, store, group: 'eddy-replay-features', topics });
  const recall = runWithDeadLetters(log, servingStatePipeline(stack, new Experiments(), stateLetters, topics), stateLetters, {
    group: 'eddy-replay-recall',
    topics: [topics.events, topics.items],
    deadLetterTopic: topics.deadLetters,
  });
  const recallRecords = () => recall.stats.records;
  const featureRecords = () => features.runner.stats.records;

  const events = options.events;
  const started = performance.now();
  let behaviourEvents = 0;
  let itemEvents = 0;
  let userEvents = 0;
  // Records the recall pipeline reads: it follows events and items, not users.
  let recallBound = 0;
  let paceTs = events[0]?.ts ?? 0;
  let wallBudget = 0;
  try {
    for (let at = 0; at < events.length; at += batchSize) {
      const batch = events.slice(at, at + batchSize);
      if (speed > 0) {
        const ts = batch[0]!.ts;
        wallBudget += Math.min(Math.max(0, ts - paceTs), maxGapMs) / speed;
        paceTs = Math.max(paceTs, ts);
        const ahead = wallBudget - (performance.now() - started);
        if (ahead > 0) await sleep(ahead);
      }
      const byTopic = new Map<string, { key: string; value: string }[]>();
      for (const event of batch) {
        if (isBehaviourEvent(event)) behaviourEvents++;
        else if (event.type === 'item') itemEvents++;
        else userEvents++;
        const { topic, key } = routeEvent(event, topics);
        if (topic !== topics.users) recallBound++;
        let records = byTopic.get(topic);
        if (!records) byTopic.set(topic, (records = []));
        records.push({ key, value: JSON.stringify(event) });
      }
      for (const [topic, records] of byTopic) await log.append(topic, records);
      // Keep at most a few batches in flight, so progress reports what is processed and memory stays bounded.
      await waitFor(() => featureRecords() >= at + batch.length - 4 * batchSize, [features.runner, recall], stallTimeoutMs);
      options.onProgress?.({ appended: at + batch.length, processed: Math.min(featureRecords(), recallRecords() + userEvents), total: events.length, eventTs: batch.at(-1)!.ts });
    }
    await waitFor(() => featureRecords() >= events.length && recallRecords() >= recallBound, [features.runner, recall], stallTimeoutMs);
  } finally {
    await features.runner.stop();
    await recall.stop();
  }
  if (features.runner.failed || recall.failed) throw new Error('replay: a pipeline failed; see its error above');
  await store.snapshot();
  const elapsedMs = performance.now() - started;
  const firstTs = events[0]?.ts ?? null;
  const lastTs = events.at(-1)?.ts ?? null;
  const summary: ReplaySummary = {
    events: events.length,
    behaviourEvents,
    itemEvents,
    userEvents,
    processed: { features: featureRecords(), recall: recallRecords() },
    deadLetters: features.deadLetters.total + stateLetters.total,
    firstTs,
    lastTs,
    elapsedMs,
    eventsPerSecond: elapsedMs > 0 ? (events.length / elapsedMs) * 1000 : 0,
    achievedSpeed: firstTs !== null && lastTs !== null && elapsedMs > 0 ? (lastTs - firstTs) / elapsedMs : null,
    features: { users: store.cache.users.count, items: store.cache.items.count },
    recall: { catalogue: stack.catalogue.size, covisitedItems: stack.covisitation.size },
    ...(options.snapshotDir && { snapshotDir: options.snapshotDir }),
  };
  if (!options.log) await log.close();
  return { summary, store, stack };
}

/** Polls until `done`, failing when a runner fails or nothing advances for `stallTimeoutMs`. */
async function waitFor(done: () => boolean, runners: readonly { failed: boolean; stats: { records: number } }[], stallTimeoutMs: number): Promise<void> {
  let lastProgress = performance.now();
  let seen = runners.map((r) => r.stats.records);
  while (!done()) {
    if (runners.some((r) => r.failed)) throw new Error('replay: a pipeline failed while replaying');
    await new Promise<void>((resolve) => setImmediate(resolve));
    const now = runners.map((r) => r.stats.records);
    if (now.some((n, i) => n !== seen[i])) {
      seen = now;
      lastProgress = performance.now();
    } else if (performance.now() - lastProgress > stallTimeoutMs) {
      throw new Error(`replay: the pipelines made no progress for ${stallTimeoutMs} ms`);
    }
    if (performance.now() - lastProgress > 5) await new Promise<void>((resolve) => setTimeout(resolve, 1));
  }
}
