import { hit, ndcg, reciprocalRank } from './ranking.js';

/** A model's quality over a set of scored events. */
export interface QualityFigures {
  /** Scored events. */
  readonly evaluated: number;
  /** Hit rate at K: share of scored events whose item was in the list. */
  readonly hr: number;
  readonly ndcg: number;
  /** Mean reciprocal rank at K (an item past K counts zero). */
  readonly mrr: number;
  /** Distinct items recommended over the catalogue's size. */
  readonly coverage: number;
  /** Mean self-information (bits) of the recommended items, see `selfInformation`. */
  readonly novelty: number;
}

/** Sums one model's per-event figures. */
export class QualityAccumulator {
  private evaluated = 0;
  private hits = 0;
  private ndcgSum = 0;
  private rrSum = 0;
  private noveltySum = 0;
  private listed = 0;
  private readonly recommended = new Set<string>();

  /** One scored event: the held-out item's rank (-1 if absent), the list, and the summed novelty of its items. */
  add(rank: number, items: readonly string[], novelty: number): void {
    this.evaluated++;
    this.hits += hit(rank);
    this.ndcgSum += ndcg(rank);
    this.rrSum += reciprocalRank(rank);
    this.noveltySum += novelty;
    this.listed += items.length;
    for (const item of items) this.recommended.add(item);
  }

  figures(catalogueSize: number): QualityFigures {
    const n = Math.max(this.evaluated, 1);
    return {
      evaluated: this.evaluated,
      hr: this.hits / n,
      ndcg: this.ndcgSum / n,
      mrr: this.rrSum / n,
      coverage: catalogueSize === 0 ? 0 : this.recommended.size / catalogueSize,
      novelty: this.listed === 0 ? 0 : this.noveltySum / this.listed,
    };
  }
}

/** How scored events are grouped over time: every `size` scored events, or every `ms` of event time. */
export type BucketSpec = { readonly by: 'events'; readonly size: number } | { readonly by: 'time'; readonly ms: number };

export const DEFAULT_BUCKETS: BucketSpec = { by: 'events', size: 1000 };

export interface OverTimeBucket {
  readonly index: number;
  /** Event time (ms) of the bucket's first and last scored events. */
  readonly startTs: number;
  readonly endTs: number;
  /** Scored events before this bucket, so charts can use it as an x axis. */
  readonly evaluatedBefore: number;
  readonly models: Record<string, QualityFigures>;
}

interface OpenBucket {
  readonly index: number;
  readonly startTs: number;
  endTs: number;
  readonly evaluatedBefore: number;
  count: number;
  readonly models: Map<string, QualityAccumulator>;
}

/** Per-bucket figures for each model, so a chart shows whether a model improves as it learns. */
export class MetricsOverTime {
  private readonly closed: OverTimeBucket[] = [];
  private open: OpenBucket | undefined;
  private evaluated = 0;
  private firstTs: number | undefined;

  constructor(
    private readonly spec: BucketSpec,
    private readonly modelNames: readonly string[],
  ) {
    if (spec.by === 'events' && !(Number.isInteger(spec.size) && spec.size > 0)) throw new RangeError(`bucket size must be a positive integer, got ${spec.size}`);
    if (spec.by === 'time' && !(spec.ms > 0)) throw new RangeError(`bucket width must be positive, got ${spec.ms} ms`);
  }

  /** The accumulators of the bucket a scored event at `ts` falls in; `catalogueSize` closes the bucket it leaves. */
  bucketFor(ts: number, catalogueSize: number): ReadonlyMap<string, QualityAccumulator> {
    this.firstTs ??= ts;
    const index = this.spec.by === 'events' ? Math.floor(this.evaluated / this.spec.size) : Math.floor((ts - this.firstTs) / this.spec.ms);
    if (!this.open || this.open.index !== index) {
      this.close(catalogueSize);
      this.open = {
        index,
        startTs: ts,
        endTs: ts,
        evaluatedBefore: this.evaluated,
        count: 0,
        models: new Map(this.modelNames.map((name) => [name, new QualityAccumulator()])),
      };
    }
    this.open.endTs = ts;
    this.open.count++;
    this.evaluated++;
    return this.open.models;
  }

  /** Closes the open bucket; later events open a new one. */
  close(catalogueSize: number): void {
    const open = this.open;
    if (!open) return;
    this.open = undefined;
    const models: Record<string, QualityFigures> = {};
    for (const [name, acc] of open.models) models[name] = acc.figures(catalogueSize);
    this.closed.push({ index: open.index, startTs: open.startTs, endTs: open.endTs, evaluatedBefore: open.evaluatedBefore, models });
  }

  buckets(): OverTimeBucket[] {
    return [...this.closed];
  }
}
