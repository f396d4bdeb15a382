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
