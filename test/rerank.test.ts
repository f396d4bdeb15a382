import { describe, expect, it } from 'vitest';
import { ItemEmbeddings } from '../models/embeddings.js';
import { ItemCatalogue } from '../operators/recall/catalogue.js';
import { attributeCaps } from '../operators/rerank/caps.js';
import { freshnessBoost } from '../operators/rerank/freshness.js';
import { mmr } from '../operators/rerank/mmr.js';
import { mulberry32 } from '../models/random.js';
import { popularityDebias } from '../operators/rerank/popularity-debias.js';
import { explain, Reranker, toRerankItems } from '../operators/rerank/reranker.js';
import { businessRules, businessRulesSchema } from '../operators/rerank/rules.js';
import type { RerankItem } from '../operators/rerank/types.js';
import type { ItemEvent } from '../schema/events.js';

const HOUR = 3600_000;
const T0 = 1_700_000_000_000;
const request = { now: T0, count: 10 };

function items(...scored: [string, number][]): RerankItem[] {
  return scored.map(([itemId, score]) => ({ itemId, score, source: 'test', rankerScore: score, adjustments: [] }));
}

const ids = (list: readonly RerankItem[]) => list.map((item) => item.itemId);

function catalogueOf(fields: Record<string, Record<string, unknown>>): ItemCatalogue {
  const catalogue = new ItemCatalogue();
  for (const [itemId, itemFields] of Object.entries(fields)) catalogue.observe({ type: 'item', itemId, ts: T0 - 100 * HOUR, fields: itemFields as ItemEvent['fields'] });
  return catalogue;
}

describe('freshness boost', () => {
  it('adds weight * 2^(-age/halfLife) and re-sorts', () => {
    const catalogue = catalogueOf({ old: { publishedAt: T0 - 48 * HOUR }, new: { publishedAt: T0 - 24 * HOUR }, future: { publishedAt: T0 + HOUR } });
    const result = freshnessBoost({ catalogue, weight: 0.2, halfLifeMs: 24 * HOUR }).apply(items(['old', 0.5], ['new', 0.46], ['future', 0.1], ['unknown', 0.3]), request);
    expect(ids(result)).toEqual(['new', 'old', 'future', 'unknown']);
    expect(result[0]!.score).toBeCloseTo(0.56, 10);
    expect(result[0]!.adjustments).toEqual([{ step: 'freshness', delta: expect.closeTo(0.1, 10), basis: { ageMs: 24 * HOUR } }]);
    expect(result[1]!.score).toBeCloseTo(0.55, 10);
    expect(result[2]!.score).toBeCloseTo(0.3, 10);
    expect(result[3]!.adjustments).toEqual([]);
  });
});

describe('popularity de-biasing', () => {
  it('divides by (1 + popularity)^strength so a niche item can pass a popular one', () => {
    const popularity = new Map([['hit', 99], ['niche', 0]]);
    const step = popularityDebias({ popularity: (id) => popularity.get(id) ?? 0, strength: 0.5 });
    const result = step.apply(items(['hit', 0.5], ['niche', 0.04]), request);
    expect(ids(result)).toEqual(['hit', 'niche']);
    expect(result[0]!.score).toBeCloseTo(0.05, 10);
    const passed = step.apply(items(['hit', 0.5], ['niche', 0.06]), request);
    expect(ids(passed)).toEqual(['niche', 'hit']);
    expect(passed[1]!.adjustments[0]).toEqual({ step: 'popularity-debias', delta: expect.closeTo(-0.45, 10), basis: { popularity: 99 } });
  });
});

describe('attribute caps', () => {
  it('keeps at most N per value and moves the rest behind, in order', () => {
    const catalogue = catalogueOf({
      d1: { genre: 'Drama' },
      d2: { genre: ['Drama', 'War'] },
      d3: { genre: 'Drama' },
      c1: { genre: 'Comedy' },
      w1: { genre: 'War' },
      d4: { genre: 'Drama' },
    });
    const result = attributeCaps({ catalogue, caps: { genre: 2 } }).apply(
      items(['d1', 6], ['d2', 5], ['d3', 4], ['c1', 3], ['w1', 2], ['d4', 1], ['none', 0]),
      request,
    );
    expect(ids(result)).toEqual(['d1', 'd2', 'c1', 'w1', 'none', 'd3', 'd4']);
    expect(result[5]!.adjustments).toEqual([{ step: 'caps', delta: 0, moved: { from: 2, to: 5 }, reason: 'genre=Drama over cap 2' }]);
    expect(result[2]!.adjustments).toEqual([]);
  });
});

describe('MMR', () => {
  const catalogue = catalogueOf({
    a1: { genre: 'A' },
    a2: { genre: 'A' },
    a3: { genre: 'A' },
    b1: { genre: 'B' },
    c1: { genre: 'C' },
  });
  const ranked = () => items(['a1', 1.0], ['a2', 0.95], ['a3', 0.9], ['b1', 0.6], ['c1', 0.5]);

  it('keeps the ranking at lambda = 1', () => {
    expect(ids(mmr({ lambda: 1, catalogue, attributes: ['genre'] }).apply(ranked(), request))).toEqual(['a1', 'a2', 'a3', 'b1', 'c1']);
  });

  it('spreads attributes at lower lambda, following the MMR objective', () => {
    // lambda 0.5: after a1, a2 scores 0.5*0.9 - 0.5*1 = -0.05 and b1 scores 0.5*0.2 - 0 = 0.1, so b1 comes second;
    // then c1 (0.5*0 - 0 = 0) beats a2 (-0.05).
    const result = mmr({ lambda: 0.5, catalogue, attributes: ['genre'] }).apply(ranked(), { now: T0, count: 5 });
    expect(ids(result)).toEqual(['a1', 'b1', 'c1', 'a2', 'a3']);
    expect(result[3]!.adjustments).toEqual([{ step: 'mmr', delta: 0, moved: { from: 1, to: 3 }, reason: 'similarity 1.00 to items above' }]);
    expect(result[0]!.adjustments).toEqual([]);
  });

  it('selects only `count` items by MMR and leaves the rest in order', () => {
    const result = mmr({ lambda: 0.5, catalogue, attributes: ['genre'] }).apply(ranked(), { now: T0, count: 2 });
    expect(ids(result)).toEqual(['a1', 'b1', 'a2', 'a3', 'c1']);
  });

  it('considers only the top of the ranking, as the pool option sets', () => {
    const result = mmr({ lambda: 0.5, catalogue, attributes: ['genre'], pool: () => 3 }).apply(ranked(), { now: T0, count: 2 });
    // b1 is outside the pool of 3, so the second pick is a2 despite its similarity to a1.
    expect(ids(result)).toEqual(['a1', 'a2', 'a3', 'b1', 'c1']);
  });

  it('uses embedding similarity', () => {
    const embeddings = new ItemEmbeddings({ dim: 2 });
    const set = (id: string, x: number, y: number) => {
      embeddings.ensure(id);
      embeddings.vector(id)!.set([x, y]);
    };
    set('x1', 1, 0);
    set('x2', 0.99, 0.1);
    set('y1', 0, 1);
    const result = mmr({ lambda: 0.5, embeddings }).apply(items(['x1', 1], ['x2', 0.9], ['y1', 0.5]), request);
    expect(ids(result)).toEqual(['x1', 'y1', 'x2']);
  });

  it('gives each request the answer a fresh step would, whatever requests of other sizes came before', () => {
    const embeddings = new ItemEmbeddings({ dim: 2 });
    const random = mulberry32(5);
    const fields: Record<string, Record<string, unknown>> = {};
    const all: [string, number][] = [];
    for (let i = 0; i < 150; i++) {
      const id = `i${i}`;
      // A third of the items have no vector, so a request can find another's vectors where its own are missing.
      if (i % 3 !== 0) {
        embeddings.ensure(id);
        embeddings.vector(id)!.set([random() - 0.5, random() - 0.5]);
      }
      fields[id] = { genre: `g${i % 4}` };
      all.push([id, random()]);
    }
    const catalogue = catalogueOf(fields);
    const options = { lambda: 0.6, embeddings, catalogue, attributes: ['genre'], pool: (count: number) => 3 * count };
    const reused = mmr(options);
    for (const [size, count] of [[150, 40], [12, 5], [90, 30], [7, 7], [150, 10]] as const) {
      const ranked = items(...all.slice(0, size)).sort((a, b) => b.score - a.score);
      const shuffled = [...ranked.slice(size / 2), ...ranked.slice(0, size / 2)];
      for (const list of [ranked, shuffled]) {
        expect(reused.apply(list, { now: T0, count })).toEqual(mmr(options).apply(list, { now: T0, count }));
      }
    }
  });

  it('rejects lambda outside [0, 1]', () => {
    expect(() => mmr({ lambda: 1.5 })).toThrow(RangeError);
  });
});

describe('business rules', () => {
  const catalogue = catalogueOf({ s1: { brand: 'Sponsor' }, s2: { brand: 'Sponsor' }, x: { brand: 'Other' } });

  it('validates rules from config', () => {
    expect(businessRulesSchema.safeParse([{ kind: 'pin', itemId: 'a', position: 0 }]).success).toBe(true);
    expect(businessRulesSchema.safeParse([{ kind: 'pin', itemId: 'a', position: -1 }]).success).toBe(false);
    expect(businessRulesSchema.safeParse([{ kind: 'teleport', itemId: 'a' }]).success).toBe(false);
    expect(() => businessRules({ rules: [{ kind: 'block' }] })).toThrow(/itemIds or fields/);
    expect(() => businessRules({ rules: [{ kind: 'block', fields: { brand: 'x' } }] })).toThrow(/catalogue/);
  });

  it('blocks, boosts and pins', () => {
    const step = businessRules({
      catalogue,
      rules: [
        { kind: 'block', itemIds: ['banned'] },
        { kind: 'boost', fields: { brand: 'Sponsor' }, multiply: 2 },
        { kind: 'pin', itemId: 'x', position: 0 },
        { kind: 'pin', itemId: 'absent', position: 1 },
      ],
    });
    const result = step.apply(items(['a', 0.5], ['banned', 0.45], ['s1', 0.3], ['b', 0.2], ['x', 0.1], ['s2', 0.05]), request);
    expect(ids(result)).toEqual(['x', 's1', 'a', 'b', 's2']);
    expect(result[1]!.score).toBeCloseTo(0.6, 10);
    expect(result[1]!.adjustments).toEqual([{ step: 'boost', delta: expect.closeTo(0.3, 10) }]);
    expect(result[0]!.adjustments).toEqual([{ step: 'pin', delta: 0, moved: { from: 3, to: 0 }, reason: 'pinned at 0' }]);
  });
});

describe('reranker', () => {
  it('runs steps in order, cuts to count and explains each item', () => {
    const catalogue = catalogueOf({ fresh: { publishedAt: T0, genre: 'A' }, a: { genre: 'A' }, b: { genre: 'B' } });
    const reranker = new Reranker([
      freshnessBoost({ catalogue, weight: 0.5, halfLifeMs: HOUR }),
      attributeCaps({ catalogue, caps: { genre: 1 } }),
    ]);
    const candidates = [
      { itemId: 'a', score: 1, source: 'popular', sources: [{ source: 'popular', score: 10, rank: 0 }] },
      { itemId: 'b', score: 0.5, source: 'covisit', sources: [{ source: 'covisit', score: 3, rank: 0 }] },
      { itemId: 'fresh', score: 1, source: 'fresh', sources: [{ source: 'fresh', score: 1, rank: 0 }] },
    ];
    expect(() => toRerankItems(candidates, [1])).toThrow(/1 ranker scores for 3 candidates/);
    const result = reranker.rerank(toRerankItems(candidates, [0.4, 0.3, 0.2]), { now: T0, count: 2 });
    expect(ids(result)).toEqual(['fresh', 'b']);
    expect(explain(result[0]!)).toEqual({
      source: 'fresh',
      sources: [{ source: 'fresh', score: 1, rank: 0 }],
      recallScore: 1,
      rankerScore: 0.2,
      adjustments: [{ step: 'freshness', delta: expect.closeTo(0.5, 10), basis: { ageMs: 0 } }],
      finalScore: expect.closeTo(0.7, 10),
    });
  });

  it('ranks the same without recording adjustments when explanations are off', () => {
    const catalogue = catalogueOf({
      fresh: { publishedAt: T0, genre: 'A' },
      a1: { genre: 'A' },
      a2: { genre: 'A' },
      b: { genre: 'B' },
      pinned: { genre: 'C' },
    });
    const reranker = new Reranker([
      freshnessBoost({ catalogue, weight: 0.5, halfLifeMs: HOUR }),
      mmr({ lambda: 0.5, catalogue, attributes: ['genre'] }),
      attributeCaps({ catalogue, caps: { genre: 1 } }),
      businessRules({ rules: [{ kind: 'boost', itemIds: ['b'], add: 0.1 }, { kind: 'pin', itemId: 'pinned', position: 0 }], catalogue }),
    ]);
    const candidates = ['a1', 'a2', 'fresh', 'b', 'pinned'].map((itemId) => ({ itemId, score: 1, source: 'popular', sources: [] }));
    const run = (explain: boolean) => reranker.rerank(toRerankItems(candidates, [0.9, 0.8, 0.3, 0.5, 0.1]), { now: T0, count: 5, explain });
    const explained = run(true);
    const quiet = run(false);
    expect(ids(quiet)).toEqual(ids(explained));
    expect(quiet.map((item) => item.score)).toEqual(explained.map((item) => item.score));
    expect(explained.every((item) => item.adjustments.length > 0)).toBe(true);
    expect(quiet.every((item) => item.adjustments.length === 0)).toBe(true);
  });
});
