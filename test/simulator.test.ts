import { describe, expect, it } from 'vitest';
import { oraclePolicy, randomPolicy, simulate } from '../pipelines/simulator/loop.js';
import { World } from '../pipelines/simulator/world.js';

describe('simulated world', () => {
  it('is reproducible from its seed', () => {
    const a = new World({ seed: 7, items: 50, users: 20 });
    const b = new World({ seed: 7, items: 50, users: 20 });
    expect(a.attraction(a.users[3]!, a.items[9]!)).toBe(b.attraction(b.users[3]!, b.items[9]!));
  });

  it('makes users prefer their own genre and look less at lower positions', () => {
    const world = new World({ seed: 1, items: 200, users: 50, genres: 5 });
    for (const user of world.users.slice(0, 10)) {
      const mean = (own: boolean) => {
        const items = world.items.filter((i) => (i.genre === world.genreNames[user.genre]) === own);
        return items.reduce((s, i) => s + world.attraction(user, i), 0) / items.length;
      };
      expect(mean(true)).toBeGreaterThan(2 * mean(false));
    }
    expect(world.examination(0)).toBe(1);
    expect(world.examination(5)).toBeLessThan(world.examination(1));
  });

  it('drift moves users to another genre', () => {
    const world = new World({ seed: 3, items: 50, users: 500, genres: 4 });
    const before = world.users.map((u) => u.genre);
    world.drift(1);
    expect(world.users.every((u, i) => u.genre !== before[i])).toBe(true);
  });
});

describe('a changing catalogue', () => {
  it('adds new items that are more attractive while new, the same way in every copy of a world', () => {
    const a = new World({ seed: 4, items: 40, users: 10, noveltyBoost: 2, noveltyHalfLifeMs: 1000 });
    const b = new World({ seed: 4, items: 40, users: 10, noveltyBoost: 2, noveltyHalfLifeMs: 1000 });
    a.random();
    a.advance(5000);
    b.advance(5000);
    const fresh = a.arrive(3);
    expect(fresh.map((i) => i.itemId)).toEqual(['item-40', 'item-41', 'item-42']);
    expect(a.items).toHaveLength(43);
    expect(a.item('item-41')).toBe(fresh[1]);
    // Click draws do not change what arrives: the world's changes have a generator of their own.
    expect(b.arrive(3).map((i) => Array.from(i.vector))).toEqual(fresh.map((i) => Array.from(i.vector)));
    const user = a.users[0]!;
    const logit = (p: number) => Math.log(p / (1 - p));
    const now = logit(a.attraction(user, fresh[0]!));
    a.advance(6000);
    expect(now - logit(a.attraction(user, fresh[0]!))).toBeCloseTo(1, 6);
    // The initial catalogue arrived at time 0: six half-lives ago.
    expect(logit(a.attraction(user, a.items[0]!))).toBeCloseTo(logit(new World({ seed: 4, items: 40, users: 10 }).attraction(user, a.items[0]!)) + 2 * 2 ** -6, 6);
  });

  it('moves item appeal at each drift by the quality drift, keeping its spread', () => {
    const world = new World({ seed: 6, items: 2000, users: 10, qualityDrift: 0.6 });
    const before = world.items.map((i) => i.quality);
    world.drift(0);
    const after = world.items.map((i) => i.quality);
    const mean = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;
    const sd = (xs: number[]) => Math.sqrt(mean(xs.map((x) => (x - mean(xs)) ** 2)));
    const correlation = mean(before.map((x, i) => (x - mean(before)) * (after[i]! - mean(after)))) / (sd(before) * sd(after));
    expect(correlation).toBeGreaterThan(0.75);
    expect(correlation).toBeLessThan(0.85);
    expect(sd(after)).toBeCloseTo(sd(before), 1);
    expect(() => new World({ qualityDrift: 1.5 })).toThrow(/qualityDrift/);
  });
});

describe('closed-loop simulation', () => {
  it('gives the oracle zero regret and a higher CTR than random ranking', async () => {
    const world = new World({ seed: 5, items: 300, users: 300 });
    const oracle = await simulate(world, oraclePolicy(world), { steps: 2000 });
    const random = await simulate(world, randomPolicy(world), { steps: 2000 });
    expect(oracle.regret).toBeCloseTo(0, 6);
    expect(random.regret).toBeGreaterThan(100);
    expect(oracle.ctr).toBeGreaterThan(2 * random.ctr);
    expect(oracle.ctrOverTime).toHaveLength(20);
    expect(oracle.impressions).toBe(20_000);
  });

  it('tells the policy about arriving items before it serves with them', async () => {
    const world = new World({ seed: 2, items: 30, users: 5 });
    const arrived: string[] = [];
    await simulate(
      world,
      {
        name: 'probe',
        recommend: async () => world.items.slice(-3).map((i) => i.itemId),
        observe: async (events) => {
          for (const e of events) if (e.type === 'impression') expect(arrived.includes(e.itemId) || Number(e.itemId.slice(5)) < 30).toBe(true);
        },
        addItems: async (events) => {
          for (const e of events) {
            expect(e.type).toBe('item');
            arrived.push(e.itemId);
          }
        },
      },
      { steps: 100, arrivals: { everySteps: 25, count: 4 } },
    );
    expect(arrived).toHaveLength(12);
    expect(world.items).toHaveLength(42);
    await expect(simulate(world, randomPolicy(world), { steps: 10, arrivals: { everySteps: 0, count: 1 } })).rejects.toThrow(/arrivals/);
  });

  it('tells the policy every impression and click in event time', async () => {
    const world = new World({ seed: 9, items: 100, users: 10 });
    const seen: string[] = [];
    let clicks = 0;
    const result = await simulate(
      world,
      {
        name: 'probe',
        recommend: async () => world.items.slice(0, 5).map((i) => i.itemId),
        observe: async (events) => {
          for (const e of events) {
            seen.push(e.type);
            if (e.type === 'click') {
              clicks++;
              const impression = events.find((x) => x.type === 'impression' && x.position === e.position)!;
              expect(e.ts).toBeGreaterThan(impression.ts);
              expect(e.requestId).toBe(impression.requestId);
            }
          }
        },
      },
      { steps: 300, listSize: 5 },
    );
    expect(seen.filter((t) => t === 'impression')).toHaveLength(1500);
    expect(clicks).toBe(result.clicks);
  });
});
