import { firstValueFrom, from, toArray } from 'rxjs';
import { describe, expect, it } from 'vitest';
import { batchOf } from '../operators/batch.js';
import { ItemCatalogue } from '../operators/recall/catalogue.js';
import { CoVisitationRecaller } from '../operators/recall/covisitation.js';
import { FreshRecaller } from '../operators/recall/fresh.js';
import { MultiRecaller } from '../operators/recall/merge.js';
import { learnRecall, recallCandidates } from '../operators/recall/operators.js';
import { PopularityRecaller } from '../operators/recall/popular.js';
import { RecentContextRecaller } from '../operators/recall/recent-context.js';
import type { RecallEvent, RecallRequest } from '../operators/recall/types.js';
import type { ItemEvent } from '../schema/events.js';

const T0 = 1_700_000_000_000;
const GENRES = ['drama', 'comedy', 'horror', 'jazz'];

function build() {
  const catalogue = new ItemCatalogue();
  const popular = new PopularityRecaller({ catalogue, attributes: ['genre'] });
  return new MultiRecaller({
    catalogue,
    sources: [
      { recaller: popular, quota: 2 },
      { recaller: new CoVisitationRecaller(), quota: 2 },
      { recaller: new RecentContextRecaller({ catalogue, popularity: popular, attributes: ['genre'] }), quota: 2 },
      { recaller: new FreshRecaller({ catalogue }), quota: 1 },
    ],
  });
}

/** 80 items over 4 genres, and 40 users who each click in one genre, with comedy the most popular overall. */
function history(): RecallEvent[] {
  const events: RecallEvent[] = [];
  for (let i = 0; i < 80; i++) {
    events.push({ type: 'item', itemId: `i${i}`, ts: T0 - 1000 + i, fields: { genre: GENRES[i % 4]! } as ItemEvent['fields'] });
  }
  let ts = T0;
  for (let u = 0; u < 40; u++) {
    const genre = u < 20 ? 1 : u % 4;
    for (let k = 0; k < 6; k++) events.push({ id: `e${u}-${k}`, type: 'click', userId: `u${u}`, itemId: `i${genre + 4 * ((u + 3 * k) % 20)}`, ts: ts++ });
  }
  return events;
}

const genreOf = (itemId: string) => GENRES[Number(itemId.slice(1)) % 4];

describe('recall operators', () => {
  it('learn from event batches and answer request batches, one batch out per batch in', async () => {
    const recaller = build();
    const events = history();
    const passed = await firstValueFrom(from([batchOf(events.slice(0, 100)), batchOf(events.slice(100))]).pipe(learnRecall(recaller), toArray()));
    expect(passed.map((batch) => batch.items.length)).toEqual([100, events.length - 100]);
    expect(learnRecall(recaller).info).toMatchObject({ kind: 'recall-learn', params: { recaller: 'merged' } });

    const requests: RecallRequest[] = [
      { userId: 'new-user', count: 10, recentItems: [], now: T0 + 10_000 },
      { userId: 'u1', count: 10, recentItems: ['i1', 'i5'], now: T0 + 10_000, consumed: new Set(['i9']) },
    ];
    const [answered] = await firstValueFrom(from([batchOf(requests)]).pipe(recallCandidates(recaller), toArray()));
    expect(answered!.items).toHaveLength(2);
    const [cold, warm] = answered!.items;
    expect(cold!.request).toBe(requests[0]);
    expect(cold!.candidates).toHaveLength(10);
    expect(warm!.candidates.map((c) => c.itemId)).not.toContain('i9');
    expect(warm!.tookMs).toBeGreaterThanOrEqual(0);
  });

  it('shifts candidates toward a genre after the user clicks several items of it', () => {
    const recaller = build();
    for (const event of history()) recaller.observe(event);
    const share = (candidates: readonly { itemId: string }[], genre: string) => candidates.filter((c) => genreOf(c.itemId) === genre).length / candidates.length;

    const before = recaller.recall({ userId: 'fresh-user', count: 20, recentItems: [], now: T0 + 10_000 });
    const clicked = ['i3', 'i7', 'i11', 'i15'];
    let ts = T0 + 5000;
    for (const itemId of clicked) recaller.observe({ id: `mine-${itemId}`, type: 'click', userId: 'fresh-user', itemId, ts: ts++ });
    const after = recaller.recall({ userId: 'fresh-user', count: 20, recentItems: [...clicked].reverse(), now: T0 + 10_000 });

    expect(genreOf('i3')).toBe('jazz');
    expect(share(after, 'jazz')).toBeGreaterThan(share(before, 'jazz') + 0.25);
    expect(share(after, 'jazz')).toBeGreaterThan(0.5);
  });
});
