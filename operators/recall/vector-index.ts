import { createRequire } from 'node:module';
import type * as Hnswlib from 'hnswlib-node';

/**
 * Maximum inner product search over unit vectors (so scores are cosine similarities), by label. Two
 * implementations behind one interface: exact dot products, which win on small catalogues, and an HNSW graph from
 * hnswlib-node for large ones. The native module is loaded only when an HNSW index is built.
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

export class ExactIndex implements VectorIndex {
  readonly kind = 'exact';
  private vectors: Float32Array;
  private present: Uint8Array;
  private count = 0;
  private extent = 0;

  constructor(readonly dim: number, capacity = 1024) {
    this.vectors = new Float32Array(capacity * dim);
    this.present = new Uint8Array(capacity);
  }

  get size(): number {
    return this.count;
  }

  upsert(label: number, vector: Float32Array): void {
    if (label >= this.present.length) this.grow(Math.max(label + 1, this.present.length * 2));
    this.vectors.set(vector.subarray(0, this.dim), label * this.dim);
    if (!this.present[label]) {
      this.present[label] = 1;
      this.count++;
    }
    if (label >= this.extent) this.extent = label + 1;
  }

  search(query: Float32Array, k: number): VectorHits {
    const labels: number[] = [];
    const scores: number[] = [];
    if (k <= 0) return { labels, scores };
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
      if (labels.length >= k && dot <= floor) continue;
      // Insertion into a short sorted list: k is small next to the catalogue, so most items stop at the floor check.
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
      if (labels.length >= k) floor = scores[k - 1]!;
    }
    return { labels, scores };
  }

  private grow(capacity: number): void {
    const vectors = new Float32Array(capacity * this.dim);
    vectors.set(this.vectors);
    const present = new Uint8Array(capacity);
    present.set(this.present);
    this.vectors = vectors;
    this.present = present;
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
    let hnswlib: typeof Hnswlib;
    try {
      hnswlib = createRequire(import.meta.url)('hnswlib-node') as typeof Hnswlib;
    } catch (error) {
      throw new Error('the HNSW index needs the hnswlib-node package built for this Node version', { cause: error });
    }
    this.index = new hnswlib.HierarchicalNSW('ip', dim);
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
