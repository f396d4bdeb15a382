import { describe, expect, it } from 'vitest';
import { ItemEmbeddings } from '../models/embeddings.js';
import { decodeModelVersion, encodeModelVersion } from '../models/learner.js';
import { mulberry32 } from '../models/random.js';
import { EmbeddingRecaller } from '../operators/recall/embedding.js';
import { ExactIndex, HnswIndex } from '../operators/recall/vector-index.js';

const T0 = 1_700_000_000_000;

/** Users who each stay within one of two groups of items: a0..a9 or b0..b9. */
function twoGroupSequences(users = 200, length = 8, seed = 5): string[][] {
  const random = mulberry32(seed);
  return Array.from({ length: users }, (_, u) => {
    const group = u % 2 === 0 ? 'a' : 'b';
    return Array.from({ length }, () => `${group}${Math.floor(random() * 10)}`);
  });
}

function meanSimilarity(embeddings: ItemEmbeddings, left: string, right: string): number {
  let sum = 0;
  let pairs = 0;
  for (let i = 0; i < 10; i++) {
    for (let j = 0; j < 10; j++) {
      if (left === right && i === j) continue;
      sum += embeddings.similarity(`${left}${i}`, `${right}${j}`);
      pairs++;
    }
  }
  return sum / pairs;
}

function randomUnitVectors(n: number, dim: number, seed: number): Float32Array[] {
  const random = mulberry32(seed);
  return Array.from({ length: n }, () => {
    const v = Float32Array.from({ length: dim }, () => random() - 0.5);
    const norm = Math.hypot(...v);
    return v.map((x) => x / norm);
  });
}

describe('item2vec embeddings', () => {
  it('puts items that co-occur close together and apart from the others', () => {
    const embeddings = ItemEmbeddings.train(twoGroupSequences(), { dim: 16, epochs: 3, seed: 1 });
    expect(embeddings.size).toBe(20);
    const within = (meanSimilarity(embeddings, 'a', 'a') + meanSimilarity(embeddings, 'b', 'b')) / 2;
    const across = meanSimilarity(embeddings, 'a', 'b');
    expect(within).toBeGreaterThan(0.5);
    expect(across).toBeLessThan(within - 0.5);
  });

  it('is deterministic for a seed', () => {
    const sequences = twoGroupSequences(50);
    const first = ItemEmbeddings.train(sequences, { dim: 8, epochs: 2, seed: 42 });
    const second = ItemEmbeddings.train(sequences, { dim: 8, epochs: 2, seed: 42 });
    const other = ItemEmbeddings.train(sequences, { dim: 8, epochs: 2, seed: 43 });
    expect(Array.from(second.vector('a3')!)).toEqual(Array.from(first.vector('a3')!));
    expect(Array.from(other.vector('a3')!)).not.toEqual(Array.from(first.vector('a3')!));
  });

  it('gives a new item a seeded vector that does not depend on arrival order', () => {
    const one = new ItemEmbeddings({ dim: 8, seed: 3 });
    const two = new ItemEmbeddings({ dim: 8, seed: 3 });
    one.ensure('x');
    one.ensure('y');
    two.ensure('y');
    two.ensure('x');
    expect(Array.from(two.vector('x')!)).toEqual(Array.from(one.vector('x')!));
  });

  it('places a new item next to the items it co-occurs with, by online updates', () => {
    const embeddings = ItemEmbeddings.train(twoGroupSequences(), { dim: 16, epochs: 3, seed: 1 });
    const version = embeddings.currentVersion;
    const random = mulberry32(9);
    for (let k = 0; k < 300; k++) embeddings.trainPair(`a${Math.floor(random() * 10)}`, 'novel');
    let towardsA = 0;
    let towardsB = 0;
    for (let i = 0; i < 10; i++) {
      towardsA += embeddings.similarity('novel', `a${i}`) / 10;
      towardsB += embeddings.similarity('novel', `b${i}`) / 10;
    }
    expect(towardsA).toBeGreaterThan(towardsB + 0.3);
    expect(embeddings.versionAt(embeddings.indexOf('novel')!)).toBeGreaterThan(version);
    expect(embeddings.versionAt(embeddings.indexOf('b2')!)).toBeLessThanOrEqual(version);
  });
});

describe('embedding model versions', () => {
  it('round-trips through the models topic encoding and keeps training identically', () => {
    const sequences = twoGroupSequences(60);
    const original = ItemEmbeddings.train(sequences, { dim: 8, epochs: 2, seed: 7 });
    const version = decodeModelVersion(encodeModelVersion(original.export({ model: 'item2vec', version: 'v1', parent: null, createdAt: 1 })));
    const restored = ItemEmbeddings.fromModelVersion(version);
    expect(restored.size).toBe(original.size);
    expect(Array.from(restored.vector('b4')!)).toEqual(Array.from(original.vector('b4')!));
    expect(restored.similarity('a1', 'a2')).toBe(original.similarity('a1', 'a2'));
    const sibling = ItemEmbeddings.fromModelVersion(version);
    restored.trainPair('a1', 'b1');
    sibling.trainPair('a1', 'b1');
    expect(Array.from(restored.vector('a1')!)).toEqual(Array.from(sibling.vector('a1')!));
  });

  it('refuses versions of another kind or shape', () => {
    const version = new ItemEmbeddings({ dim: 4 }).export({ model: 'm', version: 'v', parent: null });
    expect(() => ItemEmbeddings.fromModelVersion({ ...version, kind: 'deepfm' })).toThrow(/not item2vec/);
    expect(() => ItemEmbeddings.fromModelVersion({ ...version, params: { ...version.params, ids: '["x"]' } })).toThrow(/tensor "input" has length 0, expected 4/);
    expect(() => ItemEmbeddings.fromModelVersion({ ...version, params: { ...version.params, ids: '{' } })).toThrow(/not JSON/);
  });
});

describe('vector indexes', () => {
  it.each([
    ['in hnswlib-node', true],
    ['in JavaScript', false],
  ] as const)('exact search returns the true top k in order, %s', (_where, native) => {
    const vectors = randomUnitVectors(300, 8, 1);
    const index = new ExactIndex(8, 4, { native });
    expect(index.isNative).toBe(native);
    // Capacity 4 makes the index grow while it fills, and the second pass replaces every vector it holds.
    vectors.forEach((v, i) => index.upsert(i, vectors[(i + 1) % vectors.length]!));
    vectors.forEach((v, i) => index.upsert(i, v));
    expect(index.size).toBe(300);
    const query = vectors[7]!;
    const truth = vectors
      .map((v, i) => ({ i, dot: v.reduce((sum, x, d) => sum + x * query[d]!, 0) }))
      .sort((a, b) => b.dot - a.dot)
      .slice(0, 15);
    const hits = index.search(query, 15);
    expect(hits.labels).toEqual(truth.map((t) => t.i));
    hits.scores.forEach((score, k) => expect(score).toBeCloseTo(truth[k]!.dot, 5));
  });

  it('HNSW finds nearly all of the exact neighbours', () => {
    const vectors = randomUnitVectors(2000, 16, 2);
    const exact = new ExactIndex(16);
    const hnsw = new HnswIndex(16, 100);
    vectors.forEach((v, i) => {
      exact.upsert(i, v);
      hnsw.upsert(i, v);
    });
    expect(hnsw.size).toBe(2000);
    let found = 0;
    for (let q = 0; q < 50; q++) {
      const truth = new Set(exact.search(vectors[q]!, 20).labels);
      const hits = hnsw.search(vectors[q]!, 20);
      expect(hits.labels[0]).toBe(q);
      expect(hits.scores[0]).toBeCloseTo(1, 5);
      found += hits.labels.filter((label) => truth.has(label)).length;
    }
    expect(found / (50 * 20)).toBeGreaterThan(0.9);
  });
});

describe('embedding recall', () => {
  const click = (userId: string, itemId: string, ts: number) => ({ id: `${userId}-${itemId}-${ts}`, type: 'click' as const, userId, itemId, ts });

  it('recalls items near the user’s recent items, never the recent items themselves', () => {
    const embeddings = ItemEmbeddings.train(twoGroupSequences(), { dim: 16, epochs: 3, seed: 1 });
    const recaller = new EmbeddingRecaller({ embeddings, online: false });
    expect(recaller.indexKind).toBe('exact');
    const result = recaller.recall({ userId: 'u', count: 8, recentItems: ['a1', 'a2'], now: T0 });
    expect(result).toHaveLength(8);
    for (const candidate of result) {
      expect(candidate.itemId).toMatch(/^a[03-9]$/);
      expect(candidate.source).toBe('embedding');
    }
    const filtered = recaller.recall({ userId: 'u', count: 8, recentItems: ['a1'], now: T0, accept: (id) => id.startsWith('b') || id === 'a5' });
    expect(filtered[0]!.itemId).toBe('a5');
    expect(filtered.slice(1).every((c) => c.itemId.startsWith('b'))).toBe(true);
    expect(recaller.recall({ userId: 'u', count: 8, recentItems: ['unknown'], now: T0 })).toEqual([]);
    expect(recaller.similar('b4', 3, T0).every((c) => c.itemId.startsWith('b') && c.itemId !== 'b4')).toBe(true);
  });

  it('switches to HNSW at the threshold and agrees with exact search', () => {
    const sequences = twoGroupSequences();
    const exact = new EmbeddingRecaller({ embeddings: ItemEmbeddings.train(sequences, { dim: 16, epochs: 3, seed: 1 }), online: false });
    const hnsw = new EmbeddingRecaller({ embeddings: ItemEmbeddings.train(sequences, { dim: 16, epochs: 3, seed: 1 }), online: false, hnswThreshold: 10 });
    expect(hnsw.indexKind).toBe('hnsw');
    const request = { userId: 'u', count: 5, recentItems: ['b2', 'b7'], now: T0 };
    expect(new Set(hnsw.recall(request).map((c) => c.itemId))).toEqual(new Set(exact.recall(request).map((c) => c.itemId)));
  });

  it('builds the HNSW index a batch per refresh when the catalogue grows past the threshold online', () => {
    const embeddings = ItemEmbeddings.train(twoGroupSequences(), { dim: 16, epochs: 3, seed: 1 });
    const recaller = new EmbeddingRecaller({ embeddings, hnswThreshold: 25, hnswBuildBatch: 10, refreshIntervalMs: 0 });
    expect(recaller.indexKind).toBe('exact');
    for (let k = 0; k < 6; k++) recaller.observe(click('grower', `new${k}`, T0 + k));
    recaller.refresh();
    expect(recaller.building).toBe(true);
    expect(recaller.indexKind).toBe('exact');
    recaller.refresh();
    recaller.refresh();
    expect(recaller.building).toBe(false);
    expect(recaller.indexKind).toBe('hnsw');
    expect(recaller.recall({ userId: 'u', count: 3, recentItems: ['a1'], now: T0 + 10 })).toHaveLength(3);
  });

  it.each([
    ['exact', {}],
    ['hnsw', { hnswThreshold: 10, refreshIntervalMs: 0, hnswUpdatesPerRefresh: 3 }],
  ] as const)('learns new co-occurrences online and serves them after a refresh (%s)', (kind, options) => {
    const embeddings = ItemEmbeddings.train(twoGroupSequences(), { dim: 16, epochs: 3, seed: 1 });
    const recaller = new EmbeddingRecaller({ embeddings, ...options });
    expect(recaller.indexKind).toBe(kind);
    const nearA = () => recaller.recall({ userId: 'u', count: 20, recentItems: ['a1'], now: T0 + 10_000 }).map((c) => c.itemId);
    expect(nearA()).not.toContain('novel');
    const random = mulberry32(4);
    let ts = T0;
    for (let k = 0; k < 150; k++) {
      recaller.observe(click(`fan${k}`, `a${Math.floor(random() * 10)}`, ts++));
      recaller.observe(click(`fan${k}`, 'novel', ts++));
      // Impressions carry no interest, so they must not pair 'novel' with the b group.
      recaller.observe({ ...click(`fan${k}`, `b${k % 10}`, ts++), type: 'impression' });
    }
    // Rationed HNSW updates reach the index over several refreshes.
    for (let k = 0; k < 10; k++) recaller.refresh();
    const after = nearA();
    const firstB = after.findIndex((id) => id.startsWith('b'));
    expect(after).toContain('novel');
    expect(after.indexOf('novel')).toBeLessThan(firstB);
  });
});
