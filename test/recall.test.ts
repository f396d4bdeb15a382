import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ItemCatalogue } from '../operators/recall/catalogue.js';
import { CoVisitationRecaller } from '../operators/recall/covisitation.js';
import { DecayedCounts } from '../operators/recall/decayed-counts.js';
import { FreshRecaller } from '../operators/recall/fresh.js';
import { PopularityRecaller } from '../operators/recall/popular.js';
import { RecentContextRecaller } from '../operators/recall/recent-context.js';
import { UserHistories } from '../operators/recall/histories.js';
import type { RecallRequest } from '../operators/recall/types.js';
import type { BehaviourEvent, BehaviourType, ItemEvent } from '../schema/events.js';

const HOUR = 3600_000;
const T0 = 1_700_000_000_000;
let eventId = 0;

function behaviour(userId: string, itemId: string, ts: number, type: BehaviourType = 'click'): BehaviourEvent {
  return { id: `e${++eventId}`, type, userId, itemId, ts };
}

function item(itemId: string, fields: Record<string, unknown>, ts = T0): ItemEvent {
  return { type: 'item', itemId, ts, fields: fields as ItemEvent['fields'] };
}

function request(overrides: Partial<RecallRequest> = {}): RecallRequest {
  return { userId: 'u', count: 10, recentItems: [], now: T0, ...overrides };
}

const ids = (candidates: readonly { itemId: string }[]) => candidates.map((c) => c.itemId);

/** The ids `visitTopByAttribute` visits, in order. */
function topByAttribute(popular: PopularityRecaller, attribute: string, value: string, request: Pick<RecallRequest, 'count' | 'now'>): string[] {
  const visited: string[] = [];
  popular.visitTopByAttribute(attribute, value, request, undefined, (itemId) => visited.push(itemId));
  return visited;
}

describe('decayed counts', () => {
  it('halves a count every half-life', () => {
    const counts = new DecayedCounts(HOUR);
    counts.add('a', 8, T0);
    expect(counts.count('a', T0)).toBeCloseTo(8, 10);
    expect(counts.count('a', T0 + HOUR)).toBeCloseTo(4, 10);
    expect(counts.count('a', T0 + 3 * HOUR)).toBeCloseTo(1, 10);
    counts.add('a', 1, T0 + 3 * HOUR);
    expect(counts.count('a', T0 + 3 * HOUR)).toBeCloseTo(2, 10);
  });

  it('keeps values and order when its origin moves far forward', () => {
    const counts = new DecayedCounts(1000);
    counts.add('old', 1, 0);
    counts.add('b', 1, 0);
    const later = 600 * 1000;
    counts.add('b', 3, later);
    counts.add('c', 2, later);
    expect(counts.count('b', later)).toBeCloseTo(3, 10);
    expect(counts.count('c', later)).toBeCloseTo(2, 10);
    expect(counts.count('old', later)).toBeLessThan(1e-100);
  });

  it('keeps top lists equal to a full sort under any event order (property)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ item: fc.integer({ min: 0, max: 30 }), weight: fc.double({ min: 0.1, max: 5, noNaN: true }), dt: fc.integer({ min: -HOUR, max: 5 * HOUR }) }), { maxLength: 200 }),
        fc.integer({ min: 1, max: 10 }),
        (events, capacity) => {
          const counts = new DecayedCounts(HOUR);
          const list = counts.createList(capacity);
          for (const { item: i, weight, dt } of events) list.raise(`i${i}`, counts.add(`i${i}`, weight, T0 + dt));
          const all = [...new Set(events.map((e) => `i${e.item}`))].map((id) => counts.stored(id)).sort((a, b) => b - a);
          expect(list.scores).toEqual(all.slice(0, capacity));
          for (let i = 0; i < list.size; i++) expect(list.scores[i]).toBe(counts.stored(list.ids[i]!));
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe('popularity recall', () => {
  function popularSetup(halfLifeMs = 24 * HOUR) {
    const catalogue = new ItemCatalogue();
    const popular = new PopularityRecaller({ catalogue, halfLifeMs, attributes: ['genre'], weights: { click: 1, purchase: 5 } });
    const feed = (event: BehaviourEvent | ItemEvent) => {
      if (event.type === 'item') catalogue.observe(event);
      popular.observe(event);
    };
    return { catalogue, popular, feed };
  }

  it('ranks by weighted event counts, globally and per attribute value', () => {
    const { popular, feed } = popularSetup();
    for (const [id, genre] of [['a', 'drama'], ['b', 'comedy'], ['c', 'drama'], ['d', 'comedy']] as const) feed(item(id, { genre }));
    for (let k = 0; k < 3; k++) feed(behaviour(`u${k}`, 'a', T0));
    feed(behaviour('u9', 'b', T0, 'purchase'));
    feed(behaviour('u1', 'c', T0));
    feed(behaviour('u2', 'd', T0, 'impression'));
    const global = popular.recall(request());
    expect(ids(global)).toEqual(['b', 'a', 'c']);
    expect(global[0]).toEqual({ itemId: 'b', score: 5, source: 'popular' });
    expect(ids(popular.recall(request({ context: { genre: 'drama' } })))).toEqual(['a', 'c', 'b']);
    expect(ids(popular.recall(request({ count: 2, context: { genre: 'drama' } })))).toEqual(['a', 'c']);
    expect(topByAttribute(popular, 'genre', 'comedy', { count: 5, now: T0 })).toEqual(['b']);
  });

  it('lets recent activity overtake older activity (trending)', () => {
    const { popular, feed } = popularSetup(HOUR);
    for (let k = 0; k < 4; k++) feed(behaviour(`u${k}`, 'old-hit', T0));
    for (let k = 0; k < 2; k++) feed(behaviour(`v${k}`, 'new-hit', T0 + 3 * HOUR));
    const now = T0 + 3 * HOUR;
    expect(ids(popular.recall(request({ now })))).toEqual(['new-hit', 'old-hit']);
    expect(popular.popularity('old-hit', now)).toBeCloseTo(0.5, 10);
  });

  it('places items whose metadata arrives after their first events', () => {
    const { popular, feed } = popularSetup();
    feed(behaviour('u', 'late', T0));
    feed(item('late', { genre: 'jazz' }));
    expect(ids(popular.recall(request({ context: { genre: 'jazz' } })))).toEqual(['late']);
  });

  it('stops listing an item under a value it lost, and keeps it under the values it kept', () => {
    const { catalogue, popular, feed } = popularSetup();
    feed(item('a', { genre: ['drama', 'war'] }));
    feed(item('b', { genre: 'drama' }));
    for (const id of ['a', 'a', 'b']) feed(behaviour('u', id, T0));
    expect(catalogue.mayHaveLost('a', 'genre')).toBe(false);
    feed(item('a', { genre: ['war', 'comedy'], title: 'renamed' }, T0 + 1));
    feed(item('b', { genre: 'drama', title: 'renamed' }, T0 + 1));
    expect(catalogue.mayHaveLost('a', 'genre')).toBe(true);
    expect(catalogue.mayHaveLost('b', 'genre')).toBe(false);
    expect(catalogue.mayHaveLost('b', 'title')).toBe(false);
    expect(topByAttribute(popular, 'genre', 'drama', { count: 5, now: T0 })).toEqual(['b']);
    expect(topByAttribute(popular, 'genre', 'war', { count: 5, now: T0 })).toEqual(['a']);
    expect(topByAttribute(popular, 'genre', 'comedy', { count: 5, now: T0 })).toEqual(['a']);
  });

  it('skips items the request does not accept', () => {
    const { popular, feed } = popularSetup();
    for (const id of ['a', 'b', 'c']) feed(behaviour('u', id, T0));
    expect(ids(popular.recall(request({ accept: (id) => id !== 'a' })))).toEqual(['b', 'c']);
  });
});

describe('co-visitation recall', () => {
  it('recalls what other users interacted with next to the user’s recent items', () => {
    const covisit = new CoVisitationRecaller({ windowMs: HOUR });
    // Two users watch a then b; one watches a then c; one watches x then y.
    covisit.observe(behaviour('u1', 'a', T0));
    covisit.observe(behaviour('u1', 'b', T0 + 1000));
    covisit.observe(behaviour('u2', 'a', T0));
    covisit.observe(behaviour('u2', 'b', T0 + 1000));
    covisit.observe(behaviour('u3', 'a', T0));
    covisit.observe(behaviour('u3', 'c', T0 + 1000));
    covisit.observe(behaviour('u4', 'x', T0));
    covisit.observe(behaviour('u4', 'y', T0 + 1000));
    const result = covisit.recall(request({ recentItems: ['a'], now: T0 + 1000 }));
    expect(ids(result)).toEqual(['b', 'c']);
    expect(result[0]!.score).toBeCloseTo(2 * result[1]!.score, 6);
    expect(ids(covisit.recall(request({ recentItems: ['b'], now: T0 + 1000 })))).toEqual(['a']);
    expect(ids(covisit.neighbours('a', 5, T0))).toEqual(['b', 'c']);
  });

  it('ranks every neighbour when a request touches more items than its scratch space first holds', () => {
    const covisit = new CoVisitationRecaller({ windowMs: HOUR, neighbours: 2000 });
    // Two hubs, each watched next to 1,500 items of its own: 3,000 items touched by one request.
    for (const hub of ['h1', 'h2']) {
      for (let i = 0; i < 1500; i++) {
        covisit.observe(behaviour(`${hub}-u${i}`, hub, T0));
        covisit.observe(behaviour(`${hub}-u${i}`, `${hub}-n${i}`, T0 + 1000 + i));
      }
    }
    const result = covisit.recall(request({ recentItems: ['h1', 'h2'], now: T0 + 3000, count: 3000 }));
    expect(new Set(ids(result)).size).toBe(3000);
    expect(ids(result).every((id) => /^h[12]-n\d+$/.test(id))).toBe(true);
    // The most recent hub weighs most: all its neighbours come first.
    expect(ids(result).slice(0, 1500).every((id) => id.startsWith('h1-'))).toBe(true);
  });

  it('does not pair interactions further apart than the window, nor an item with itself', () => {
    const covisit = new CoVisitationRecaller({ windowMs: HOUR });
    covisit.observe(behaviour('u', 'a', T0));
    covisit.observe(behaviour('u', 'a', T0 + 10));
    covisit.observe(behaviour('u', 'b', T0 + 2 * HOUR));
    expect(covisit.recall(request({ recentItems: ['a', 'b'] }))).toEqual([]);
  });

  it('sums neighbour weights over recent items, the most recent weighing most', () => {
    const covisit = new CoVisitationRecaller({ recencyDecay: 0.5 });
    covisit.observe(behaviour('u1', 'a', T0));
    covisit.observe(behaviour('u1', 'p', T0 + 1));
    covisit.observe(behaviour('u2', 'b', T0));
    covisit.observe(behaviour('u2', 'q', T0 + 1));
    covisit.observe(behaviour('u3', 'a', T0));
    covisit.observe(behaviour('u3', 'shared', T0 + 1));
    covisit.observe(behaviour('u4', 'b', T0));
    covisit.observe(behaviour('u4', 'shared', T0 + 1));
    const result = covisit.recall(request({ recentItems: ['a', 'b'], now: T0 + 1 }));
    expect(ids(result)).toEqual(['shared', 'p', 'q']);
    expect(result[0]!.score).toBeCloseTo(1.5, 6);
    expect(result[2]!.score).toBeCloseTo(0.5, 6);
  });

  it('holds at most 2K neighbours per item, pruning to the K strongest so fresh pairs replace stale ones', () => {
    const covisit = new CoVisitationRecaller({ neighbours: 3, halfLifeMs: HOUR, windowMs: 10 * HOUR });
    for (let k = 0; k < 6; k++) {
      for (let repeat = 0; repeat <= k; repeat++) covisit.observe(behaviour(`old${k}-${repeat}`, 'a', T0));
      for (let repeat = 0; repeat <= k; repeat++) covisit.observe(behaviour(`old${k}-${repeat}`, `stale${k}`, T0 + 1));
    }
    expect(covisit.neighbours('a', 10, T0)).toHaveLength(6);
    covisit.observe(behaviour('new', 'a', T0 + 5 * HOUR));
    covisit.observe(behaviour('new', 'fresh', T0 + 5 * HOUR + 1));
    // The 7th neighbour triggered a pruning to the 3 strongest stale ones (seen 6, 5 and 4 times), then joined them.
    expect(ids(covisit.neighbours('a', 10, T0 + 5 * HOUR))).toEqual(['fresh', 'stale5', 'stale4', 'stale3']);
  });

  it('with cosine similarity, prefers a neighbour seen with the item over one that is popular everywhere', () => {
    const feedAll = (covisit: CoVisitationRecaller) => {
      // 'blockbuster' follows 'a' for three users and is watched with everything else by twenty more; 'niche' follows
      // 'a' for two users and is seen nowhere else.
      for (let u = 0; u < 3; u++) {
        covisit.observe(behaviour(`fan${u}`, 'a', T0));
        covisit.observe(behaviour(`fan${u}`, 'blockbuster', T0 + 1));
      }
      for (let u = 0; u < 2; u++) {
        covisit.observe(behaviour(`niche${u}`, 'a', T0));
        covisit.observe(behaviour(`niche${u}`, 'niche', T0 + 1));
      }
      for (let u = 0; u < 20; u++) {
        covisit.observe(behaviour(`crowd${u}`, `other${u}`, T0));
        covisit.observe(behaviour(`crowd${u}`, 'blockbuster', T0 + 1));
      }
    };
    const counts = new CoVisitationRecaller();
    const cosine = new CoVisitationRecaller({ similarity: 'cosine', shrinkage: 0 });
    feedAll(counts);
    feedAll(cosine);
    expect(ids(counts.recall(request({ recentItems: ['a'], now: T0 + 1 })))).toEqual(['blockbuster', 'niche']);
    const result = cosine.recall(request({ recentItems: ['a'], now: T0 + 1 }));
    expect(ids(result)).toEqual(['niche', 'blockbuster']);
    // cos(a, niche) = 2 / sqrt(5 * 2); cos(a, blockbuster) = 3 / sqrt(5 * 23).
    expect(result[0]!.score).toBeCloseTo(2 / Math.sqrt(10), 6);
    expect(result[1]!.score).toBeCloseTo(3 / Math.sqrt(115), 6);
    expect(() => new CoVisitationRecaller({ similarity: 'jaccard' as 'cosine' })).toThrow(/similarity/);
  });

  it('weighs pairs by direction and by distance in the sequence when asked', () => {
    const covisit = new CoVisitationRecaller({ backwardWeight: 0.25, distanceDecay: 0.5 });
    covisit.observe(behaviour('u', 'a', T0));
    covisit.observe(behaviour('u', 'b', T0 + 1));
    covisit.observe(behaviour('u', 'c', T0 + 2));
    // a -> b (1), b -> c (1) and a -> c at distance 1 (0.5); backwards a quarter of each.
    const score = (from: string, to: string) => covisit.neighbours(from, 5, T0 + 2).find((c) => c.itemId === to)?.score ?? 0;
    expect(score('a', 'b')).toBeCloseTo(1, 3);
    expect(score('b', 'a')).toBeCloseTo(0.25, 3);
    expect(score('a', 'c')).toBeCloseTo(0.5, 3);
    expect(score('c', 'a')).toBeCloseTo(0.125, 3);
    expect(score('c', 'b')).toBeCloseTo(0.25, 3);
    expect(() => new CoVisitationRecaller({ backwardWeight: 2 })).toThrow(/backwardWeight/);
  });

  it('returns the head of a full stable sort, ties included, when it ranks only the best of many touched (property)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ user: fc.integer({ min: 0, max: 8 }), item: fc.integer({ min: 0, max: 60 }) }), { minLength: 2, maxLength: 300, size: 'max' }),
        fc.array(fc.integer({ min: 0, max: 60 }), { minLength: 1, maxLength: 4 }),
        fc.integer({ min: 1, max: 12 }),
        (events, recent, count) => {
          // Whole-second steps and integer weights: many neighbours tie, which is where a heap and a sort can differ.
          const covisit = new CoVisitationRecaller({ windowMs: 10 * HOUR, halfLifeMs: 1e15 });
          events.forEach(({ user, item: i }, k) => covisit.observe(behaviour(`u${user}`, `i${i}`, T0 + k * 1000)));
          const recentItems = recent.map((i) => `i${i}`);
          const now = T0 + events.length * 1000;
          const full = covisit.recall(request({ recentItems, count: 10_000, now }));
          expect(covisit.recall(request({ recentItems, count, now }))).toEqual(full.slice(0, count));
        },
      ),
      { numRuns: 300 },
    );
  });

  it('keeps histories for a bounded number of users', () => {
    const histories = new UserHistories({ length: 2, maxUsers: 2 });
    histories.push('u1', { itemId: 'a', ts: 1, weight: 1 });
    histories.push('u2', { itemId: 'b', ts: 1, weight: 1 });
    histories.push('u1', { itemId: 'c', ts: 3, weight: 1 });
    histories.push('u1', { itemId: 'd', ts: 2, weight: 1 });
    histories.push('u3', { itemId: 'e', ts: 1, weight: 1 });
    expect(histories.size).toBe(2);
    expect(histories.get('u2')).toEqual([]);
    expect(histories.get('u1').map((e) => e.itemId)).toEqual(['d', 'c']);
  });
});

describe('fresh recall', () => {
  it('returns the newest published items first, never future or too old ones', () => {
    const catalogue = new ItemCatalogue();
    const fresh = new FreshRecaller({ catalogue, maxAgeMs: 48 * HOUR, halfLifeMs: 24 * HOUR });
    const feed = (event: ItemEvent) => {
      catalogue.observe(event);
      fresh.observe(event);
    };
    feed(item('ancient', { publishedAt: T0 - 72 * HOUR }));
    feed(item('day-old', { publishedAt: T0 - 24 * HOUR }));
    feed(item('seen-now', {}, T0 - HOUR));
    feed(item('tomorrow', { publishedAt: T0 + 24 * HOUR }));
    feed(item('hour-old', { publishedAt: T0 - 2 * HOUR }));
    feed(item('hour-old', { publishedAt: T0 - 30 * 60_000 }, T0));
    const result = fresh.recall(request());
    expect(ids(result)).toEqual(['hour-old', 'seen-now', 'day-old']);
    expect(result[2]!.score).toBeCloseTo(0.5, 10);
    expect(ids(fresh.recall(request({ count: 1 })))).toEqual(['hour-old']);
    expect(ids(fresh.recall(request({ now: T0 + 25 * HOUR })))).toContain('tomorrow');
  });
});

describe('recent context recall', () => {
  it('re-surfaces unconverted recent items and expands the recent genres by popularity', () => {
    const catalogue = new ItemCatalogue();
    const popularity = new PopularityRecaller({ catalogue, attributes: ['genre'] });
    const context = new RecentContextRecaller({ catalogue, popularity, attributes: ['genre'], recencyDecay: 0.5 });
    const feed = (event: BehaviourEvent | ItemEvent) => {
      if (event.type === 'item') catalogue.observe(event);
      popularity.observe(event);
      context.observe(event);
    };
    for (const [id, genre] of [['seen1', 'jazz'], ['bought', 'jazz'], ['jazz-hit', 'jazz'], ['jazz-minor', 'jazz'], ['rock-hit', 'rock'], ['pop-hit', 'pop']] as const) {
      feed(item(id, { genre }));
    }
    for (let k = 0; k < 4; k++) feed(behaviour(`x${k}`, 'jazz-hit', T0));
    feed(behaviour('x9', 'jazz-minor', T0));
    for (let k = 0; k < 4; k++) feed(behaviour(`y${k}`, 'rock-hit', T0));
    for (let k = 0; k < 9; k++) feed(behaviour(`z${k}`, 'pop-hit', T0));
    feed(behaviour('me', 'bought', T0, 'purchase'));

    const result = context.recall(request({ userId: 'me', recentItems: ['seen1', 'bought'] }));
    expect(ids(result)).toEqual(['seen1', 'jazz-hit', 'jazz-minor']);
    expect(result[0]!.score).toBe(1);
    expect(result[1]!.score).toBeCloseTo(1, 10);
    expect(result[2]!.score).toBeCloseTo(1 / 4, 10);
    expect(ids(context.recall(request({ userId: 'someone-else', recentItems: ['bought'] })))).toContain('bought');
  });
});
