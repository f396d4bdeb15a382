import { FeatureRows } from '../operators/features/rows.js';
import { servedFeatures, type FeatureLogSink } from '../operators/features/feature-log.js';
import type { FeatureStore } from '../connectors/feature-store.js';
import type { Ranker } from '../operators/rank.js';
import type { MergedCandidate } from '../operators/recall/merge.js';
import type { Recaller } from '../operators/recall/types.js';
import { explain, toRerankItems, type Reranker } from '../operators/rerank/reranker.js';
import type { RerankItem } from '../operators/rerank/types.js';
import type { Experiments } from '../models/ab/experiments.js';
import type { BehaviourEvent, RecommendationRequest, RecommendationResponse, RecommendedItem } from '../schema/events.js';

/** Time spent in each stage of one request, in milliseconds. */
export const SERVING_STAGES = ['recall', 'features', 'rank', 'rerank'] as const;
export type ServingStage = (typeof SERVING_STAGES)[number];
/** Milliseconds a request spent in each stage. */
export type StageTimings = Record<ServingStage, number>;

export interface ServingOptions {
  readonly store: FeatureStore;
  readonly recaller: Recaller;
  /** Rankers by name; `default` serves users outside any experiment variant that names another. */
  readonly rankers: Readonly<Record<string, Ranker>> & { readonly default: Ranker };
  readonly reranker: Reranker;
  /** Variants pick a ranker with the setting `ranker` and a candidate count with `recallCount`. */
  readonly experiments?: Experiments;
  /** The experiment requests are exposed to. Default: the first configured, if any. */
  readonly experimentId?: string;
  /** Candidates recalled and ranked per request. Default 100. */
  readonly recallCount?: number;
  /** History rings whose items count as consumed and are never recommended again. Default: every ring. */
  readonly consumedRings?: readonly (string | number)[];
  /** Receives the feature values each served item was scored with (point-in-time logging). */
  readonly featureLog?: FeatureLogSink;
  /** Receives the impressions of each response: the loop back into training. */
  readonly logImpressions?: (impressions: readonly BehaviourEvent[]) => void;
  readonly onTimings?: (timings: StageTimings, ranker: string) => void;
  /**
   * Share of slots given to exploration (epsilon-greedy): each slot is, with this probability, filled by a random
   * recalled candidate that did not make the list, so the ranker also learns about items it would never show.
   * Default 0.
   */
  readonly explorationShare?: number;
  /** Default Math.random. */
  readonly random?: () => number;
  /** Request time; event time of impressions. Default `Date.now`. */
  readonly clock?: () => number;
}

/** Feature-row buffers kept for reuse: about as many as requests in flight at once. */
const MAX_SPARE_ROWS = 64;

/**
 * request -> recall -> features -> rank -> re-rank -> response, each stage timed. Served items are logged as
 * impressions with their position and request id, and the features they were scored with are logged alongside, so
 * the samples job labels exactly what was shown with exactly what the ranker saw.
 */
export class ServingPipeline {
  private readonly clock: () => number;
  private readonly recallCount: number;
  private readonly spareRows: FeatureRows[] = [];

  constructor(private readonly options: ServingOptions) {
    this.clock = options.clock ?? Date.now;
    this.recallCount = options.recallCount ?? 100;
  }

  /** Every ranker, for swapping model versions in. */
  get rankers(): ServingOptions['rankers'] {
    return this.options.rankers;
  }

  async recommend(request: RecommendationRequest): Promise<RecommendationResponse> {
    const started = performance.now();
    const now = this.clock();
    const { experiments } = this.options;
    const experimentId = this.options.experimentId ?? experiments?.ids[0];
    const exposure = experiments && experimentId ? experiments.expose(experimentId, request.userId, { ts: now, requestId: request.requestId }) : undefined;
    const rankerName = typeof exposure?.settings.ranker === 'string' ? exposure.settings.ranker : 'default';
    const ranker = this.options.rankers[rankerName] ?? this.options.rankers.default;
    const recallCount = typeof exposure?.settings.recallCount === 'number' ? exposure.settings.recallCount : this.recallCount;

    const cache = this.options.store.cache;
    const recentItems = cache.recentItems(request.userId);
    const consumed = new Set<string>();
    for (const ring of this.options.consumedRings ?? cache.config.user.histories.map((h) => h.name)) for (const itemId of cache.recentItems(request.userId, ring)) consumed.add(itemId);

    let mark = performance.now();
    const timings: StageTimings = { recall: 0, features: 0, rank: 0, rerank: 0 };
    const candidates: MergedCandidate[] = request.candidates
      ? request.candidates
          .filter((itemId) => !consumed.has(itemId) && !request.filters?.excludeItems?.includes(itemId))
          .map((itemId) => ({ itemId, score: 0, source: 'request', sources: [{ source: 'request', score: 0, rank: 0 }] }))
      : (this.options.recaller.recall({
          userId: request.userId,
          count: Math.max(recallCount, request.count),
          recentItems,
          consumed,
          now,
          ...(request.context ? { context: request.context } : {}),
          ...(request.filters ? { filters: request.filters } : {}),
        }) as MergedCandidate[]);
    timings.recall = performance.now() - mark;

    mark = performance.now();
    const itemIds = candidates.map((c) => c.itemId);
    let leased: FeatureRows | undefined;
    try {
      const rows = (leased =
        itemIds.length > 0
          ? await this.options.store.lookup(request.userId, itemIds, { ts: now, ...(request.context ? { fields: request.context } : {}) }, this.spareRows.pop())
          : new FeatureRows(this.options.store.names, 0));
      timings.features = performance.now() - mark;

      mark = performance.now();
      const { scores, version } = itemIds.length > 0 ? await ranker.score(rows, itemIds) : { scores: new Float32Array(0), version: ranker.version };
      timings.rank = performance.now() - mark;

      mark = performance.now();
      const rerankItems = toRerankItems(candidates, scores, request.explain === true);
      const reranked = this.explore(this.options.reranker.rerank(rerankItems, { now, count: request.count, explain: request.explain === true }), rerankItems);
      timings.rerank = performance.now() - mark;

      // Only the returned items need their rows found again: a few scans of the candidate ids, not a map of them all.
      const rowOf = new Map(reranked.map((item) => [item.itemId, itemIds.indexOf(item.itemId)]));
      const items: RecommendedItem[] = reranked.map((item) => {
        const out: { itemId: string; score: number; source: string; explain?: Record<string, unknown> } = {
          itemId: item.itemId,
          score: item.score,
          source: item.source,
        };
        if (request.explain) {
          const row = rows.row(rowOf.get(item.itemId)!);
          out.explain = { ...explain(item), features: topFeatures(rows.names, row) };
        }
        return out;
      });

      this.logServed(request, now, items, rows, rowOf, exposure ? `${exposure.experimentId}/${exposure.variant}` : undefined);
      this.options.onTimings?.(timings, ranker.name);
      const response: RecommendationResponse = {
        requestId: request.requestId,
        userId: request.userId,
        items,
        model: `${ranker.name}@${version}`,
        variant: exposure ? `${exposure.experimentId}/${exposure.variant}` : 'default',
        tookMs: performance.now() - started,
      };
      return response;
    } finally {
      // Nothing keeps a request's rows once it is answered (the feature log copies the served ones): the next
      // request writes into them instead of allocating a typed array of its own.
      if (leased && this.spareRows.length < MAX_SPARE_ROWS && leased.names === this.options.store.names) this.spareRows.push(leased);
    }
  }

  /** Epsilon-greedy exploration over the slots of the final list, marking each explored item's source. */
  private explore(list: RerankItem[], pool: readonly RerankItem[]): RerankItem[] {
    const share = this.options.explorationShare ?? 0;
    if (share <= 0) return list;
    const random = this.options.random ?? Math.random;
    const shown = new Set(list.map((item) => item.itemId));
    const spare = pool.filter((item) => !shown.has(item.itemId));
    return list.map((item) => {
      if (spare.length === 0 || random() >= share) return item;
      const pick = spare.splice(Math.floor(random() * spare.length), 1)[0]!;
      return { ...pick, source: 'exploration', adjustments: [...pick.adjustments, { step: 'exploration', delta: 0, reason: `epsilon ${share}` }] };
    });
  }

  private logServed(
    request: RecommendationRequest,
    now: number,
    items: readonly RecommendedItem[],
    rows: FeatureRows,
    rowOf: ReadonlyMap<string, number>,
    variant: string | undefined,
  ): void {
    if (items.length === 0) return;
    if (this.options.featureLog) {
      const width = rows.width;
      const served = new FeatureRows(rows.names, items.length);
      // Element loops: a row view per item would allocate two typed arrays for each served item.
      items.forEach((item, i) => {
        for (let k = 0, from = rowOf.get(item.itemId)! * width, to = i * width; k < width; k++) served.values[to + k] = rows.values[from + k]!;
      });
      this.options.featureLog.push(servedFeatures(request.requestId, request.userId, now, items.map((i) => i.itemId), served));
    }
    this.options.logImpressions?.(
      items.map((item, position) => ({
        id: `${request.requestId}:${position}`,
        type: 'impression',
        userId: request.userId,
        itemId: item.itemId,
        ts: now,
        requestId: request.requestId,
        position,
        ...(variant ? { context: Object.assign(Object.create(null) as Record<string, string>, { variant }) } : {}),
      })),
    );
  }
}

/** The largest features of a row by magnitude: what an `explain` shows as the main features. */
function topFeatures(names: readonly string[], row: Float32Array, count = 8): Record<string, number> {
  return Object.fromEntries(
    [...row.keys()]
      .filter((j) => row[j] !== 0)
      .sort((a, b) => Math.abs(row[b]!) - Math.abs(row[a]!))
      .slice(0, count)
      .map((j) => [names[j]!, row[j]!]),
  );
}
