import { describe, expect, it } from 'vitest';
import { MemoryFeatureStore } from '../connectors/memory-store.js';
import { mulberry32 } from '../models/random.js';
import { RowEncoder } from '../models/row-features.js';
import { coldStartPredictor, OnlineRanker } from '../operators/rank.js';
import { recallStack } from '../pipelines/recall-stack.js';
import { ServingPipeline } from '../pipelines/serving.js';
import type { BehaviourEvent, InputEvent } from '../schema/events.js';

async function servingWith(explorationShare: number, logged: BehaviourEvent[] = []) {
  const store = new MemoryFeatureStore();
  const stack = recallStack();
  const events: InputEvent[] = [];
  for (let i = 0; i < 60; i++) events.push({ type: 'item', itemId: `i${i}`, ts: 1, fields: Object.assign(Object.create(null), { genres: [`g${i % 3}`] }) });
  for (let u = 0; u < 30; u++) for (let k = 0; k < 4; k++) events.push({ id: `${u}-${k}`, type: 'click', userId: `u${u}`, itemId: `i${(u * 5 + k) % 60}`, ts: 1000 + u * 10 + k });
  await store.update(events);
  for (const e of events) if (e.type !== 'user') stack.recaller.observe(e);
  const encoder = new RowEncoder({ bits: 12 });
  return new ServingPipeline({
    store,
    recaller: stack.recaller,
    rankers: { default: new OnlineRanker('ftrl', encoder, coldStartPredictor(encoder), 'cold-start') },
    reranker: stack.reranker,
    explorationShare,
    random: mulberry32(3),
    clock: () => 10_000,
    logImpressions: (impressions) => logged.push(...impressions),
  });
}

describe('ServingPipeline', () => {
  it('gives the configured share of slots to exploration, from recalled candidates that missed the list', async () => {
    const plain = await (await servingWith(0)).recommend({ requestId: 'a', userId: 'u1', count: 10 });
    expect(plain.items.some((i) => i.source === 'exploration')).toBe(false);
    const explored = await (await servingWith(1)).recommend({ requestId: 'b', userId: 'u1', count: 10 });
    expect(explored.items).toHaveLength(10);
    expect(explored.items.every((i) => i.source === 'exploration')).toBe(true);
    const planned = new Set(plain.items.map((i) => i.itemId));
    expect(explored.items.some((i) => planned.has(i.itemId))).toBe(false);
    expect(new Set(explored.items.map((i) => i.itemId)).size).toBe(10);
  });

  it('logs one impression per served item with its position and request id', async () => {
    const logged: BehaviourEvent[] = [];
    const response = await (await servingWith(0, logged)).recommend({ requestId: 'r', userId: 'u2', count: 5 });
    expect(logged.map((e) => [e.type, e.itemId, e.position, e.requestId, e.ts])).toEqual(
      response.items.map((item, position) => ['impression', item.itemId, position, 'r', 10_000]),
    );
  });

  it('answers concurrent requests as it answers each alone, though they reuse feature-row buffers', async () => {
    const serving = await servingWith(0);
    const ask = (u: number) => serving.recommend({ requestId: `r${u}`, userId: `u${u}`, count: 5, explain: true });
    const answer = (response: Awaited<ReturnType<typeof ask>>) => response.items.map((item) => [item.itemId, item.score, item.explain]);
    const alone = [];
    for (let u = 0; u < 30; u++) alone.push(answer(await ask(u)));
    for (let round = 0; round < 2; round++) {
      const together = await Promise.all(Array.from({ length: 30 }, (_, u) => ask(u)));
      expect(together.map(answer)).toEqual(alone);
    }
  });
});
