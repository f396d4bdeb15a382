import { MemoryFeatureStore } from '../connectors/memory-store.js';
import { ItemEmbeddings } from '../models/embeddings.js';
import { isPositive } from '../models/evaluation/positive.js';
import type { Recommender } from '../models/evaluation/recommender.js';
import { FtrlLearner, type FtrlOptions } from '../models/learners/ftrl.js';
import { mulberry32, type Random } from '../models/random.js';
import { RowEncoder } from '../models/row-features.js';
import type { CountWindow, FeatureConfig } from '../operators/features/config.js';
import { FeatureRows } from '../operators/features/rows.js';
import { OnlineRanker, type Ranker, type RankerScores } from '../operators/rank.js';
import { ItemCatalogue } from '../operators/recall/catalogue.js';
import { CoVisitationRecaller, type CoVisitationRecallerOptions } from '../operators/recall/covisitation.js';
import { EmbeddingRecaller } from '../operators/recall/embedding.js';
import { MultiRecaller, type MergedCandidate } from '../operators/recall/merge.js';
import { PopularityRecaller } from '../operators/recall/popular.js';
import { RecentContextRecaller } from '../operators/recall/recent-context.js';
import type { RecallEvent, RecallRequest, Recaller, ScoredCandidate } from '../operators/recall/types.js';
import { attributeCaps } from '../operators/rerank/caps.js';
import { freshnessBoost } from '../operators/rerank/freshness.js';
import { mmr } from '../operators/rerank/mmr.js';
import { Reranker } from '../operators/rerank/reranker.js';
import type { RerankStep } from '../operators/rerank/types.js';
import { isBehaviourEvent, type BehaviourEvent, type InputEvent } from '../schema/events.js';
import { ServingPipeline } from './serving.js';

/**
 * Eddy's serving path as a `Recommender` for the prequential harness: the same feature store update, recall
 * `observe`, and `ServingPipeline.recommend` (recall -> feature lookup -> rank -> re-rank) that live traffic goes
 * through, with the harness's event time as the serving clock.
 *
 * Ranking is an FTRL model learned from the stream. MovieLens has no impressions, so there is nothing shown and not
 * clicked to learn from; instead, each scored event that the user rated positively is a positive sample with the
 * features it had just before the event (looked up from the store at that moment, before the event is applied), and
 * the negatives are sampled from that same request: `servedNegatives` among the items served (hard negatives: what
 * the model ranked highest but the user chose something else) and `negatives` among all the recalled candidates. Only events whose
 * item was among the recalled candidates are learned from: the ranker orders recalled candidates, and an item that
 * recall missed has no recall features to learn from (learning it anyway would teach the model that being recalled
 * is a bad sign).
 *
 * The ranker sees the store's feature rows plus what recall knew about each candidate (`RecallFeatureRanker`): each
 * source's normalised score, raw score and rank. That is where most of the signal on MovieLens is: co-visitation
 * over the user's last ratings, both within a day (`covisit`) and within one sitting (`session`, the last 3 within an
 * hour), since users rate in sessions and items rated close together are the most related.
 */

export interface EddyRecommenderOptions {
  /** Default `eddy`. */
  readonly name?: string;
  /** Candidates recalled and ranked per request. Default 100. */
  readonly recallCount?: number;
  /** Relative shares of the merged candidates. Default covisit 6, session 3, embedding 1, popular 2, recent 1. */
  readonly quotas?: Partial<Record<EddyRecallSource, number>>;
  /** Co-visitation settings. Default: pairs among the last 10 ratings within 1 day, recall over the last 20 items. */
  readonly covisitation?: CoVisitationRecallerOptions;
  /** Re-ranking steps. Default none: on a replay, freshness and diversity trade accuracy for other goals. */
  readonly rerank?: { readonly freshness?: boolean; readonly mmr?: boolean; readonly capPerAttribute?: number };
  /** Negatives sampled among the recalled candidates per positive. Default 3. */
  readonly negatives?: number;
  /** Negatives sampled among the items served for that request (the hard ones). Default 2. */
  readonly servedNegatives?: number;
  /** Default: alpha 0.5, l1 0.5, l2 1, 18 bits. */
  readonly ftrl?: FtrlOptions;
  /** Item metadata fields that are attributes. Default `genres`, `genre`, `category` (MovieLens and the usual JSONL layouts). */
  readonly attributes?: readonly string[];
  /** Feature store config. Default: one `rated` history of 100 items over every interaction type, rating counters. */
  readonly features?: FeatureConfig;
  /** Item count windows of the default feature config. Default 1 day and 30 days. */
  readonly windows?: readonly CountWindow[];
  /**
   * Receives every learning sample with the store's feature row it was learned from (without the recall features),
   * for offline training (`eddy train`).
   */
  readonly onSample?: (sample: ReplaySample) => void;
  /** Sampling seed. Default 7. */
  readonly seed?: number;
}

/** A labelled candidate as learned from during a replay: the feature store's row at that moment. */
export interface ReplaySample {
  readonly userId: string;
  readonly itemId: string;
  readonly ts: number;
  readonly label: 0 | 1;
  readonly names: readonly string[];
  readonly values: Float32Array;
}

export type EddyRecallSource = 'covisit' | 'session' | 'embedding' | 'popular' | 'recent';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

/** The feature store config for replays of rating data: ratings are what users do, so histories and counters follow them. */
export function replayFeatureConfig(attributes: readonly string[], windows?: readonly CountWindow[]): FeatureConfig {
  return {
    user: {
      histories: [{ name: 'rated', types: ['rating', 'click', 'view', 'like', 'add_to_cart', 'purchase'], length: 100 }],
      counterTypes: ['rating', 'click'],
    },
    item: {
      attributeFields: attributes,
      windowTypes: ['impression', 'click', 'rating'],
      windows: windows ?? [
        { name: '1d', lengthMs: DAY, buckets: 24 },
        { name: '30d', lengthMs: 30 * DAY, buckets: 30 },
      ],
    },
  };
}

/** The recall sources, merged by quota, with the co-visitation window that suits session-shaped histories. */
export function replayRecall(options: {
  quotas?: Partial<Record<EddyRecallSource, number>>;
  covisitation?: CoVisitationRecallerOptions;
  session?: CoVisitationRecallerOptions;
  attributes: readonly string[];
}) {
  const quotas = { covisit: 6, session: 3, embedding: 1, popular: 2, recent: 1, ...options.quotas };
  const catalogue = new ItemCatalogue();
  const popular = new PopularityRecaller({ catalogue, attributes: options.attributes, halfLifeMs: 30 * DAY });
  const covisitation = new CoVisitationRecaller({ historyLength: 10, windowMs: DAY, maxRecent: 20, neighbours: 100, halfLifeMs: 365 * DAY, ...options.covisitation });
  // The same co-visitation over the last few ratings of one sitting only: what was rated together just now.
  const session = new CoVisitationRecaller({ name: 'session', historyLength: 3, windowMs: HOUR, maxRecent: 5, recencyDecay: 0.6, neighbours: 100, halfLifeMs: 365 * DAY, ...options.session });
  const embeddings = new ItemEmbeddings({ dim: 16 });
  const embedding = new EmbeddingRecaller({ embeddings });
  const recaller = new MultiRecaller({
    catalogue,
    sources: [
      { recaller: covisitation, quota: quotas.covisit },
      { recaller: session, quota: quotas.session },
      { recaller: embedding, quota: quotas.embedding },
      { recaller: popular, quota: quotas.popular },
      { recaller: new RecentContextRecaller({ catalogue, popularity: popular, attributes: options.attributes, resurfaceWeight: 0 }), quota: quotas.recent },
    ],
  });
  return { catalogue, recaller, covisitation, embeddings };
}

/** Keeps the candidates of the latest recall, so the ranker and the learner see what recall knew. */
export class RecordingRecaller implements Recaller {
  readonly name: string;
  last: { request: RecallRequest; candidates: MergedCandidate[]; byItem: Map<string, MergedCandidate> } | undefined;

  constructor(private readonly inner: Recaller) {
    this.name = inner.name;
  }

  recall(request: RecallRequest): ScoredCandidate[] {
    const candidates = this.inner.recall(request) as MergedCandidate[];
    this.last = { request, candidates, byItem: new Map(candidates.map((c) => [c.itemId, c])) };
    return candidates;
  }

  observe(event: RecallEvent): void {
    this.inner.observe(event);
  }
}

/**
 * An `OnlineRanker` over the store's rows extended with recall features: for each source, the candidate's score
 * relative to that source's best, its raw score and 1 / (1 + rank) in its list; plus how many sources found it.
 */
export class RecallFeatureRanker implements Ranker {
  readonly online: OnlineRanker;
  private cachedNames: { base: readonly string[]; all: string[] } | undefined;

  constructor(
    private readonly recorder: RecordingRecaller,
    private readonly sources: readonly string[],
    readonly encoder: RowEncoder,
    readonly learner: FtrlLearner,
    version = 'stream',
  ) {
    this.online = new OnlineRanker('ftrl', encoder, learner, version);
  }

  get name(): string {
    return this.online.name;
  }

  get version(): string {
    return this.online.version;
  }

  score(rows: FeatureRows, itemIds: readonly string[]): RankerScores {
    return this.online.score(this.extend(rows, itemIds), itemIds);
  }

  /** The rows the model reads: the store's features then the recall features of the latest recall. */
  extend(rows: FeatureRows, itemIds: readonly string[]): FeatureRows {
    const names = this.namesFor(rows.names);
    const out = new FeatureRows(names, rows.count);
    const byItem = this.recorder.last?.byItem;
    const tops = this.topScores();
    const width = names.length;
    const base = rows.width;
    for (let i = 0; i < rows.count; i++) {
      out.values.set(rows.row(i), i * width);
      const candidate = byItem?.get(itemIds[i]!);
      if (!candidate) continue;
      let at = i * width + base;
      out.values[at++] = candidate.sources.length;
      for (const source of this.sources) {
        const hit = candidate.sources.find((h) => h.source === source);
        const top = tops.get(source) ?? 0;
        out.values[at++] = hit && top > 0 ? hit.score / top : 0;
        out.values[at++] = hit ? 1 / (1 + hit.rank) : 0;
        out.values[at++] = hit ? hit.score : 0;
      }
    }
    return out;
  }

  /** Each source's best score in the latest recall, which normalises its scores. */
  private topScores(): Map<string, number> {
    const tops = new Map<string, number>();
    for (const c of this.recorder.last?.candidates ?? []) for (const h of c.sources) if (h.rank === 0) tops.set(h.source, h.score);
    return tops;
  }

  private namesFor(base: readonly string[]): string[] {
    if (this.cachedNames?.base !== base) {
      const extra = ['recall_sources', ...this.sources.flatMap((s) => [`recall_${s}_score`, `recall_${s}_rank`, `recall_${s}_raw`])];
      this.cachedNames = { base, all: [...base, ...extra] };
    }
    return this.cachedNames.all;
  }
}

/** Re-ranking steps chosen by options; none by default. */
export function rerankSteps(catalogue: ItemCatalogue, embeddings: ItemEmbeddings, attributes: readonly string[], options: EddyRecommenderOptions['rerank'] = {}): RerankStep[] {
  const steps: RerankStep[] = [];
  if (options.freshness) steps.push(freshnessBoost({ catalogue }));
  if (options.mmr) steps.push(mmr({ catalogue, attributes, embeddings }));
  if (options.capPerAttribute !== undefined) steps.push(attributeCaps({ catalogue, caps: Object.fromEntries(attributes.map((f) => [f, options.capPerAttribute!])) }));
  return steps;
}

export class EddyRecommender implements Recommender {
  readonly name: string;
  readonly store: MemoryFeatureStore;
  readonly serving: ServingPipeline;
  readonly ranker: RecallFeatureRanker;
  /** Samples the ranker has learned from. */
  samples = 0;
  private readonly recorder: RecordingRecaller;
  private readonly negatives: number;
  private readonly servedNegatives: number;
  private readonly onSample: ((sample: ReplaySample) => void) | undefined;
  private readonly random: Random;
  private now = 0;
  private requests = 0;
  /** The latest request, for learning from the event that follows it. */
  private pending: { userId: string; ts: number; candidates: readonly MergedCandidate[]; served: readonly string[] } | undefined;

  constructor(options: EddyRecommenderOptions = {}) {
    this.name = options.name ?? 'eddy';
    this.negatives = options.negatives ?? 3;
    this.servedNegatives = options.servedNegatives ?? 2;
    this.onSample = options.onSample;
    this.random = mulberry32(options.seed ?? 7);
    const attributes = options.attributes ?? ['genres', 'genre', 'category'];
    this.store = new MemoryFeatureStore({ features: options.features ?? replayFeatureConfig(attributes, options.windows) });
    const recall = replayRecall({ attributes, ...(options.quotas && { quotas: options.quotas }), ...(options.covisitation && { covisitation: options.covisitation }) });
    this.recorder = new RecordingRecaller(recall.recaller);
    const bits = options.ftrl?.bits ?? 18;
    const learner = new FtrlLearner({ alpha: 0.5, l1: 0.5, l2: 1, ...options.ftrl, bits });
    this.ranker = new RecallFeatureRanker(this.recorder, ['covisit', 'session', 'embedding', 'popular', 'context'], new RowEncoder({ bits }), learner);
    this.serving = new ServingPipeline({
      store: this.store,
      recaller: this.recorder,
      rankers: { default: this.ranker },
      reranker: new Reranker(rerankSteps(recall.catalogue, recall.embeddings, attributes, options.rerank)),
      recallCount: options.recallCount ?? 100,
      clock: () => this.now,
    });
  }

  async recommend(userId: string, k: number, now: number, exclude: ReadonlySet<string>): Promise<string[]> {
    this.now = now;
    const response = await this.serving.recommend({ requestId: `eval-${++this.requests}`, userId, count: k, filters: { excludeItems: [...exclude] } });
    const served = response.items.map((item) => item.itemId);
    this.pending = { userId, ts: now, candidates: this.recorder.last?.candidates ?? [], served };
    return served;
  }

  async learn(event: InputEvent): Promise<void> {
    if (isBehaviourEvent(event) && isPositive(event)) await this.learnRanking(event);
    this.pending = undefined;
    this.store.updateSync([event]);
    if (event.type !== 'user') this.recorder.observe(event);
  }

  /** One positive (the event's item) and sampled negatives among the candidates recalled for it, as of just before it. */
  private async learnRanking(event: BehaviourEvent): Promise<void> {
    const pending = this.pending;
    if (!pending || pending.userId !== event.userId || pending.ts !== event.ts) return;
    const candidates = pending.candidates;
    if (!candidates.some((c) => c.itemId === event.itemId)) return;
    const items = [event.itemId];
    this.sampleInto(items, pending.served, this.servedNegatives);
    this.sampleInto(items, candidates.map((c) => c.itemId), this.negatives);
    const stored = await this.store.lookup(event.userId, items, { ts: event.ts });
    const rows = this.ranker.extend(stored, items);
    const encoder = this.ranker.encoder;
    for (let i = 0; i < items.length; i++) {
      const label = i === 0 ? 1 : 0;
      this.ranker.learner.learn({ features: encoder.encode(rows.names, rows.row(i), items[i]!), label });
      this.onSample?.({ userId: event.userId, itemId: items[i]!, ts: event.ts, label, names: stored.names, values: stored.row(i).slice() });
      this.samples++;
    }
  }

  /** Adds up to `count` distinct items of `pool` not yet in `items`. */
  private sampleInto(items: string[], pool: readonly string[], count: number): void {
    const target = items.length + Math.min(count, pool.length);
    for (let tries = 0; items.length < target && tries < 4 * count; tries++) {
      const pick = pool[Math.floor(this.random() * pool.length)]!;
      if (!items.includes(pick)) items.push(pick);
    }
  }
}
