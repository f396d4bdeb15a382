import type { ItemEmbeddings } from '../../models/embeddings.js';
import { UserHistories } from './histories.js';
import { DEFAULT_EVENT_WEIGHTS, eventWeight, isItemEvent, type EventWeights, type RecallEvent, type RecallRequest, type Recaller, type ScoredCandidate } from './types.js';
import { ExactIndex, HnswIndex, hnswAvailable, type HnswOptions, type VectorIndex } from './vector-index.js';

/**
 * Embedding nearest neighbours: the user vector is the recency-weighted mean of their recent items' unit vectors,
 * and candidates are the items whose unit vectors have the largest dot product with it (cosine similarity).
 *
 * Online, each interaction is a co-occurrence with the user's previous interactions within `windowMs`, and trains
 * the embeddings one skip-gram step per pair. Changed vectors reach the search index at the next refresh: every
 * request for the exact index, at most every `refreshIntervalMs` of request time for HNSW, whose updates cost more.
 * The index is exact until the catalogue reaches `hnswThreshold` items, then HNSW; it stays exact where the optional
 * hnswlib-node package is not built.
 */

export interface EmbeddingRecallerOptions {
  readonly embeddings: ItemEmbeddings;
  /** Default `embedding`. */
  readonly name?: string;
  /** Catalogue size from which an HNSW index replaces exact search. Default 5,000. */
  readonly hnswThreshold?: number;
  readonly hnsw?: HnswOptions;
  /**
   * Items added per refresh to an HNSW index that the catalogue's online growth called for (one insertion costs about
   * 0.1 ms at 10k items). Default 200.
   */
  readonly hnswBuildBatch?: number;
  /** Changed vectors written to an HNSW index per refresh; the rest wait for the next one. Default 100. */
  readonly hnswUpdatesPerRefresh?: number;
  /**
   * An HNSW index is updated only when a vector has moved by at least this cosine distance from its indexed
   * version (new items always go in). Default 0.02.
   */
  readonly hnswDrift?: number;
  /** Recent items that make up the user vector. Default 10. */
  readonly maxRecent?: number;
  /** The k-th most recent item weighs `recencyDecay^k`. Default 0.8. */
  readonly recencyDecay?: number;
  /** Train on new co-occurrences. Default true. */
  readonly online?: boolean;
  /** Default `DEFAULT_EVENT_WEIGHTS`; events of weight 0 do not train. */
  readonly weights?: EventWeights;
  /** Earlier interactions paired with a new one. Default 5. */
  readonly historyLength?: number;
  /** Default 1 hour. */
  readonly windowMs?: number;
  /** Default 100,000. */
  readonly maxUsers?: number;
  /** Least request time between HNSW refreshes. Default 1000. */
  readonly refreshIntervalMs?: number;
}

export class EmbeddingRecaller implements Recaller {
  readonly name: string;
  readonly embeddings: ItemEmbeddings;
  private readonly hnswThreshold: number;
  private readonly hnswOptions: HnswOptions;
  private readonly maxRecent: number;
  private readonly recencyDecay: number;
  private readonly online: boolean;
  private readonly weights: EventWeights;
  private readonly windowMs: number;
  private readonly refreshIntervalMs: number;
  private readonly histories: UserHistories;
  private index: VectorIndex;
  /** An HNSW index being filled with labels below `next`; it serves once it holds them all. */
  private pending: { index: HnswIndex; next: number } | undefined;
  private readonly hnswBuildBatch: number;
  private unit: Float32Array;
  /** Embedding version up to which changed vectors have been collected into `dirty`. */
  private scannedVersion = -1;
  /** Labels whose vectors changed and are not yet in the index. */
  private readonly dirty = new Set<number>();
  /** 1 for labels the index holds. */
  private indexed = new Uint8Array(0);
  private readonly scratch: Float32Array;
  private readonly hnswUpdatesPerRefresh: number;
  private readonly hnswDrift: number;
  private lastRefresh = -Infinity;
  private readonly query: Float32Array;

  constructor(options: EmbeddingRecallerOptions) {
    this.name = options.name ?? 'embedding';
    this.embeddings = options.embeddings;
    this.hnswThreshold = options.hnswThreshold ?? 5_000;
    this.hnswOptions = options.hnsw ?? {};
    this.hnswBuildBatch = options.hnswBuildBatch ?? 200;
    this.hnswUpdatesPerRefresh = options.hnswUpdatesPerRefresh ?? 100;
    this.hnswDrift = options.hnswDrift ?? 0.02;
    this.maxRecent = options.maxRecent ?? 10;
    this.recencyDecay = options.recencyDecay ?? 0.8;
    this.online = options.online ?? true;
    this.weights = options.weights ?? DEFAULT_EVENT_WEIGHTS;
    this.windowMs = options.windowMs ?? 3600_000;
    this.refreshIntervalMs = options.refreshIntervalMs ?? 1000;
    this.histories = new UserHistories({ length: options.historyLength ?? 5, maxUsers: options.maxUsers ?? 100_000 });
    const dim = this.embeddings.dim;
    this.query = new Float32Array(dim);
    this.scratch = new Float32Array(dim);
    this.unit = new Float32Array(dim);
    this.index = new ExactIndex(dim, Math.max(1024, this.embeddings.size));
    this.refresh();
    this.completeIndex();
  }

  /** Finishes an HNSW build at once (as the constructor does for embeddings trained offline, before serving). */
  completeIndex(): void {
    const pending = this.pending;
    if (!pending) return;
    const dim = this.embeddings.dim;
    for (let i = pending.next; i < this.embeddings.size; i++) if (this.indexed[i]) pending.index.upsert(i, this.unit.subarray(i * dim, (i + 1) * dim));
    this.index = pending.index;
    this.pending = undefined;
  }

  /** Whether an HNSW index is being built in the background of refreshes. */
  get building(): boolean {
    return this.pending !== undefined;
  }

  /** `exact` or `hnsw`: the index that serves searches now. */
  get indexKind(): VectorIndex['kind'] {
    return this.index.kind;
  }

  observe(event: RecallEvent): void {
    if (!this.online || isItemEvent(event)) return;
    const weight = eventWeight(event, this.weights);
    if (weight === 0) return;
    const previous = this.histories.push(event.userId, { itemId: event.itemId, ts: event.ts, weight });
    this.embeddings.ensure(event.itemId);
    for (const entry of previous) {
      if (Math.abs(event.ts - entry.ts) <= this.windowMs) this.embeddings.trainPair(entry.itemId, event.itemId);
    }
  }

  /**
   * Pushes changed vectors into the index. Once the catalogue grows to `hnswThreshold`, an HNSW index is built
   * alongside, `hnswBuildBatch` items per refresh so no single request pays for the whole build, and replaces the
   * exact index when it holds every item. Refreshes run at most every `refreshIntervalMs` while it builds. Updates
   * to an HNSW index are rationed by `hnswUpdatesPerRefresh` and `hnswDrift`.
   */
  refresh(): void {
    const embeddings = this.embeddings;
    const dim = embeddings.dim;
    if (this.unit.length < embeddings.size * dim) {
      const capacity = Math.max(embeddings.size, 1024) * 2;
      const unit = new Float32Array(capacity * dim);
      unit.set(this.unit);
      this.unit = unit;
      const indexed = new Uint8Array(capacity);
      indexed.set(this.indexed);
      this.indexed = indexed;
    }
    if (embeddings.currentVersion !== this.scannedVersion) {
      for (let i = 0; i < embeddings.size; i++) if (embeddings.versionAt(i) > this.scannedVersion) this.dirty.add(i);
      this.scannedVersion = embeddings.currentVersion;
    }
    const hnsw = this.index.kind === 'hnsw';
    let budget = hnsw ? this.hnswUpdatesPerRefresh : Infinity;
    for (const label of this.dirty) {
      if (budget <= 0) break;
      this.dirty.delete(label);
      const current = this.normalised(label);
      const target = this.unit.subarray(label * dim, (label + 1) * dim);
      if (hnsw && this.indexed[label]) {
        let dot = 0;
        for (let d = 0; d < dim; d++) dot += current[d]! * target[d]!;
        // A graph update costs far more than a small drift in similarity is worth.
        if (1 - dot < this.hnswDrift) continue;
      }
      target.set(current);
      this.indexed[label] = 1;
      this.index.upsert(label, target);
      if (this.pending && label < this.pending.next) this.pending.index.upsert(label, target);
      budget--;
    }
    if (this.index.kind === 'exact' && !this.pending && embeddings.size >= this.hnswThreshold && hnswAvailable()) {
      this.pending = { index: new HnswIndex(dim, embeddings.size * 2, this.hnswOptions), next: 0 };
    }
    const pending = this.pending;
    if (!pending) return;
    const end = Math.min(embeddings.size, pending.next + this.hnswBuildBatch);
    for (let i = pending.next; i < end; i++) if (this.indexed[i]) pending.index.upsert(i, this.unit.subarray(i * dim, (i + 1) * dim));
    pending.next = end;
    if (end === embeddings.size && this.dirty.size === 0) {
      this.index = pending.index;
      this.pending = undefined;
    }
  }

  /** The item's current vector scaled to unit length, in a scratch buffer. */
  private normalised(label: number): Float32Array {
    const dim = this.embeddings.dim;
    const vector = this.embeddings.vectorAt(label);
    const out = this.scratch;
    let norm = 0;
    for (let d = 0; d < dim; d++) norm += vector[d]! * vector[d]!;
    const scale = norm > 0 ? 1 / Math.sqrt(norm) : 0;
    for (let d = 0; d < dim; d++) out[d] = vector[d]! * scale;
    return out;
  }

  recall(request: RecallRequest): ScoredCandidate[] {
    if (request.count <= 0) return [];
    this.refreshIfDue(request.now);
    const own = new Set<string>();
    const weights: number[] = [];
    const labels: number[] = [];
    let recency = 1;
    for (let k = 0; k < request.recentItems.length && labels.length < this.maxRecent; k++) {
      const itemId = request.recentItems[k]!;
      own.add(itemId);
      const label = this.embeddings.indexOf(itemId);
      if (label !== undefined && label * this.embeddings.dim < this.unit.length) {
        labels.push(label);
        weights.push(recency);
      }
      recency *= this.recencyDecay;
    }
    if (!this.userVector(labels, weights)) return [];
    return this.nearest(this.query, request.count, own, request.accept);
  }

  /** Items closest to one item (for "similar items"); empty for unknown items. */
  similar(itemId: string, count: number, now: number, accept?: (itemId: string) => boolean): ScoredCandidate[] {
    this.refreshIfDue(now);
    const label = this.embeddings.indexOf(itemId);
    if (label === undefined || !this.userVector([label], [1])) return [];
    return this.nearest(this.query, count, new Set([itemId]), accept);
  }

  private refreshIfDue(now: number): void {
    if ((this.index.kind === 'exact' && !this.pending) || now - this.lastRefresh >= this.refreshIntervalMs) {
      this.refresh();
      this.lastRefresh = now;
    }
  }

  /** Writes the normalised weighted mean of the labels' unit vectors into `this.query`; false when it is zero. */
  private userVector(labels: readonly number[], weights: readonly number[]): boolean {
    const dim = this.embeddings.dim;
    const query = this.query;
    query.fill(0);
    for (let k = 0; k < labels.length; k++) {
      const base = labels[k]! * dim;
      const weight = weights[k]!;
      for (let d = 0; d < dim; d++) query[d]! += weight * this.unit[base + d]!;
    }
    let norm = 0;
    for (let d = 0; d < dim; d++) norm += query[d]! * query[d]!;
    if (norm === 0) return false;
    const scale = 1 / Math.sqrt(norm);
    for (let d = 0; d < dim; d++) query[d]! *= scale;
    return true;
  }

  private nearest(query: Float32Array, count: number, skip: ReadonlySet<string>, accept?: (itemId: string) => boolean): ScoredCandidate[] {
    let k = count + skip.size + 8;
    for (;;) {
      const hits = this.index.search(query, k);
      const out: ScoredCandidate[] = [];
      for (let i = 0; i < hits.labels.length && out.length < count; i++) {
        const itemId = this.embeddings.idAt(hits.labels[i]!);
        if (skip.has(itemId) || (accept && !accept(itemId))) continue;
        out.push({ itemId, score: hits.scores[i]!, source: this.name });
      }
      // Filters may reject many hits: widen the search until enough pass or the whole index was searched.
      if (out.length >= count || hits.labels.length < k || k >= this.index.size) return out;
      k = Math.min(this.index.size, k * 4);
    }
  }
}
