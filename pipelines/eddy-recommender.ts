import { MemoryFeatureStore } from '../connectors/memory-store.js';
import { ItemEmbeddings } from '../models/embeddings.js';
import { isPositive } from '../models/evaluation/positive.js';
import type { Recommender } from '../models/evaluation/recommender.js';
import type { Learner } from '../models/learner.js';
import { FtrlLearner, type FtrlOptions } from '../models/learners/ftrl.js';
import { mulberry32, type Random } from '../models/random.js';
import { RowEncoder } from '../models/row-features.js';
import type { CountWindow, FeatureConfig } from '../operators/features/config.js';
import { FeatureRows } from '../operators/features/rows.js';
import { OnlineRanker, type Ranker, type RankerScores } from '../operators/rank.js';
import { ItemCatalogue, valuesOf } from '../operators/recall/catalogue.js';
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
 * The ranker sees the store's feature rows plus what recall and the catalogue knew about each candidate
 * (`RecallFeatureRanker`): each source's normalised score, raw score and rank, and how the candidate's release year,
 * popularity and genres compare with the user's last items. Most of the signal on MovieLens is co-visitation over
 * the user's last ratings, both within a day (`covisit`, cosine-normalised so that blockbusters do not neighbour
 * everything, pairs weighted by closeness in the sequence) and within one sitting (`session`, the last 3 within an
 * hour, weighted towards what was rated after an item rather than before), since users rate in sessions and items
 * rated close together are the most related.
 */

export interface EddyRecommenderOptions {
  /** Default `eddy`. */
  readonly name?: string;
  /** Candidates recalled and ranked per request. Default 100. */
  readonly recallCount?: number;
  /**
   * Relative shares of the merged candidates. Default covisit 6, session 3, embedding 0, popular 2, recent 1: on
   * MovieLens the online item2vec neighbours found little that co-visitation did not, at a cost in time.
   */
  readonly quotas?: Partial<Record<EddyRecallSource, number>>;
  /** Co-visitation settings. Default: pairs among the last 10 ratings within 1 day, recall over the last 20 items. */
  readonly covisitation?: CoVisitationRecallerOptions;
  /** Session co-visitation settings. Default: pairs among the last 3 ratings within 1 hour, recall over the last 5. */
  readonly session?: CoVisitationRecallerOptions;
  /**
   * Half-life of the popularity behind the popular and context sources and the popularity features. Default 365
   * days: MovieLens has a few ratings a day, too few for a month to say what is popular.
   */
  readonly popularityHalfLifeMs?: number;
  /** Re-ranking steps. Default none: on a replay, freshness and diversity trade accuracy for other goals. */
  readonly rerank?: { readonly freshness?: boolean; readonly mmr?: boolean; readonly capPerAttribute?: number };
  /** Negatives sampled among the recalled candidates per positive. Default 5. */
  readonly negatives?: number;
  /** Negatives sampled among the items served for that request (the hard ones). Default 3. */
  readonly servedNegatives?: number;
  /** Default: alpha 0.3, l1 0.5, l2 1, 18 bits. */
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
/** Rank steps of the recall features: whether a source ranked the candidate among its first 1, 3, 10 or 30. */
const RANK_STEPS = [1, 3, 10, 30] as const;
/** Steps of the year features (years since release, gap to the recent items' years). */
const YEAR_STEPS = [1, 2, 4, 8, 16] as const;
/** Steps of the gap in log popularity to the recent items'. */
const POPULARITY_STEPS = [0.25, 0.5, 1, 2] as const;

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
  popularityHalfLifeMs?: number;
  attributes: readonly string[];
}) {
  const quotas = { covisit: 6, session: 3, embedding: 0, popular: 2, recent: 1, ...options.quotas };
  const catalogue = new ItemCatalogue();
  const popular = new PopularityRecaller({ catalogue, attributes: options.attributes, halfLifeMs: options.popularityHalfLifeMs ?? 365 * DAY });
  const covisitation = new CoVisitationRecaller({
    historyLength: 10,
    windowMs: DAY,
    maxRecent: 20,
    neighbours: 100,
    halfLifeMs: 365 * DAY,
    similarity: 'cosine',
    distanceDecay: 0.8,
    ...options.covisitation,
  });
  // The same co-visitation over the last few ratings of one sitting only: what was rated together just now.
  const session = new CoVisitationRecaller({
    name: 'session',
    historyLength: 3,
    windowMs: HOUR,
    maxRecent: 5,
    recencyDecay: 0.6,
    neighbours: 100,
    halfLifeMs: 365 * DAY,
    backwardWeight: 0.3,
    ...options.session,
  });
  const embeddings = new ItemEmbeddings({ dim: 16 });
  const embedding = new EmbeddingRecaller({ embeddings });
  const sources = [
    { recaller: covisitation, quota: quotas.covisit },
    { recaller: session, quota: quotas.session },
    { recaller: embedding, quota: quotas.embedding },
    { recaller: popular, quota: quotas.popular },
    { recaller: new RecentContextRecaller({ catalogue, popularity: popular, attributes: options.attributes, resurfaceWeight: 0 }), quota: quotas.recent },
  ].filter((source) => source.quota > 0);
  // A source without a share is left out altogether, so that it does not learn for nothing.
  const recaller = new MultiRecaller({ catalogue, sources });
  return { catalogue, recaller, covisitation, embeddings, popular, sources: sources.map((source) => source.recaller.name) };
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

/** What `RecallFeatureRanker` reads besides recall, for features of every candidate. */
export interface RecallFeatureSignals {
  /** Default `stream`. */
  readonly version?: string;
  /** Popularity of an item at a time (recall's popular list holds only the top items). */
  readonly popularity?: (itemId: string, now: number) => number;
  /** Item metadata, for the release-year features. */
  readonly catalogue?: ItemCatalogue;
  /** The numeric item field holding the release year. Default `year`. */
  readonly yearField?: string;
  /** Item fields whose values the recent items are compared on. Default none. */
  readonly attributes?: readonly string[];
}

/**
 * An `OnlineRanker` over the store's rows extended with what recall and the catalogue know about each candidate:
 * - for each source, the candidate's score relative to that source's best, its raw score, 1 / (1 + rank) and whether
 *   it was among the source's first 1, 3, 10, 30; plus how many sources found it;
 * - its popularity, and how far its log popularity is from the user's last 10 items' (some users rate blockbusters,
 *   some rarities);
 * - years since its release, and how far its release year is from the last 10 items' mean and from the last item's
 *   (a sitting tends to stay in one era, and a user rating in 2015 rates recent films);
 * - the share of its attribute values (genres) among the last 10 items'.
 * Distances come both as values and as steps (below 1, 2, 4... years), since a linear model reads a value only
 * monotonically.
 */
export class RecallFeatureRanker implements Ranker {
  readonly online: OnlineRanker;
  private cachedNames: { base: readonly string[]; all: string[] } | undefined;

  constructor(
    private readonly recorder: RecordingRecaller,
    private readonly sources: readonly string[],
    readonly encoder: RowEncoder,
    readonly learner: Learner,
    private readonly signals: RecallFeatureSignals = {},
  ) {
    this.online = new OnlineRanker(learner.kind, encoder, learner, signals.version ?? 'stream');
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
    const request = this.recorder.last?.request;
    const now = request?.now ?? 0;
    const nowYear = new Date(now).getUTCFullYear();
    const profile = this.recentProfile(request?.recentItems ?? [], now);
    const width = names.length;
    const base = rows.width;
    for (let i = 0; i < rows.count; i++) {
      out.values.set(rows.row(i), i * width);
      let at = i * width + base;
      const itemId = itemIds[i]!;
      const popularity = Math.log1p(this.signals.popularity?.(itemId, now) ?? 0);
      out.values[at++] = popularity;
      const popularityGap = profile.popularity === undefined ? undefined : Math.abs(popularity - profile.popularity);
      out.values[at++] = popularityGap === undefined ? 0 : popularityGap + 1;
      for (const limit of POPULARITY_STEPS) out.values[at++] = popularityGap !== undefined && popularityGap < limit ? 1 : 0;
      const year = this.yearOf(itemId);
      const age = year === undefined ? undefined : Math.max(0, nowYear - year);
      const gap = year === undefined || profile.year === undefined ? undefined : Math.abs(year - profile.year);
      out.values[at++] = age === undefined ? 0 : age + 1;
      for (const limit of YEAR_STEPS) out.values[at++] = age !== undefined && age < limit ? 1 : 0;
      out.values[at++] = gap === undefined ? 0 : gap + 1;
      for (const limit of YEAR_STEPS) out.values[at++] = gap !== undefined && gap < limit ? 1 : 0;
      const lastGap = year === undefined || profile.lastYear === undefined ? undefined : Math.abs(year - profile.lastYear);
      for (const limit of YEAR_STEPS) out.values[at++] = lastGap !== undefined && lastGap < limit ? 1 : 0;
      let overlap = 0;
      for (const value of this.attributeValues(itemId)) overlap += profile.attributes.get(value) ?? 0;
      out.values[at++] = overlap;
      const candidate = byItem?.get(itemIds[i]!);
      if (!candidate) continue;
      out.values[at++] = candidate.sources.length;
      for (const source of this.sources) {
        const hit = candidate.sources.find((h) => h.source === source);
        const top = tops.get(source) ?? 0;
        out.values[at++] = hit && top > 0 ? hit.score / top : 0;
        out.values[at++] = hit ? 1 / (1 + hit.rank) : 0;
        out.values[at++] = hit ? hit.score : 0;
        // A linear model reads a rank only through these steps: being a source's first pick is worth more than
        // 1 / (1 + rank) says, and being its 30th is worth less.
        for (const limit of RANK_STEPS) out.values[at++] = hit && hit.rank < limit ? 1 : 0;
      }
    }
    return out;
  }

  private yearOf(itemId: string): number | undefined {
    const year = this.signals.catalogue?.get(itemId)?.fields[this.signals.yearField ?? 'year'];
    return typeof year === 'number' && Number.isFinite(year) ? year : undefined;
  }

  private attributeValues(itemId: string): string[] {
    const fields = this.signals.catalogue?.get(itemId)?.fields;
    if (!fields) return [];
    return (this.signals.attributes ?? []).flatMap((field) => valuesOf(fields[field]).map((value) => `${field}=${value}`));
  }

  /**
   * What the user's last 10 items have in common: their mean release year and log popularity (where known), and
   * each attribute value's share among their values; and the release year of the very last one.
   */
  private recentProfile(
    recent: readonly string[],
    now: number,
  ): { year: number | undefined; lastYear: number | undefined; popularity: number | undefined; attributes: Map<string, number> } {
    let years = 0;
    let yearCount = 0;
    let popularity = 0;
    const attributes = new Map<string, number>();
    let values = 0;
    const count = Math.min(recent.length, 10);
    for (let k = 0; k < count; k++) {
      const year = this.yearOf(recent[k]!);
      if (year !== undefined) {
        years += year;
        yearCount++;
      }
      popularity += Math.log1p(this.signals.popularity?.(recent[k]!, now) ?? 0);
      for (const value of this.attributeValues(recent[k]!)) {
        attributes.set(value, (attributes.get(value) ?? 0) + 1);
        values++;
      }
    }
    for (const [value, n] of attributes) attributes.set(value, n / values);
    const lastYear = recent.length > 0 ? this.yearOf(recent[0]!) : undefined;
    return { year: yearCount > 0 ? years / yearCount : undefined, lastYear, popularity: count > 0 && this.signals.popularity ? popularity / count : undefined, attributes };
  }

  /** Each source's best score in the latest recall, which normalises its scores. */
  private topScores(): Map<string, number> {
    const tops = new Map<string, number>();
    for (const c of this.recorder.last?.candidates ?? []) for (const h of c.sources) if (h.rank === 0) tops.set(h.source, h.score);
    return tops;
  }

  private namesFor(base: readonly string[]): string[] {
    if (this.cachedNames?.base !== base) {
      const extra = [
        'item_popularity',
        'item_popularity_gap_to_recent',
        ...POPULARITY_STEPS.map((limit) => `item_popularity_gap_to_recent_below${limit}`),
        'item_years_since_release',
        ...YEAR_STEPS.map((limit) => `item_years_since_release_below${limit}`),
        'item_year_gap_to_recent',
        ...YEAR_STEPS.map((limit) => `item_year_gap_to_recent_below${limit}`),
        ...YEAR_STEPS.map((limit) => `item_year_gap_to_last_below${limit}`),
        'item_attribute_share_in_recent',
        'recall_sources',
        ...this.sources.flatMap((s) => [`recall_${s}_score`, `recall_${s}_rank`, `recall_${s}_raw`, ...RANK_STEPS.map((limit) => `recall_${s}_top${limit}`)]),
      ];
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
    this.negatives = options.negatives ?? 5;
    this.servedNegatives = options.servedNegatives ?? 3;
    this.onSample = options.onSample;
    this.random = mulberry32(options.seed ?? 7);
    const attributes = options.attributes ?? ['genres', 'genre', 'category'];
    this.store = new MemoryFeatureStore({ features: options.features ?? replayFeatureConfig(attributes, options.windows) });
    const recall = replayRecall({ attributes, ...(options.quotas && { quotas: options.quotas }), ...(options.covisitation && { covisitation: options.covisitation }), ...(options.session && { session: options.session }), ...(options.popularityHalfLifeMs !== undefined && { popularityHalfLifeMs: options.popularityHalfLifeMs }) });
    this.recorder = new RecordingRecaller(recall.recaller);
    const bits = options.ftrl?.bits ?? 18;
    const learner = new FtrlLearner({ alpha: 0.3, l1: 0.5, l2: 1, ...options.ftrl, bits });
    const popular = recall.popular;
    this.ranker = new RecallFeatureRanker(this.recorder, recall.sources, new RowEncoder({ bits }), learner, {
      popularity: (itemId, now) => popular.popularity(itemId, now),
      catalogue: recall.catalogue,
      attributes,
    });
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
