import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ItemCatalogue } from '../operators/recall/catalogue.js';
import { CoVisitationRecaller } from '../operators/recall/covisitation.js';
import { candidateFilter } from '../operators/recall/filter.js';
import { FreshRecaller } from '../operators/recall/fresh.js';
import { apportion, mergeCandidates, MultiRecaller } from '../operators/recall/merge.js';
import { PopularityRecaller } from '../operators/recall/popular.js';
import type { RecallEvent, RecallRequest, Recaller, ScoredCandidate } from '../operators/recall/types.js';
import type { ItemEvent } from '../schema/events.js';

const T0 = 1_700_000_000_000;

function list(source: string, itemIds: string[], quota = 1) {
  return { source, quota, candidates: itemIds.map((itemId, i) => ({ itemId, score: 10 - i, source })) };
}

/** A source that returns a fixed list, ignoring `accept`, to prove the merger filters on its own. */
class FixedSource implements Recaller {
  constructor(readonly name: string, private readonly candidates: ScoredCandidate[]) {}
  recall(request: RecallRequest): ScoredCandidate[] {
    return this.candidates.slice(0, request.count);
  }
  observe(_event: RecallEvent): void {}
}

describe('apportion', () => {
  it('splits by largest remainders and always adds up', () => {
    expect(apportion([1, 1, 1], 10)).toEqual([4, 3, 3]);
    expect(apportion([3, 1], 8)).toEqual([6, 2]);
    expect(apportion([0, 2], 5)).toEqual([0, 5]);
    fc.assert(
      fc.property(fc.array(fc.double({ min: 0.01, max: 10, noNaN: true }), { minLength: 1, maxLength: 6 }), fc.integer({ min: 0, max: 500 }), (weights, total) => {
        expect(apportion(weights, total).reduce((a, b) => a + b, 0)).toBe(total);
      }),
    );
  });
});

describe('merge', () => {
  it('fills each source’s quota, best first, taking turns', () => {
    const merged = mergeCandidates([list('a', ['a1', 'a2', 'a3', 'a4']), list('b', ['b1', 'b2', 'b3', 'b4'], 3)], 4);
    expect(merged.map((c) => c.itemId)).toEqual(['a1', 'b1', 'b2', 'b3']);
  });

  it('keeps one copy of a duplicate under its best source and remembers all sources', () => {
    const merged = mergeCandidates(
      [
        { source: 'a', quota: 1, candidates: [{ itemId: 'x', score: 4, source: 'a' }, { itemId: 'shared', score: 1, source: 'a' }] },
        { source: 'b', quota: 1, candidates: [{ itemId: 'shared', score: 10, source: 'b' }, { itemId: 'y', score: 5, source: 'b' }] },
      ],
      4,
    );
    expect(merged.map((c) => c.itemId)).toEqual(['x', 'shared', 'y']);
    const shared = merged.find((c) => c.itemId === 'shared')!;
    expect(shared.source).toBe('b');
    expect(shared.score).toBe(1);
    expect(shared.sources).toEqual([
      { source: 'b', score: 10, rank: 0 },
      { source: 'a', score: 1, rank: 1 },
    ]);
  });

  it('lists every source that found an item, best relative score first, ties in list order (property)', () => {
    const sourceList = fc.record({
      quota: fc.integer({ min: 0, max: 3 }),
      hits: fc.array(fc.record({ item: fc.integer({ min: 0, max: 15 }), score: fc.integer({ min: -4, max: 4 }) }), { maxLength: 20 }),
    });
    fc.assert(
      fc.property(fc.array(sourceList, { minLength: 1, maxLength: 5 }), fc.integer({ min: 1, max: 20 }), (specs, count) => {
        // Scores fall down each list, as sources return them, some below zero, and small integers make ties between
        // sources common.
        const lists = specs.map(({ quota, hits }, l) => {
          const sorted = hits.map((h) => h.score).sort((a, b) => b - a);
          return { source: `s${l}`, quota, candidates: hits.map((h, r) => ({ itemId: `i${h.item}`, score: sorted[r]!, source: `s${l}` })) };
        });
        const active = lists.filter((list) => list.quota > 0 && list.candidates.length > 0);
        for (const merged of mergeCandidates(lists, count)) {
          const expected = active
            .flatMap((list) => {
              const rank = list.candidates.findIndex((c) => c.itemId === merged.itemId);
              if (rank < 0) return [];
              const top = list.candidates[0]!.score;
              const score = list.candidates[rank]!.score;
              return [{ hit: { source: list.source, score, rank }, relative: top > 0 ? score / top : 0 }];
            })
            .sort((a, b) => b.relative - a.relative);
          expect(merged.sources).toEqual(expected.map((e) => e.hit));
          expect(merged.source).toBe(expected[0]!.hit.source);
          expect(merged.score).toBe(expected[0]!.relative);
        }
      }),
      { numRuns: 500 },
    );
  });

  it('gives a short source’s share to the others', () => {
    const merged = mergeCandidates([list('a', ['a1']), list('b', ['b1', 'b2', 'b3', 'b4'])], 4);
    expect(merged.map((c) => c.itemId)).toEqual(['a1', 'b1', 'b2', 'b3']);
  });

  it('drops duplicates inside one source and items the filter rejects', () => {
    const merged = mergeCandidates([list('a', ['a1', 'a1', 'bad', 'a2'])], 5, (id) => id !== 'bad');
    expect(merged.map((c) => c.itemId)).toEqual(['a1', 'a2']);
  });
});

describe('candidate filter', () => {
  const catalogue = new ItemCatalogue();
  catalogue.observe({ type: 'item', itemId: 'drama', ts: 1, fields: { genre: ['Drama', 'War'], year: 1999 } as ItemEvent['fields'] });
  catalogue.observe({ type: 'item', itemId: 'gone', ts: 1, fields: { genre: 'Drama', available: false } as ItemEvent['fields'] });
  catalogue.observe({ type: 'item', itemId: 'comedy', ts: 1, fields: { genre: 'Comedy', year: 2001 } as ItemEvent['fields'] });

  it('rejects consumed, excluded and unavailable items', () => {
    const accept = candidateFilter(catalogue, { consumed: new Set(['comedy']), filters: { excludeItems: ['drama'] } });
    expect(['drama', 'gone', 'comedy', 'unknown'].filter(accept)).toEqual(['unknown']);
  });

  it('matches field filters on any value, as strings, and never matches items without metadata', () => {
    const match = (fields: Record<string, unknown>) => ['drama', 'gone', 'comedy', 'unknown'].filter(candidateFilter(catalogue, { filters: { fields: fields as never } }));
    expect(match({ genre: 'War' })).toEqual(['drama']);
    expect(match({ genre: ['Comedy', 'Drama'] })).toEqual(['drama', 'comedy']);
    expect(match({ genre: 'Drama', year: '1999' })).toEqual(['drama']);
    expect(match({ year: 2001 })).toEqual(['comedy']);
  });

  it('follows an item out of and back into availability, and ignores an older record', () => {
    const own = new ItemCatalogue();
    const accept = candidateFilter(own, {});
    own.observe({ type: 'item', itemId: 'x', ts: 1, fields: {} });
    expect(accept('x')).toBe(true);
    own.observe({ type: 'item', itemId: 'x', ts: 2, fields: { available: false } as ItemEvent['fields'] });
    expect(accept('x')).toBe(false);
    own.observe({ type: 'item', itemId: 'x', ts: 1, fields: {} });
    expect(accept('x')).toBe(false);
    own.observe({ type: 'item', itemId: 'x', ts: 3, fields: { available: true } as ItemEvent['fields'] });
    expect(accept('x')).toBe(true);
  });
});

describe('multi recaller', () => {
  const GENRES = ['a', 'b', 'c', 'd'];

  function build() {
    const catalogue = new ItemCatalogue();
    const popular = new PopularityRecaller({ catalogue, attributes: ['genre'] });
    const covisit = new CoVisitationRecaller();
    const fresh = new FreshRecaller({ catalogue });
    const leaky = new FixedSource('leaky', Array.from({ length: 60 }, (_, i) => ({ itemId: `i${i}`, score: 60 - i, source: 'leaky' })));
    const recaller = new MultiRecaller({
      catalogue,
      sources: [
        { recaller: popular, quota: 2 },
        { recaller: covisit, quota: 2 },
        { recaller: fresh, quota: 1 },
        { recaller: leaky, quota: 1 },
      ],
    });
    for (let i = 0; i < 60; i++) {
      recaller.observe({ type: 'item', itemId: `i${i}`, ts: T0 + i, fields: { genre: GENRES[i % 4]!, available: i % 7 !== 3 } as ItemEvent['fields'] });
    }
    let ts = T0 + 100;
    for (let u = 0; u < 40; u++) {
      for (let k = 0; k < 5; k++) recaller.observe({ id: `e${u}-${k}`, type: 'click', userId: `u${u}`, itemId: `i${(u * 7 + k * 3) % 60}`, ts: ts++ });
    }
    return recaller;
  }

  it('rejects sources with the same name', () => {
    const catalogue = new ItemCatalogue();
    const source = new FixedSource('same', []);
    expect(() => new MultiRecaller({ catalogue, sources: [{ recaller: source, quota: 1 }, { recaller: source, quota: 1 }] })).toThrow(/same/);
  });

  it('merges every source and tags each candidate', () => {
    const recaller = build();
    const result = recaller.recall({ userId: 'u1', count: 30, recentItems: ['i7', 'i10'], now: T0 + 1000 });
    expect(result).toHaveLength(30);
    expect(new Set(result.map((c) => c.itemId)).size).toBe(30);
    expect(new Set(result.map((c) => c.source))).toEqual(new Set(['popular', 'covisit', 'fresh', 'leaky']));
    for (const candidate of result) expect(candidate.sources.map((s) => s.source)).toContain(candidate.source);
  });

  it('never returns consumed, unavailable, excluded or non-matching items (property)', () => {
    const recaller = build();
    const itemId = fc.integer({ min: 0, max: 65 }).map((i) => `i${i}`);
    fc.assert(
      fc.property(
        fc.record({
          consumed: fc.uniqueArray(itemId, { maxLength: 30 }),
          excludeItems: fc.uniqueArray(itemId, { maxLength: 30 }),
          genres: fc.option(fc.uniqueArray(fc.constantFrom(...GENRES), { minLength: 1, maxLength: 3 }), { nil: undefined }),
          recent: fc.uniqueArray(itemId, { maxLength: 6 }),
          count: fc.integer({ min: 1, max: 80 }),
        }),
        ({ consumed, excludeItems, genres, recent, count }) => {
          const fields = genres ? (Object.assign(Object.create(null), { genre: genres }) as Record<string, string[]>) : undefined;
          const result = recaller.recall({
            userId: 'u3',
            count,
            recentItems: recent,
            now: T0 + 1000,
            consumed: new Set(consumed),
            filters: { excludeItems, ...(fields ? { fields } : {}) },
          });
          expect(result.length).toBeLessThanOrEqual(count);
          expect(new Set(result.map((c) => c.itemId)).size).toBe(result.length);
          const leaks = result.filter(({ itemId: id }) => {
            const index = Number(id.slice(1));
            return consumed.includes(id) || excludeItems.includes(id) || index % 7 === 3 || (genres && !genres.includes(GENRES[index % 4]!));
          });
          expect(leaks).toEqual([]);
          // The leaky source alone offers every item, so the merge can always fill up to what the filters allow.
          const allowed = Array.from({ length: 60 }, (_, i) => i).filter(
            (i) => i % 7 !== 3 && !consumed.includes(`i${i}`) && !excludeItems.includes(`i${i}`) && (!genres || genres.includes(GENRES[i % 4]!)),
          ).length;
          expect(result.length).toBe(Math.min(count, allowed));
        },
      ),
      { numRuns: 300 },
    );
  });
});
