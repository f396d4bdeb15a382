import { isBehaviourEvent, type BehaviourEvent, type InputEvent } from '../../schema/events.js';
import { LatencyRecorder, type LatencySummary } from './latency.js';
import { DEFAULT_BUCKETS, MetricsOverTime, QualityAccumulator, type BucketSpec, type OverTimeBucket, type QualityFigures } from './metrics-over-time.js';
import { isPositive } from './positive.js';
import { selfInformation } from './ranking.js';
import type { Recommender } from './recommender.js';

/**
 * Prequential evaluation (test, then learn). Events are replayed in order; for each scored event every model is
 * asked for K items for that user at that moment, excluding the items the user already interacted with, and scores
 * a hit when the event's item is in its list. Then every model learns from the event. All models see the same events.
 *
 * Which events are scored: behaviour events whose item is new to that user and that show interest (`isPositive` by
 * default: ratings of 4 or more, clicks, purchases...). A low rating is not something a recommender should be
 * rewarded for predicting, yet it is still an interaction: it is learned from and joins the user's exclusions.
 * Impressions are exposure, not interaction: learned from, never excluded nor scored.
 */

export interface PrequentialOptions {
  /** List length K. Default 10. */
  readonly k?: number;
  /** Which behaviour events (with an item new to the user) are scored. Default `isPositive`. */
  readonly isTarget?: (event: BehaviourEvent) => boolean;
  /** Grouping of the over-time figures. Default every 1000 scored events. */
  readonly buckets?: BucketSpec;
  /** Called every `progressEvery` events (default 1000) and at the end of each phase with the events done so far. */
  readonly onProgress?: (done: number, phase: 'train' | 'test') => void;
  readonly progressEvery?: number;
}

export interface ModelResult extends QualityFigures {
  /** Items returned that the harness discarded: excluded, duplicated or beyond K. A well-behaved model has 0. */
  readonly invalidItems: number;
  readonly latency: LatencySummary;
}

export interface PrequentialResult {
  readonly protocol: 'prequential';
  /** Behaviour events in the scored (test) stream. */
  readonly events: number;
  /** Events scored. */
  readonly evaluated: number;
  readonly k: number;
  readonly models: Record<string, ModelResult>;
  /** Behaviour events learned from without scoring (`train`), 0 without a training stream. */
  readonly trainEvents: number;
  /** Item and user metadata events seen, in both phases. */
  readonly metadataEvents: number;
  /** Distinct items seen in any event: the denominator of coverage. */
  readonly catalogue: number;
  readonly overTime: { readonly buckets: BucketSpec; readonly series: OverTimeBucket[] };
  readonly elapsedMs: number;
}

interface ModelState {
  readonly model: Recommender;
  readonly total: QualityAccumulator;
  readonly latency: LatencyRecorder;
  invalidItems: number;
}

type Events = Iterable<InputEvent> | AsyncIterable<InputEvent>;

/** Runs the protocol over one or two phases; `evaluatePrequential` is the one-call form. */
export class PrequentialEvaluation {
  private readonly k: number;
  private readonly isTarget: (event: BehaviourEvent) => boolean;
  private readonly models: ModelState[];
  private readonly overTime: MetricsOverTime;
  private readonly bucketSpec: BucketSpec;
  private readonly seen = new Map<string, Set<string>>();
  private readonly itemCounts = new Map<string, number>();
  private readonly catalogue = new Set<string>();
  private interactions = 0;
  private testEvents = 0;
  private trainEvents = 0;
  private metadataEvents = 0;
  private evaluated = 0;
  private readonly started = performance.now();

  constructor(
    models: readonly Recommender[],
    private readonly options: PrequentialOptions = {},
  ) {
    this.k = options.k ?? 10;
    if (!Number.isInteger(this.k) || this.k < 1) throw new RangeError(`k must be a positive integer, got ${this.k}`);
    if (models.length === 0) throw new RangeError('at least one model is needed');
    const names = models.map((m) => m.name);
    const duplicate = names.find((n, i) => names.indexOf(n) !== i);
    if (duplicate !== undefined) throw new RangeError(`model names must be unique; "${duplicate}" appears twice`);
    this.isTarget = options.isTarget ?? isPositive;
    this.models = models.map((model) => ({ model, total: new QualityAccumulator(), latency: new LatencyRecorder(), invalidItems: 0 }));
    this.bucketSpec = options.buckets ?? DEFAULT_BUCKETS;
    this.overTime = new MetricsOverTime(this.bucketSpec, names);
  }

  /** Learns a stream without scoring it. */
  async train(events: Events): Promise<void> {
    let done = 0;
    for await (const event of events) {
      if (isBehaviourEvent(event)) this.trainEvents++;
      await this.learn(event);
      if (++done % this.progressEvery === 0) this.options.onProgress?.(done, 'train');
    }
    this.options.onProgress?.(done, 'train');
  }

  /** Scores then learns each event of a stream. */
  async test(events: Events): Promise<void> {
    let done = 0;
    for await (const event of events) {
      if (isBehaviourEvent(event)) {
        this.testEvents++;
        if (this.isScored(event)) await this.score(event);
      }
      await this.learn(event);
      if (++done % this.progressEvery === 0) this.options.onProgress?.(done, 'test');
    }
    this.options.onProgress?.(done, 'test');
  }

  result(): PrequentialResult {
    this.overTime.close(this.catalogue.size);
    const models: Record<string, ModelResult> = {};
    for (const state of this.models) {
      models[state.model.name] = { ...state.total.figures(this.catalogue.size), invalidItems: state.invalidItems, latency: state.latency.summary() };
    }
    return {
      protocol: 'prequential',
      events: this.testEvents,
      evaluated: this.evaluated,
      k: this.k,
      models,
      trainEvents: this.trainEvents,
      metadataEvents: this.metadataEvents,
      catalogue: this.catalogue.size,
      overTime: { buckets: this.bucketSpec, series: this.overTime.buckets() },
      elapsedMs: performance.now() - this.started,
    };
  }

  private get progressEvery(): number {
    return this.options.progressEvery ?? 1000;
  }

  private isScored(event: BehaviourEvent): boolean {
    return event.type !== 'impression' && !this.seen.get(event.userId)?.has(event.itemId) && this.isTarget(event);
  }

  private async score(event: BehaviourEvent): Promise<void> {
    this.evaluated++;
    const exclude = this.seen.get(event.userId) ?? EMPTY;
    const buckets = this.overTime.bucketFor(event.ts, this.catalogue.size);
    for (const state of this.models) {
      const started = performance.now();
      let returned: string[];
      try {
        returned = await state.model.recommend(event.userId, this.k, event.ts, exclude);
      } catch (error) {
        throw new Error(`model "${state.model.name}" failed to recommend for user ${event.userId} at ${event.ts}`, { cause: error });
      }
      state.latency.record(performance.now() - started);
      if (!Array.isArray(returned)) throw new Error(`model "${state.model.name}" returned ${typeof returned} instead of an array of item ids`);
      const list = this.sanitise(returned, exclude, state);
      const rank = list.indexOf(event.itemId);
      let novelty = 0;
      for (const item of list) novelty += selfInformation(this.itemCounts.get(item) ?? 0, this.interactions, this.catalogue.size);
      state.total.add(rank, list, novelty);
      buckets.get(state.model.name)!.add(rank, list, novelty);
    }
  }

  /** Keeps the first K distinct, non-excluded items; anything else counts against the model. */
  private sanitise(returned: readonly string[], exclude: ReadonlySet<string>, state: ModelState): string[] {
    const list: string[] = [];
    for (const item of returned) {
      if (list.length < this.k && !exclude.has(item) && !list.includes(item)) list.push(item);
      else state.invalidItems++;
    }
    return list;
  }

  private async learn(event: InputEvent): Promise<void> {
    if (event.type === 'item') this.catalogue.add(event.itemId);
    if (!isBehaviourEvent(event)) this.metadataEvents++;
    else {
      this.catalogue.add(event.itemId);
      if (event.type !== 'impression') {
        let items = this.seen.get(event.userId);
        if (!items) this.seen.set(event.userId, (items = new Set()));
        items.add(event.itemId);
        this.itemCounts.set(event.itemId, (this.itemCounts.get(event.itemId) ?? 0) + 1);
        this.interactions++;
      }
    }
    for (const state of this.models) {
      try {
        const pending = state.model.learn(event);
        if (pending) await pending;
      } catch (error) {
        throw new Error(`model "${state.model.name}" failed to learn from a ${event.type} event at ${event.ts}`, { cause: error });
      }
    }
  }
}

const EMPTY: ReadonlySet<string> = new Set();

/** Learns `train` (if any) without scoring, then evaluates `test` prequentially. */
export async function evaluatePrequential(
  models: readonly Recommender[],
  streams: { readonly train?: Events; readonly test: Events },
  options: PrequentialOptions = {},
): Promise<PrequentialResult> {
  const run = new PrequentialEvaluation(models, options);
  if (streams.train) await run.train(streams.train);
  await run.test(streams.test);
  return run.result();
}
