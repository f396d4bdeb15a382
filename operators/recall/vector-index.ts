import { createRequire } from 'node:module';
import type * as Hnswlib from 'hnswlib-node';

/**
 * Maximum inner product search over unit vectors (so scores are cosine similarities), by label. Two
 * implementations behind one interface: exact dot products, which win on small catalogues, and an HNSW graph from
 * hnswlib-node for large ones. hnswlib-node is optional: without it, exact search runs in JavaScript and only the
 * HNSW index is unavailable.
 */

export interface VectorHits {
  readonly labels: number[];
  readonly scores: number[];
}

export interface VectorIndex {
  readonly kind: 'exact' | 'hnsw';
  readonly size: number;
  /** Adds or replaces the vector of `label` (labels are dense small integers). */
  upsert(label: number, vector: Float32Array): void;
  /** The `k` best labels by dot product, best first. */
  search(query: Float32Array, k: number): VectorHits;
}

/**
 * Inserts a hit into `hits`, a list of at most `k` kept sorted best first (a short list next to the catalogue, so
 * most items never get here), and returns the score an item must now beat.
 */
function insert(hits: VectorHits, k: number, label: number, dot: number): number {
  const { labels, scores } = hits;
  let i = labels.length < k ? labels.length : k - 1;
  if (labels.length < k) {
    labels.push(label);
    scores.push(dot);
  }
  while (i > 0 && scores[i - 1]! < dot) {
    labels[i] = labels[i - 1]!;
    scores[i] = scores[i - 1]!;
    i--;
  }
  labels[i] = label;
  scores[i] = dot;
  return labels.length >= k ? scores[k - 1]! : -Infinity;
}

/**
 * hnswlib-node, loaded on first use; undefined when it is not built for this Node version (it is an optional
 * dependency).
 */
type HnswlibLoad = { readonly module: typeof Hnswlib; readonly error?: undefined } | { readonly module?: undefined; readonly error: unknown };
let hnswlib: HnswlibLoad | undefined;
function loadHnswlib(): HnswlibLoad {
  if (!hnswlib) {
    try {
      hnswlib = { module: createRequire(import.meta.url)('hnswlib-node') as typeof Hnswlib };
    } catch (error) {
      hnswlib = { error };
    }
  }
  return hnswlib;
}

/** Whether hnswlib-node is built for this Node version, so `HnswIndex` can be created. */
export function hnswAvailable(): boolean {
  return loadHnswlib().module !== undefined;
}

export interface ExactIndexOptions {
  /**
   * Compute the dot products in hnswlib-node's brute-force index (SIMD, about 2.5 times faster than JavaScript at 5,000
   * items of 16 dimensions) when the package is built; false always uses the JavaScript loop. Default true.
   */
  readonly native?: boolean;
}

export class ExactIndex implements VectorIndex {
  readonly kind = 'exact';
  /** Float64 copies of the float32 vectors: the same values, read without a conversion per multiply-add. */
  private vectors: Float64Array;
  private present: Uint8Array;
  private count = 0;
  private extent = 0;
  private readonly native: NativeBruteForce | undefined;

  constructor(readonly dim: number, capacity = 1024, options: ExactIndexOptions = {}) {
    this.vectors = new Float64Array(capacity * dim);
    this.present = new Uint8Array(capacity);
    const hnsw = options.native === false ? undefined : loadHnswlib().module;
    this.native = hnsw ? new NativeBruteForce(hnsw, dim, capacity) : undefined;
  }

  get size(): number {
    return this.count;
  }

  /** Whether searches run in hnswlib-node rather than in JavaScript. */
  get isNative(): boolean {
    return this.native !== undefined;
  }

  upsert(label: number, vector: Float32Array): void {
    if (label >= this.present.length) this.grow(Math.max(label + 1, this.present.length * 2));
    this.vectors.set(vector.subarray(0, this.dim), label * this.dim);
    if (!this.present[label]) {
      this.present[label] = 1;
      this.count++;
    }
    if (label >= this.extent) this.extent = label + 1;
    this.native?.upsert(label, this.vectors, this.present);
  }

  search(query: Float32Array, k: number): VectorHits {
    if (this.native) return this.native.search(query, Math.min(k, this.count));
    const hits: VectorHits = { labels: [], scores: [] };
    if (k <= 0) return hits;
    if (this.dim === 16) this.search16(query, k, hits);
    else this.searchAny(query, k, hits);
    return hits;
  }

  private searchAny(query: Float32Array, k: number, hits: VectorHits): void {
    const { dim, vectors, present } = this;
    // Four independent sums let the CPU overlap the multiply-adds; the tail loop covers dimensions not a multiple of 4.
    const blocked = dim - (dim % 4);
    let floor = -Infinity;
    for (let label = 0, base = 0; label < this.extent; label++, base += dim) {
      if (!present[label]) continue;
      let s0 = 0;
      let s1 = 0;
      let s2 = 0;
      let s3 = 0;
      let d = 0;
      for (; d < blocked; d += 4) {
        s0 += query[d]! * vectors[base + d]!;
        s1 += query[d + 1]! * vectors[base + d + 1]!;
        s2 += query[d + 2]! * vectors[base + d + 2]!;
        s3 += query[d + 3]! * vectors[base + d + 3]!;
      }
      for (; d < dim; d++) s0 += query[d]! * vectors[base + d]!;
      const dot = s0 + s1 + s2 + s3;
      if (hits.labels.length < k || dot > floor) floor = insert(hits, k, label, dot);
    }
  }

  /** `searchAny` for the default dimension, written out: the same sums in the same order, without the loop control. */
  private search16(query: Float32Array, k: number, hits: VectorHits): void {
    const { vectors, present } = this;
    const q0 = query[0]!, q1 = query[1]!, q2 = query[2]!, q3 = query[3]!, q4 = query[4]!, q5 = query[5]!, q6 = query[6]!, q7 = query[7]!;
    const q8 = query[8]!, q9 = query[9]!, q10 = query[10]!, q11 = query[11]!, q12 = query[12]!, q13 = query[13]!, q14 = query[14]!, q15 = query[15]!;
    let floor = -Infinity;
    for (let label = 0, b = 0; label < this.extent; label++, b += 16) {
      if (!present[label]) continue;
      const dot =
        q0 * vectors[b]! + q4 * vectors[b + 4]! + q8 * vectors[b + 8]! + q12 * vectors[b + 12]! +
        (q1 * vectors[b + 1]! + q5 * vectors[b + 5]! + q9 * vectors[b + 9]! + q13 * vectors[b + 13]!) +
        (q2 * vectors[b + 2]! + q6 * vectors[b + 6]! + q10 * vectors[b + 10]! + q14 * vectors[b + 14]!) +
        (q3 * vectors[b + 3]! + q7 * vectors[b + 7]! + q11 * vectors[b + 11]! + q15 * vectors[b + 15]!);
      if (hits.labels.length < k || dot > floor) floor = insert(hits, k, label, dot);
    }
  }

  private grow(capacity: number): void {
    const vectors = new Float64Array(capacity * this.dim);
    vectors.set(this.vectors);
    const present = new Uint8Array(capacity);
    present.set(this.present);
    this.vectors = vectors;
    this.present = present;
  }
}

/**
 * Exact inner products in hnswlib-node's brute-force index. It cannot grow, so a larger one is filled from the
 * JavaScript copies when the labels outgrow it.
 */
class NativeBruteForce {
  private index: Hnswlib.BruteforceSearch;
  private capacity: number;
  private readonly point: number[];

  constructor(
    private readonly hnsw: typeof Hnswlib,
    private readonly dim: number,
    capacity: number,
  ) {
    this.capacity = Math.max(16, capacity);
    this.index = this.create(this.capacity);
    this.point = new Array<number>(dim).fill(0);
  }

  upsert(label: number, vectors: Float64Array, present: Uint8Array): void {
    if (label >= this.capacity) {
      this.capacity = Math.max(label + 1, this.capacity * 2);
      this.index = this.create(this.capacity);
      for (let other = 0; other < present.length; other++) if (present[other] && other !== label) this.add(other, vectors);
    }
    this.add(label, vectors);
  }

  search(query: Float32Array, k: number): VectorHits {
    if (k <= 0) return { labels: [], scores: [] };
    const point = this.point;
    for (let d = 0; d < this.dim; d++) point[d] = query[d]!;
    const { neighbors, distances } = this.index.searchKnn(point, k);
    // hnswlib's inner-product distance is 1 - dot.
    const scores = new Array<number>(distances.length);
    for (let i = 0; i < distances.length; i++) scores[i] = 1 - distances[i]!;
    return { labels: neighbors, scores };
  }

  private add(label: number, vectors: Float64Array): void {
    const point = this.point;
    for (let d = 0, base = label * this.dim; d < this.dim; d++) point[d] = vectors[base + d]!;
    this.index.addPoint(point, label);
  }

  private create(capacity: number): Hnswlib.BruteforceSearch {
    const index = new this.hnsw.BruteforceSearch('ip', this.dim);
    index.initIndex(capacity);
    return index;
  }
}

export interface HnswOptions {
  /** Graph degree. Default 16. */
  readonly m?: number;
  /** Candidate list size while building. Default 100. */
  readonly efConstruction?: number;
  /** Candidate list size while searching; raised to k when k is larger. Default 64. */
  readonly ef?: number;
  /** Default 100. */
  readonly randomSeed?: number;
}

export class HnswIndex implements VectorIndex {
  readonly kind = 'hnsw';
  private readonly index: Hnswlib.HierarchicalNSW;
  private readonly ef: number;
  private readonly point: number[];

  constructor(readonly dim: number, capacity: number, options: HnswOptions = {}) {
    const { module: hnsw, error } = loadHnswlib();
    if (!hnsw) throw new Error('the HNSW index needs the hnswlib-node package built for this Node version', { cause: error });
    this.index = new hnsw.HierarchicalNSW('ip', dim);
    this.index.initIndex({
      maxElements: Math.max(16, capacity),
      m: options.m ?? 16,
      efConstruction: options.efConstruction ?? 100,
      randomSeed: options.randomSeed ?? 100,
    });
    this.ef = options.ef ?? 64;
    this.index.setEf(this.ef);
    this.point = new Array<number>(dim).fill(0);
  }

  get size(): number {
    return this.index.getCurrentCount();
  }

  upsert(label: number, vector: Float32Array): void {
    const max = this.index.getMaxElements();
    if (label >= max) this.index.resizeIndex(Math.max(label + 1, max * 2));
    this.index.addPoint(this.toPoint(vector), label);
  }

  search(query: Float32Array, k: number): VectorHits {
    const n = Math.min(k, this.index.getCurrentCount());
    if (n <= 0) return { labels: [], scores: [] };
    this.index.setEf(Math.max(this.ef, n));
    const { neighbors, distances } = this.index.searchKnn(this.toPoint(query), n);
    // hnswlib's inner-product distance is 1 - dot.
    return { labels: neighbors, scores: distances.map((distance) => 1 - distance) };
  }

  private toPoint(vector: Float32Array): number[] {
    const point = this.point;
    for (let d = 0; d < this.dim; d++) point[d] = vector[d]!;
    return point;
  }
}
