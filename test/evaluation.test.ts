import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ItemKnnRecommender } from '../models/evaluation/itemknn.js';
import { LatencyRecorder, LATENCY_BOUNDS_MS } from '../models/evaluation/latency.js';
import { MetricsOverTime } from '../models/evaluation/metrics-over-time.js';
import { CountRanking, PopularityRecommender } from '../models/evaluation/popularity.js';
import { evaluatePrequential } from '../models/evaluation/prequential.js';
import { ndcg, reciprocalRank, selfInformation } from '../models/evaluation/ranking.js';
import type { Recommender } from '../models/evaluation/recommender.js';
import type { BehaviourEvent, InputEvent, ItemEvent } from '../schema/events.js';

let seq = 0;
function rating(userId: string, itemId: string, value: number, ts: number): BehaviourEvent {
  return { id: `r${seq++}`, type: 'rating', userId, itemId, ts, value };
}

/** A unit-test fake: answers from a script and records what the harness showed it. */
class ScriptedRecommender implements Recommender {
  readonly calls: { userId: string; k: number; now: number; exclude: string[] }[] = [];
  readonly learned: string[] = [];
  constructor(
    readonly name: string,
    private readonly answer: (userId: string) => string[],
  ) {}
  recommend(userId: string, k: number, now: number, exclude: ReadonlySet<string>): string[] {
    this.calls.push({ userId, k, now, exclude: [...exclude].sort() });
    return this.answer(userId);
  }
  learn(event: InputEvent): void {
    this.learned.push(event.type === 'item' ? `item:${event.itemId}` : event.type === 'user' ? `user:${event.userId}` : (event as BehaviourEvent).id);
  }
}

describe('prequential harness', () => {
  it('scores positive events on items new to the user, before learning them, with the user’s items excluded', async () => {
    const events: InputEvent[] = [
      { type: 'item', itemId: 'a', ts: 0, fields: {} },
      rating('u', 'a', 5, 1), // scored: nothing learned yet
      rating('u', 'b', 2, 2), // not scored: a low rating, yet excluded afterwards
      rating('u', 'c', 4, 3), // scored
      rating('u', 'c', 5, 4), // not scored: c is not new to u
      { id: 'imp', type: 'impression', userId: 'u', itemId: 'd', ts: 5 }, // not scored, not excluded
      rating('v', 'c', 4.5, 6), // scored
    ];
    const ids = events.map((e) => ('id' in e ? e.id : `item:${(e as ItemEvent).itemId}`));
    const fixed = new ScriptedRecommender('fixed', () => ['x', 'c', 'a']);
    const result = await evaluatePrequential([fixed], { test: events }, { k: 2 });

    expect(fixed.calls).toEqual([
      { userId: 'u', k: 2, now: 1, exclude: [] },
      { userId: 'u', k: 2, now: 3, exclude: ['a', 'b'] },
      { userId: 'v', k: 2, now: 6, exclude: [] },
    ]);
    expect(fixed.learned).toEqual(ids);
    expect(result.events).toBe(6);
    expect(result.evaluated).toBe(3);
    expect(result.metadataEvents).toBe(1);
    // Lists after keeping the first K valid: [x, c] for u@1 (miss on a), [x, c] for u@3 (c at rank 1), [x, c] for v (c at rank 1).
    const m = result.models.fixed!;
    expect(m.hr).toBeCloseTo(2 / 3);
    expect(m.ndcg).toBeCloseTo((2 * ndcg(1)) / 3);
    expect(m.mrr).toBeCloseTo((2 * reciprocalRank(1)) / 3);
    expect(m.invalidItems).toBe(3); // 'a' beyond K each time
    expect(result.catalogue).toBe(4);
    expect(m.coverage).toBeCloseTo(2 / 4);
    expect(m.latency.count).toBe(3);
  });

  it('drops excluded and duplicate items and counts them against the model', async () => {
    const cheat = new ScriptedRecommender('cheat', () => ['a', 'a', 'b']);
    const result = await evaluatePrequential([cheat], { test: [rating('u', 'a', 5, 1), rating('u', 'b', 5, 2)] }, { k: 3 });
    // Second call: a is excluded (u has it), so only b counts, at rank 0.
    expect(result.models.cheat!.invalidItems).toBe(1 + 2);
    expect(result.models.cheat!.hr).toBe(1);
    expect(result.models.cheat!.ndcg).toBeCloseTo((1 + ndcg(0)) / 2);
  });

  it('learns the training stream without scoring it, then scores the test stream', async () => {
    const model = new ScriptedRecommender('m', () => ['b']);
    const result = await evaluatePrequential([model], { train: [rating('u', 'a', 5, 1), rating('w', 'b', 5, 2)], test: [rating('u', 'b', 5, 3), rating('u', 'a', 5, 4)] });
    expect(model.calls).toEqual([{ userId: 'u', k: 10, now: 3, exclude: ['a'] }]);
    expect(result.trainEvents).toBe(2);
    expect(result.events).toBe(2);
    expect(result.evaluated).toBe(1);
    expect(result.models.m!.hr).toBe(1);
  });

  it('feeds every model the same events and keeps their figures apart', async () => {
    const right = new ScriptedRecommender('right', () => ['a']);
    const wrong = new ScriptedRecommender('wrong', () => ['z']);
    const result = await evaluatePrequential([right, wrong], { test: [rating('u', 'a', 5, 1)] });
    expect(right.learned).toEqual(wrong.learned);
    expect(result.models.right!.hr).toBe(1);
    expect(result.models.wrong!.hr).toBe(0);
  });

  it('names the model that fails, keeping the cause', async () => {
    const broken: Recommender = {
      name: 'broken',
      recommend: async () => {
        throw new Error('store down');
      },
      learn: () => {},
    };
    const failure = await evaluatePrequential([broken], { test: [rating('u', 'a', 5, 1)] }).catch((error: Error) => error);
    expect((failure as Error).message).toMatch(/model "broken" failed to recommend for user u at 1/);
    expect(((failure as Error).cause as Error).message).toBe('store down');
  });

  it('rejects duplicate model names and a non-positive K', async () => {
    const a = new ScriptedRecommender('same', () => []);
    await expect(evaluatePrequential([a, a], { test: [] })).rejects.toThrow(/"same" appears twice/);
    await expect(evaluatePrequential([a], { test: [] }, { k: 0 })).rejects.toThrow(/k must be a positive integer/);
  });

  it('groups figures over time by scored-event count', async () => {
    const model = new ScriptedRecommender('m', () => ['i1']);
    const events = Array.from({ length: 5 }, (_, i) => rating(`u${i}`, i < 3 ? 'i1' : 'i9', 5, i));
    const result = await evaluatePrequential([model], { test: events }, { buckets: { by: 'events', size: 2 } });
    expect(result.overTime.series.map((b) => [b.evaluatedBefore, b.startTs, b.endTs, b.models.m!.evaluated, b.models.m!.hr])).toEqual([
      [0, 0, 1, 2, 1],
      [2, 2, 3, 2, 0.5],
      [4, 4, 4, 1, 0],
    ]);
  });
});

describe('metrics', () => {
  it('ranks and novelty', () => {
    expect(ndcg(0)).toBe(1);
    expect(ndcg(2)).toBeCloseTo(0.5);
    expect(ndcg(-1)).toBe(0);
    expect(reciprocalRank(3)).toBe(0.25);
    expect(selfInformation(3, 6, 2)).toBeCloseTo(1); // (3+1)/(6+2) = 1/2
    expect(selfInformation(0, 100, 10)).toBeGreaterThan(selfInformation(50, 100, 10));
  });

  it('buckets by event time', () => {
    const over = new MetricsOverTime({ by: 'time', ms: 10 }, ['m']);
    for (const ts of [100, 105, 112, 135]) over.bucketFor(ts, 1).get('m')!.add(0, ['x'], 1);
    over.close(1);
    expect(over.buckets().map((b) => [b.index, b.models.m!.evaluated])).toEqual([
      [0, 2],
      [1, 1],
      [3, 1],
    ]);
  });

  it('latency histogram counts every call once, percentiles are exact', () => {
    const recorder = new LatencyRecorder();
    const samples = Array.from({ length: 2000 }, (_, i) => (i % 100) / 10); // 0 to 9.9 ms
    for (const ms of samples) recorder.record(ms);
    const summary = recorder.summary();
    expect(summary.count).toBe(2000);
    expect(summary.histogram.counts.reduce((a, b) => a + b, 0)).toBe(2000);
    expect(summary.histogram.counts).toHaveLength(LATENCY_BOUNDS_MS.length + 1);
    expect(summary.p50Ms).toBeCloseTo(5);
    expect(summary.maxMs).toBeCloseTo(9.9);
    // Bucket "<= 1 ms" holds 0.1 .. 1.0 above 0.5: 0.6, 0.7, 0.8, 0.9, 1.0 -> 5 of every 100.
    expect(summary.histogram.counts[LATENCY_BOUNDS_MS.indexOf(1)]).toBe(100);
  });
});

describe('popularity baseline', () => {
  it('keeps items sorted by count under increments', () => {
    fc.assert(
      fc.property(fc.array(fc.constantFrom('a', 'b', 'c', 'd', 'e', 'f'), { maxLength: 80 }), (increments) => {
        const ranking = new CountRanking();
        const counts = new Map<string, number>();
        for (const item of increments) {
          ranking.increment(item);
          counts.set(item, (counts.get(item) ?? 0) + 1);
        }
        const top = ranking.top(10, new Set());
        expect(new Set(top)).toEqual(new Set(counts.keys()));
        for (let i = 1; i < top.length; i++) expect(counts.get(top[i - 1]!)!).toBeGreaterThanOrEqual(counts.get(top[i]!)!);
        for (const [item, count] of counts) expect(ranking.count(item)).toBe(count);
      }),
    );
  });

  it('recommends the most liked items so far, minus the user’s own', () => {
    const model = new PopularityRecommender();
    for (const e of [rating('1', 'a', 5, 0), rating('2', 'a', 4, 1), rating('3', 'b', 5, 2), rating('4', 'c', 1, 3), rating('5', 'c', 1, 4), rating('6', 'c', 2, 5)]) model.learn(e);
    // c is rated often but disliked: it is not popular in the liked sense.
    expect(model.recommend('x', 3, 10, new Set())).toEqual(['a', 'b']);
    expect(model.recommend('x', 3, 10, new Set(['a']))).toEqual(['b']);
    const counting = new PopularityRecommender({ positiveOnly: false });
    for (const e of [rating('1', 'a', 5, 0), rating('4', 'c', 1, 3), rating('5', 'c', 1, 4)]) counting.learn(e);
    expect(counting.recommend('x', 2, 10, new Set())).toEqual(['c', 'a']);
  });
});

describe('item-kNN baseline', () => {
  it('recommends what co-occurs with the user’s recent items, normalised by popularity', () => {
    const model = new ItemKnnRecommender({ shrinkage: 0 });
    let ts = 0;
    // x co-occurs with y for two users and with z for one; p is popular everywhere, but with nothing in particular.
    for (const [user, items] of [
      ['a', ['x', 'y']],
      ['b', ['x', 'y']],
      ['c', ['x', 'z']],
      ['d', ['p']],
      ['e', ['p']],
      ['f', ['p']],
      ['g', ['p']],
    ] as const) {
      for (const item of items) model.learn(rating(user, item, 5, ts++));
    }
    expect(model.recommend('q', 3, ts, new Set())).toEqual(['p', 'x', 'y']); // no history: popularity
    model.learn(rating('q', 'x', 5, ts++));
    const list = model.recommend('q', 3, ts, new Set(['x']));
    expect(list.slice(0, 2)).toEqual(['y', 'z']);
    expect(list[2]).toBe('p'); // filled from popularity
  });

  it('weighs recent items more', () => {
    const model = new ItemKnnRecommender({ shrinkage: 0, decay: 0.5 });
    let ts = 0;
    for (const [user, items] of [
      ['a', ['old', 'fromOld']],
      ['b', ['new', 'fromNew']],
    ] as const) {
      for (const item of items) model.learn(rating(user, item, 5, ts++));
    }
    model.learn(rating('q', 'old', 5, ts++));
    model.learn(rating('q', 'new', 5, ts++));
    expect(model.recommend('q', 2, ts, new Set(['old', 'new']))).toEqual(['fromNew', 'fromOld']);
  });

  it('only pairs items within the co-visitation window', () => {
    const model = new ItemKnnRecommender({ window: 1, shrinkage: 0 });
    let ts = 0;
    for (const item of ['first', 'second', 'third']) model.learn(rating('a', item, 5, ts++));
    model.learn(rating('q', 'first', 5, ts++));
    // first-second co-occur; first-third were 2 apart. third still comes, but only as a popularity fill.
    expect(model.recommend('q', 2, ts, new Set(['first']))).toEqual(['second', 'third']);
    const strict = new ItemKnnRecommender({ window: 1, shrinkage: 0 });
    for (const item of ['first', 'second', 'third']) strict.learn(rating('a', item, 5, ts++));
    strict.learn(rating('q', 'third', 5, ts++));
    expect(strict.recommend('q', 1, ts, new Set(['third']))).toEqual(['second']);
  });

  it('validates its options', () => {
    expect(() => new ItemKnnRecommender({ window: 0 })).toThrow(/window/);
    expect(() => new ItemKnnRecommender({ decay: 1.5 })).toThrow(/decay/);
  });
});
