import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { FeatureCache } from '../operators/features/cache.js';
import { decodeGlobals, decodeItem, decodeUser, encodeGlobals, encodeItem, encodeUser } from '../operators/features/codec.js';
import { DEFAULT_FEATURE_NAMES, featureNames, resolveFeatureConfig, type FeatureConfig } from '../operators/features/config.js';
import type { BehaviourEvent, BehaviourType, InputEvent } from '../schema/events.js';

const HOUR = 3_600_000;
const T0 = Date.UTC(2026, 0, 5, 10, 0, 0); // a Monday, 10:00 UTC
let nextId = 0;
function ev(type: BehaviourType, userId: string, itemId: string, ts: number): BehaviourEvent {
  return { id: `e${nextId++}`, type, userId, itemId, ts };
}
function item(itemId: string, fields: Record<string, unknown>, ts = T0): InputEvent {
  return { type: 'item', itemId, ts, fields: fields as never };
}
function feature(cache: FeatureCache, userId: string, itemId: string, ts: number, name: string): number {
  return cache.lookup(userId, [itemId], { ts }).get(0, name);
}

const small: FeatureConfig = {
  user: { counterTypes: ['click'], halfLivesMs: { '1h': HOUR }, histories: [{ name: 'clicked', types: ['click'], length: 3 }], affinitySlots: 2 },
  item: {
    windowTypes: ['impression', 'click'],
    windows: [{ name: '1h', lengthMs: HOUR, buckets: 4 }],
    ctrPriorWeight: 10,
    ctrPrior: 0.1,
    attributeFields: ['genre'],
    covisitNeighbours: 2,
    covisitRecent: 2,
    numericFields: ['price'],
    categoricalFields: { color: ['red', 'blue'] },
  },
  context: { categoricalFields: { device: ['mobile', 'desktop'] }, numericFields: ['slot'] },
};

describe('feature names', () => {
  it('follow the config in a stable order', () => {
    const names = featureNames(resolveFeatureConfig(small));
    expect(names).toEqual([
      'user_known', 'user_click_decayed_1h', 'user_history_clicked_size', 'user_last_seen_age_h', 'user_session_events', 'user_session_length_s',
      'item_known', 'item_impression_1h', 'item_click_1h', 'item_ctr', 'item_attribute_ctr', 'item_trending', 'item_age_h', 'item_price',
      'item_color=red', 'item_color=blue',
      'ui_interacted', 'ui_affinity', 'ui_covisit',
      'ctx_hour', 'ctx_day_of_week', 'ctx_device=mobile', 'ctx_device=desktop', 'ctx_slot',
    ]);
    expect(new FeatureCache().names).toEqual(DEFAULT_FEATURE_NAMES);
    expect(DEFAULT_FEATURE_NAMES).toContain('user_click_decayed_30d');
  });

  it('refuses configs it cannot honour', () => {
    expect(() => resolveFeatureConfig({ item: { windowTypes: ['click'] } })).toThrow(/impression and click/);
    expect(() => resolveFeatureConfig({ item: { windows: [{ name: 'x', lengthMs: 1500, buckets: 2 }] } })).toThrow(/bucket width/);
  });
});

describe('user features', () => {
  it('decays counters by event time, whatever the arrival order', () => {
    const events = [ev('click', 'u', 'a', T0), ev('click', 'u', 'b', T0 + HOUR), ev('click', 'u', 'c', T0 + 2 * HOUR)];
    for (const order of [[0, 1, 2], [2, 0, 1], [1, 2, 0]]) {
      const cache = new FeatureCache(small);
      for (const i of order) cache.update(events[i]!);
      // At T0 + 3h: 2^-3 + 2^-2 + 2^-1
      expect(feature(cache, 'u', 'a', T0 + 3 * HOUR, 'user_click_decayed_1h')).toBeCloseTo(0.875, 5);
      expect(feature(cache, 'u', 'a', T0 + 3 * HOUR, 'user_last_seen_age_h')).toBeCloseTo(1, 6);
    }
  });

  it('counts sessions split by the inactivity gap, late events included', () => {
    const cache = new FeatureCache(small);
    const gap = 30 * 60_000;
    cache.update(ev('view', 'u', 'a', T0));
    cache.update(ev('view', 'u', 'a', T0 + gap + 1)); // new session starts here
    cache.update(ev('view', 'u', 'a', T0 + gap + 60_000));
    cache.update(ev('view', 'u', 'a', T0 + gap - 1000)); // late, within the gap before the session start: joins it
    const at = T0 + gap + 120_000;
    expect(feature(cache, 'u', 'a', at, 'user_session_events')).toBe(3);
    expect(feature(cache, 'u', 'a', at, 'user_session_length_s')).toBeCloseTo((60_000 + 1000) / 1000, 3);
    expect(feature(cache, 'u', 'a', at + gap + 1, 'user_session_events')).toBe(0);
  });

  it('keeps the last N items per ring and marks interacted candidates', () => {
    const cache = new FeatureCache(small);
    ['a', 'b', 'c', 'd'].forEach((id, i) => cache.update(ev('click', 'u', id, T0 + i)));
    cache.update(ev('view', 'u', 'e', T0 + 10));
    expect(cache.recentItems('u', 'clicked')).toEqual(['d', 'c', 'b']);
    const rows = cache.lookup('u', ['a', 'b', 'd', 'e', 'zz'], { ts: T0 + 20 });
    expect([0, 1, 2, 3, 4].map((i) => rows.get(i, 'ui_interacted'))).toEqual([0, 1, 1, 0, 0]);
    expect(rows.get(0, 'user_history_clicked_size')).toBe(3);
  });

  it('learns decayed attribute affinities and matches them against candidates', () => {
    const cache = new FeatureCache({ ...small, user: { ...small.user, affinityHalfLifeMs: HOUR } });
    cache.update(item('rock1', { genre: 'rock' }));
    cache.update(item('jazz1', { genre: 'jazz' }));
    cache.update(item('both', { genre: ['rock', 'jazz'] }));
    cache.update(item('pop1', { genre: 'pop' }));
    cache.update(ev('click', 'u', 'rock1', T0)); // rock: 1
    cache.update(ev('purchase', 'u', 'jazz1', T0 + HOUR)); // rock decays to 0.5, jazz: 5
    const rows = cache.lookup('u', ['rock1', 'jazz1', 'both', 'pop1'], { ts: T0 + 5 * HOUR });
    expect(rows.get(0, 'ui_affinity')).toBeCloseTo(0.5 / 5.5, 5);
    expect(rows.get(1, 'ui_affinity')).toBeCloseTo(5 / 5.5, 5);
    expect(rows.get(2, 'ui_affinity')).toBeCloseTo(1, 5);
    expect(rows.get(3, 'ui_affinity')).toBe(0);
    // Two slots: pop (weight 2 * 2^-1 at T0 + 2h, relative to jazz at 5 * 2^-1) replaces the weaker rock.
    cache.update(ev('like', 'u', 'pop1', T0 + 2 * HOUR));
    const after = cache.lookup('u', ['rock1', 'pop1'], { ts: T0 + 2 * HOUR });
    expect(after.get(0, 'ui_affinity')).toBe(0);
    expect(after.get(1, 'ui_affinity')).toBeCloseTo(2 / 4.5, 5);
  });
});

describe('item features', () => {
  it('counts events in bucketed windows relative to the lookup time, out of order included', () => {
    const cache = new FeatureCache(small);
    const quarter = HOUR / 4;
    // Buckets of 15 min. Arrival order is shuffled on purpose.
    const times = [T0 + 3 * quarter + 1, T0 + 1, T0 + quarter + 5, T0 + 2 * quarter, T0 + 3 * quarter + 2, T0 + 10];
    for (const t of times) cache.update(ev('impression', `u${t}`, 'x', t));
    cache.update(ev('click', 'v', 'x', T0 + quarter));
    expect(feature(cache, 'q', 'x', T0 + 3 * quarter + 100, 'item_impression_1h')).toBe(6);
    expect(feature(cache, 'q', 'x', T0 + 3 * quarter + 100, 'item_click_1h')).toBe(1);
    // One bucket later the first bucket (2 impressions) has left the window.
    expect(feature(cache, 'q', 'x', T0 + 4 * quarter, 'item_impression_1h')).toBe(4);
    // A new bucket replaces the oldest; an event older than the retained buckets is not counted.
    cache.update(ev('impression', 'w', 'x', T0 + 4 * quarter + 1));
    cache.update(ev('impression', 'w', 'x', T0 + 2));
    expect(feature(cache, 'q', 'x', T0 + 4 * quarter + 100, 'item_impression_1h')).toBe(5);
    // Lookups in the past do not see later buckets.
    expect(feature(cache, 'q', 'x', T0 + quarter - 1, 'item_impression_1h')).toBe(0);
  });

  it('agrees with counting the events themselves, for any arrival order and lookup time', () => {
    const quarter = HOUR / 4;
    const buckets = 4;
    fc.assert(
      fc.property(
        fc.array(fc.record({ click: fc.boolean(), at: fc.integer({ min: 0, max: 40 * quarter }) }), { maxLength: 80 }),
        fc.array(fc.integer({ min: -4 * quarter, max: 48 * quarter }), { minLength: 1, maxLength: 6 }),
        (stream, lookups) => {
          const cache = new FeatureCache(small);
          for (const [n, s] of stream.entries()) cache.update(ev(s.click ? 'click' : 'impression', `u${n % 3}`, 'x', T0 + s.at));
          const epochOf = (t: number) => Math.floor(t / quarter);
          // A bucket holds one epoch per residue: any event of a newer epoch with the same residue drops an event.
          const retained = stream.filter((s) => !stream.some((o) => epochOf(T0 + o.at) > epochOf(T0 + s.at) && (epochOf(T0 + o.at) - epochOf(T0 + s.at)) % buckets === 0));
          for (const offset of lookups) {
            const current = epochOf(T0 + offset);
            const inWindow = retained.filter((s) => epochOf(T0 + s.at) > current - buckets && epochOf(T0 + s.at) <= current);
            const rows = cache.lookup('q', ['x'], { ts: T0 + offset });
            expect(rows.get(0, 'item_impression_1h')).toBe(inWindow.filter((s) => !s.click).length);
            expect(rows.get(0, 'item_click_1h')).toBe(inWindow.filter((s) => s.click).length);
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it('counts exactly at or after the newest event, whatever lookups came in between', () => {
    const quarter = HOUR / 4;
    const buckets = 4;
    fc.assert(
      fc.property(
        fc.array(
          fc.oneof(
            fc.record({ kind: fc.constant('event' as const), item: fc.constantFrom('x', 'y'), click: fc.boolean(), at: fc.integer({ min: 0, max: 40 * quarter }) }),
            fc.record({ kind: fc.constant('lookup' as const), at: fc.integer({ min: -4 * quarter, max: 48 * quarter }) }),
          ),
          { maxLength: 120 },
        ),
        (steps) => {
          const cache = new FeatureCache(small);
          const seen: { click: boolean; at: number }[] = [];
          let newest = -Infinity;
          const epochOf = (t: number) => Math.floor((T0 + t) / quarter);
          const check = (at: number) => {
            const current = epochOf(at);
            const inWindow = seen.filter((s) => epochOf(s.at) > current - buckets && epochOf(s.at) <= current);
            const rows = cache.lookup('q', ['x'], { ts: T0 + at });
            expect(rows.get(0, 'item_impression_1h')).toBe(inWindow.filter((s) => !s.click).length);
            expect(rows.get(0, 'item_click_1h')).toBe(inWindow.filter((s) => s.click).length);
          };
          for (const [n, step] of steps.entries()) {
            if (step.kind === 'event') {
              cache.update(ev(step.click ? 'click' : 'impression', `u${n % 3}`, step.item, T0 + step.at));
              newest = Math.max(newest, step.at);
              if (step.item === 'x') seen.push(step);
            } else if (step.at >= newest) {
              check(step.at);
            } else {
              // Lookups in the past may move x's heads on (y's events let them); the checks after must not notice.
              cache.lookup('q', ['x'], { ts: T0 + step.at });
            }
          }
          if (newest > -Infinity) for (const ahead of [0, 1, quarter, 3 * quarter, 5 * quarter]) check(newest + ahead);
        },
      ),
      { numRuns: 400 },
    );
  });

  it('moves window heads on in a lookup only as far as the newest event', () => {
    const cache = new FeatureCache(small);
    const quarter = HOUR / 4;
    cache.update(ev('impression', 'u', 'x', T0));
    // Ahead of every event. Had this moved x's heads to its epoch, the event one bucket before T0 would share the
    // head's bucket and be dropped.
    expect(feature(cache, 'q', 'x', T0 + 3 * quarter, 'item_impression_1h')).toBe(1);
    cache.update(ev('impression', 'u', 'x', T0 - quarter));
    expect(feature(cache, 'q', 'x', T0 - quarter + 1, 'item_impression_1h')).toBe(1);
    expect(feature(cache, 'q', 'x', T0 + 1, 'item_impression_1h')).toBe(2);
    // y's event lets x's heads move on to its epoch; x's own late events still count after that.
    cache.update(ev('impression', 'u', 'y', T0 + 3 * quarter));
    expect(feature(cache, 'q', 'x', T0 + 3 * quarter, 'item_impression_1h')).toBe(1);
    cache.update(ev('impression', 'u', 'x', T0 + 2 * quarter));
    expect(feature(cache, 'q', 'x', T0 + 3 * quarter, 'item_impression_1h')).toBe(2);
    expect(feature(cache, 'q', 'x', T0 + 4 * quarter, 'item_impression_1h')).toBe(1);
  });

  it('smooths CTR toward the attribute CTR, itself smoothed toward the global CTR', () => {
    const cache = new FeatureCache({ ...small, item: { ...small.item, windows: [{ name: '1h', lengthMs: HOUR, buckets: 4 }] } });
    cache.update(item('a', { genre: 'rock', price: 9.5, color: 'blue' }));
    cache.update(item('b', { genre: 'rock' }));
    for (let i = 0; i < 10; i++) cache.update(ev('impression', `u${i}`, 'a', T0));
    for (let i = 0; i < 4; i++) cache.update(ev('click', `u${i}`, 'a', T0));
    for (let i = 0; i < 10; i++) cache.update(ev('impression', `u${i}`, 'b', T0));
    const rows = cache.lookup('q', ['a', 'b', 'new'], { ts: T0 });
    const global = (4 + 10 * 0.1) / (20 + 10); // 1/6
    const rock = (4 + 10 * global) / (20 + 10);
    expect(rows.get(0, 'item_attribute_ctr')).toBeCloseTo(rock, 5);
    expect(rows.get(0, 'item_ctr')).toBeCloseTo((4 + 10 * rock) / (10 + 10), 5);
    expect(rows.get(1, 'item_ctr')).toBeCloseTo((0 + 10 * rock) / (10 + 10), 5);
    expect(rows.get(2, 'item_ctr')).toBeCloseTo(global, 5);
    expect(rows.get(2, 'item_known')).toBe(0);
    expect(rows.get(0, 'item_price')).toBeCloseTo(9.5, 5);
    expect([rows.get(0, 'item_color=red'), rows.get(0, 'item_color=blue')]).toEqual([0, 1]);
  });

  it('keeps decaying CTR statistics right across a move of their time anchor', () => {
    const cache = new FeatureCache(small);
    cache.update(item('a', { genre: 'rock' }));
    cache.update(item('b', { genre: 'rock' }));
    for (let i = 0; i < 5; i++) cache.update(ev('click', `u${i}`, 'a', T0));
    const later = T0 + 500 * 24 * HOUR; // beyond 64 half-lives of the 1 h window: the anchor moves
    for (let i = 0; i < 10; i++) cache.update(ev('impression', `u${i}`, 'b', later));
    const global = (0 + 10 * 0.1) / (10 + 10);
    const rock = (0 + 10 * global) / (10 + 10);
    const rows = cache.lookup('q', ['b'], { ts: later });
    expect(rows.get(0, 'item_attribute_ctr')).toBeCloseTo(rock, 6);
    // One half-life on, every count has halved: 5 impressions' worth.
    const halfLater = (0 + 10 * ((0 + 1) / (5 + 10))) / (5 + 10);
    expect(cache.lookup('q', ['b'], { ts: later + HOUR }).get(0, 'item_attribute_ctr')).toBeCloseTo(halfLater, 6);
  });

  it('scores trending with exponential decay and ages items from publication or first sight', () => {
    const cache = new FeatureCache({ ...small, item: { ...small.item, trendingHalfLifeMs: HOUR } });
    cache.update(ev('purchase', 'u', 'x', T0 + HOUR)); // weight 5
    cache.update(ev('click', 'u', 'x', T0)); // late: 1 * 2^-1
    expect(feature(cache, 'q', 'x', T0 + 2 * HOUR, 'item_trending')).toBeCloseTo(5.5 / 2, 5);
    expect(feature(cache, 'q', 'x', T0 + 2 * HOUR, 'item_age_h')).toBeCloseTo(2, 6);
    cache.update(item('x', { publishedAt: new Date(T0 - 10 * HOUR).toISOString() }));
    expect(feature(cache, 'q', 'x', T0 + 2 * HOUR, 'item_age_h')).toBeCloseTo(12, 6);
  });

  it('scores co-visitation with the user recent items', () => {
    const cache = new FeatureCache(small);
    for (const u of ['u1', 'u2']) {
      cache.update(ev('click', u, 'a', T0));
      cache.update(ev('click', u, 'b', T0 + 1));
    }
    cache.update(ev('click', 'u3', 'a', T0));
    cache.update(ev('click', 'u3', 'c', T0 + 1));
    cache.update(ev('click', 'me', 'a', T0 + 5));
    const rows = cache.lookup('me', ['b', 'c', 'd'], { ts: T0 + 10 });
    expect([0, 1, 2].map((i) => rows.get(i, 'ui_covisit'))).toEqual([2, 1, 0]);
  });
});

describe('context features and rows', () => {
  it('writes hour, day of week and request fields into every row', () => {
    const cache = new FeatureCache({ ...small, context: { ...small.context, timezoneOffsetMinutes: 120 } });
    const rows = cache.lookup('nobody', ['a', 'b'], { ts: T0 + 14 * HOUR, fields: { device: 'desktop', slot: 3 } });
    for (const i of [0, 1]) {
      expect(rows.get(i, 'ctx_hour')).toBe(2); // 10 + 14 + 2 = 26 -> 02:00 on Tuesday
      expect(rows.get(i, 'ctx_day_of_week')).toBe(2);
      expect(rows.get(i, 'ctx_device=desktop')).toBe(1);
      expect(rows.get(i, 'ctx_device=mobile')).toBe(0);
      expect(rows.get(i, 'ctx_slot')).toBe(3);
      expect(rows.get(i, 'user_known')).toBe(0);
    }
    expect(rows.values.length).toBe(2 * rows.width);
  });

  it('assembles the same rows one candidate at a time as in a batch', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ t: fc.constantFrom<BehaviourType>('impression', 'click', 'view', 'purchase'), u: fc.integer({ min: 0, max: 3 }), i: fc.integer({ min: 0, max: 6 }), dt: fc.integer({ min: 0, max: 4 * HOUR }) }), { maxLength: 60 }),
        (stream) => {
          const cache = new FeatureCache(small);
          for (const s of stream) cache.update(ev(s.t, `u${s.u}`, `i${s.i}`, T0 + s.dt));
          const candidates = ['i0', 'i1', 'i2', 'i3', 'i4', 'i5', 'i6', 'i7'];
          const batch = cache.lookup('u0', candidates, { ts: T0 + 5 * HOUR });
          candidates.forEach((c, n) => expect(cache.lookup('u0', [c], { ts: T0 + 5 * HOUR }).row(0)).toEqual(batch.row(n)));
        },
      ),
      { numRuns: 50 },
    );
  });
});

describe('memory bound', () => {
  it('evicts users beyond the byte budget and keeps the recently used ones', () => {
    const cache = new FeatureCache({ ...small, memory: { maxBytes: 64 * 1024, itemShare: 0.5 } });
    const max = cache.users.maxCount;
    expect(max).toBeGreaterThan(100);
    for (let i = 0; i < max * 3; i++) {
      cache.update(ev('click', `u${i}`, 'a', T0 + i));
      if (i === max + 5) cache.update(ev('click', 'keep', 'a', T0 + i));
      if (i > max + 5 && i % 20 === 0) cache.lookup('keep', ['a'], { ts: T0 + i });
    }
    expect(cache.users.count).toBe(max);
    expect(cache.userSlot('keep')).toBeGreaterThanOrEqual(0);
    expect(cache.userSlot('u0')).toBe(-1);
    expect(cache.userSlot(`u${max * 3 - 1}`)).toBeGreaterThanOrEqual(0);
    expect(cache.bytes).toBeLessThanOrEqual(64 * 1024 * 1.2);
  });
});

describe('binary records', () => {
  it('round-trip every user and item into a fresh cache with the same rows, leaving zero words out', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            t: fc.constantFrom<BehaviourType>('impression', 'click', 'view', 'purchase', 'like'),
            u: fc.integer({ min: 0, max: 4 }),
            i: fc.integer({ min: 0, max: 8 }),
            dt: fc.integer({ min: 0, max: 30 * HOUR }),
            meta: fc.boolean(),
          }),
          { minLength: 1, maxLength: 80 },
        ),
        (stream) => {
          const cache = new FeatureCache(small);
          for (const s of stream) {
            if (s.meta) cache.update(item(`i${s.i}`, { genre: [`g${s.u}`, 'g9'], price: s.dt / HOUR, color: 'blue' }, T0 + s.dt));
            else cache.update(ev(s.t, `u${s.u}`, `i${s.i}`, T0 + s.dt));
          }
          const copy = new FeatureCache(small);
          decodeGlobals(copy, encodeGlobals(cache));
          for (let slot = 0; slot < cache.items.count; slot++) {
            const record = encodeItem(cache, slot);
            expect(record.byteLength).toBeLessThan(4 + cache.items.rows.stride + cache.itemIds[slot]!.length);
            expect(decodeItem(copy, record)).toBe(cache.itemIds[slot]);
          }
          for (let slot = 0; slot < cache.users.count; slot++) expect(decodeUser(copy, cache.users.keyOf(slot), encodeUser(cache, slot))).toBe(true);
          const candidates = Array.from({ length: 10 }, (_, n) => `i${n}`);
          for (let u = 0; u < 6; u++) {
            const context = { ts: T0 + 31 * HOUR, fields: { device: 'mobile', slot: 1 } };
            expect(Array.from(copy.lookup(`u${u}`, candidates, context).values)).toEqual(Array.from(cache.lookup(`u${u}`, candidates, context).values));
            expect(copy.recentItems(`u${u}`)).toEqual(cache.recentItems(`u${u}`));
          }
        },
      ),
      { numRuns: 40 },
    );
  });

  it('refuses records written under another config, and damaged ones', () => {
    const cache = new FeatureCache(small);
    cache.update(ev('click', 'u', 'a', T0));
    const other = new FeatureCache({ ...small, user: { ...small.user, affinitySlots: 3 } });
    expect(decodeUser(other, cache.users.keyOf(0), encodeUser(cache, 0))).toBe(false);
    expect(decodeItem(other, encodeItem(cache, 0))).toBeUndefined();
    const user = encodeUser(cache, 0);
    expect(decodeUser(new FeatureCache(small), cache.users.keyOf(0), user.subarray(0, user.byteLength - 1))).toBe(false);
    const item = encodeItem(cache, 0);
    expect(decodeItem(new FeatureCache(small), item.subarray(0, 8))).toBeUndefined();
  });
});
