import { from, lastValueFrom, Subject, toArray, type OperatorFunction } from 'rxjs';
import { describe, expect, it } from 'vitest';
import { batchOf, type Batch } from '../operators/batch.js';
import { intervalJoin, type IntervalJoinSnapshot, type JoinSideRecord } from '../operators/interval-join.js';

interface Ev {
  readonly id: string;
  readonly type: 'impression' | 'click' | 'view';
  readonly userId: string;
  readonly ts: number;
}

const imp = (id: string, userId: string, ts: number): Ev => ({ id, type: 'impression', userId, ts });
const click = (id: string, userId: string, ts: number): Ev => ({ id, type: 'click', userId, ts });

function config(side: JoinSideRecord<Ev>[], extra: { maxStateItems?: number; flushOnComplete?: boolean } = {}) {
  return {
    left: (e: Ev) => e.type === 'impression',
    right: (e: Ev) => e.type === 'click',
    key: (e: Ev) => e.userId,
    timestamp: (e: Ev) => e.ts,
    lowerMs: 0,
    upperMs: 1000,
    sideOutput: { push: (r: JoinSideRecord<Ev>) => side.push(r) },
    ...extra,
  };
}

function run<B>(operator: OperatorFunction<Batch<Ev>, Batch<B>>, batches: Batch<Ev>[]): Promise<Batch<B>[]> {
  return lastValueFrom(operator(from(batches)).pipe(toArray()));
}

const pairIds = (b: Batch<{ left: Ev; right: Ev }>) => b.items.map((p) => `${p.left.id}-${p.right.id}`);
const sideOf = (side: JoinSideRecord<Ev>[]) => side.map((r) => `${r.reason}:${r.side}:${r.item.id}`);

describe('intervalJoin, pairs', () => {
  it('emits each match in the batch where its second side arrives, whatever the arrival order', async () => {
    const side: JoinSideRecord<Ev>[] = [];
    const join = intervalJoin({ ...config(side), mode: 'pairs' });
    const batches = [
      batchOf([imp('i1', 'u1', 100), click('c0', 'u1', 99), click('c1', 'u1', 600)], 0),
      batchOf([click('c2', 'u1', 1100), imp('i2', 'u1', 500), click('c3', 'u2', 700)], 50),
      batchOf([], 200),
    ];
    const out = await run(join, batches);
    expect(out.map((b) => pairIds(b).sort())).toEqual([['i1-c1'], ['i1-c2', 'i2-c1', 'i2-c2'], []]);
    expect(sideOf(side)).toEqual(['unmatched:right:c0', 'unmatched:right:c3']);
    out.forEach((b, i) => expect(b.ticket).toBe(batches[i]!.ticket));
    expect(out.map((b) => b.watermark)).toEqual([0, 50, 200]);
  });
});

describe('intervalJoin, pairs: what does not join', () => {
  it('diverts late clicks, unmatched impressions and bad timestamps, and ignores other events', async () => {
    const side: JoinSideRecord<Ev>[] = [];
    const join = intervalJoin({ ...config(side), mode: 'pairs' });
    const view: Ev = { id: 'v1', type: 'view', userId: 'u1', ts: 100 };
    const out = await run(join, [
      batchOf([imp('i1', 'u1', 100), imp('i2', 'u1', 3000), view], 2000),
      batchOf([click('late', 'u1', 1999), click('c1', 'u1', 3500), click('bad', 'u1', Number.NaN)], 2500),
    ]);
    expect(out.map((b) => pairIds(b))).toEqual([[], ['i2-c1']]);
    expect(sideOf(side)).toEqual(['unmatched:left:i1', 'late:right:late', 'invalid-timestamp:right:bad']);
    expect(join.state.stats).toMatchObject({ left: 2, right: 3, ignored: 1, emitted: 1, late: 1, unmatched: 1, invalid: 1 });
  });

  it('joins clicks before the impression when lowerMs is negative', async () => {
    const side: JoinSideRecord<Ev>[] = [];
    const join = intervalJoin({ ...config(side), lowerMs: -100, upperMs: 0, mode: 'pairs' });
    const out = await run(join, [batchOf([click('c1', 'u1', 950), click('c2', 'u1', 899), imp('i1', 'u1', 1000)], 0)]);
    expect(out.map((b) => pairIds(b))).toEqual([['i1-c1']]);
    expect(sideOf(side)).toEqual(['unmatched:right:c2']);
  });
});

describe('intervalJoin, grouped', () => {
  it('emits each impression once with all its clicks when the watermark passes ts + upperMs', async () => {
    const side: JoinSideRecord<Ev>[] = [];
    const join = intervalJoin({ ...config(side), mode: 'grouped' });
    const batches = [
      batchOf([imp('i1', 'u1', 100), imp('i2', 'u2', 200), click('c1', 'u1', 300)], 100),
      batchOf([click('c2', 'u1', 1100), click('c3', 'u1', 1101)], 1100),
      batchOf([], 1101),
      batchOf([imp('i3', 'u1', 1500)], 1201),
    ];
    const out = await run(join, batches);
    const groups = out.map((b) => b.items.map((g) => `${g.left.id}:[${g.matches.map((m) => m.id).join(',')}]`));
    expect(groups).toEqual([[], [], ['i1:[c1,c2]'], ['i2:[]'], ['i3:[]']]);
    expect(sideOf(side)).toEqual(['unmatched:right:c3']);
    const flush = out[4]!;
    expect(flush.watermark).toBe(Infinity);
    expect(flush.ticket.positions).toEqual([]);
    expect(join.state.size).toBe(0);
    expect(join.state.keys).toBe(0);
  });

  it('holds only what the watermark has not completed', async () => {
    const side: JoinSideRecord<Ev>[] = [];
    const join = intervalJoin({ ...config(side), mode: 'grouped', flushOnComplete: false });
    const items = Array.from({ length: 1000 }, (_, i) => {
      const user = `u${Math.floor(i / 2) % 7}`;
      return i % 2 === 0 ? imp(`i${i}`, user, i * 10) : click(`c${i}`, user, i * 10);
    });
    const batches = Array.from({ length: 10 }, (_, b) => batchOf(items.slice(b * 100, (b + 1) * 100), (b + 1) * 1000 - 1));
    const out = await run(join, batches);
    expect(out).toHaveLength(10);
    // After the last batch (watermark 9999) impressions from ts 9000 on and clicks from ts 9999 on are still pending.
    expect(join.state.size).toBe(50);
    const emitted = out.flatMap((b) => b.items);
    expect(emitted).toHaveLength(450);
    expect(side).toEqual([]);
  });

  it('matches exactly across thousands of keys while it grows, frees and reuses its slots and keys', async () => {
    const side: JoinSideRecord<Ev>[] = [];
    const join = intervalJoin({ ...config(side), mode: 'grouped', flushOnComplete: true });
    // Per round, 3,000 users each get an impression and, 500 ms later, two clicks (one past the window for every
    // third user); the watermark then passes the whole round, so the next round reuses what this one held.
    const batches: Batch<Ev>[] = [];
    for (let round = 0; round < 4; round++) {
      const at = round * 10_000;
      const users = Array.from({ length: 3000 }, (_, u) => `u${(u * 7919 + round) % 5000}`);
      batches.push(batchOf(users.map((user, u) => imp(`i${round}.${u}`, user, at)), at - 1));
      const clicks = users.flatMap((user, u) => [click(`a${round}.${u}`, user, at + 500), click(`b${round}.${u}`, user, at + (u % 3 === 0 ? 1500 : 900))]);
      batches.push(batchOf(clicks, at + 400));
      batches.push(batchOf([], at + 5000));
    }
    const groups = (await run(join, batches)).flatMap((b) => b.items);
    expect(groups).toHaveLength(12_000);
    for (const group of groups) {
      const [round, u] = group.left.id.slice(1).split('.').map(Number) as [number, number];
      const expected = u % 3 === 0 ? [`a${round}.${u}`] : [`a${round}.${u}`, `b${round}.${u}`];
      expect(group.matches.map((m) => m.id)).toEqual(expected);
    }
    expect(side.map((r) => r.item.id).sort()).toEqual(
      Array.from({ length: 4 }, (_, round) => Array.from({ length: 1000 }, (_, k) => `b${round}.${3 * k}`)).flat().sort(),
    );
    expect(side.every((r) => r.reason === 'unmatched')).toBe(true);
    expect(join.state.size).toBe(0);
    expect(join.state.keys).toBe(0);
  });

  it('past maxStateItems, emits the oldest impression early with what it matched so far, and keeps the click', async () => {
    const side: JoinSideRecord<Ev>[] = [];
    const join = intervalJoin({ ...config(side, { maxStateItems: 3 }), mode: 'grouped' });
    const out = await run(join, [batchOf([imp('i1', 'u1', 100), click('c1', 'u1', 150), imp('i2', 'u1', 200), imp('i3', 'u1', 300)])]);
    expect(side).toEqual([]);
    const groups = out.flatMap((b) => b.items.map((g) => `${g.left.id}:[${g.matches.map((m) => m.id).join(',')}]${g.closedEarly ? ' early' : ''}`));
    expect(groups).toEqual(['i1:[c1] early', 'i2:[]', 'i3:[]']);
    expect(join.state.stats.stateFull).toBe(1);
  });

  it('frees the left items of one time together, and keeps right items that newer left items still need', async () => {
    const side: JoinSideRecord<Ev>[] = [];
    const join = intervalJoin({ ...config(side, { maxStateItems: 4 }), mode: 'grouped' });
    const out = await run(join, [
      batchOf([imp('i1', 'u1', 100), imp('i2', 'u2', 100), click('c3', 'u3', 500), imp('i3', 'u3', 500)]),
      // A click that comes before its impression, as served features do: the bound must not free it.
      batchOf([click('c4', 'u4', 600)]),
      batchOf([imp('i4', 'u4', 600)]),
    ]);
    const groups = out.flatMap((b) => b.items.map((g) => `${g.left.id}:[${g.matches.map((m) => m.id).join(',')}]${g.closedEarly ? ' early' : ''}`));
    expect(groups).toEqual(['i1:[] early', 'i2:[] early', 'i3:[c3]', 'i4:[c4]']);
    expect(side).toEqual([]);
    expect(join.state.stats.stateFull).toBe(2);
  });

  it('frees right items past maxStateItems only when no left item is held, and reports the unmatched ones', async () => {
    const side: JoinSideRecord<Ev>[] = [];
    const join = intervalJoin({ ...config(side, { maxStateItems: 1 }), mode: 'grouped' });
    await run(join, [batchOf([click('c1', 'u1', 100), click('c2', 'u2', 200)], 0)]);
    expect(sideOf(side)).toEqual(['state-full:right:c1', 'unmatched:right:c2']);
  });
});

describe('intervalJoin, state', () => {
  it('continues from a JSON snapshot exactly as if it had never stopped', async () => {
    const events: Ev[] = [];
    for (let i = 0; i < 300; i++) {
      const ts = i * 37 + ((i * 7919) % 500);
      events.push(i % 3 === 0 ? imp(`i${i}`, `u${i % 5}`, ts) : click(`c${i}`, `u${i % 5}`, ts));
    }
    const batches = Array.from({ length: 10 }, (_, b) => {
      const items = events.slice(b * 30, (b + 1) * 30);
      return batchOf(items, Math.max(...items.map((e) => e.ts)) - 600);
    });
    for (const mode of ['pairs', 'grouped'] as const) {
      const wholeSide: JoinSideRecord<Ev>[] = [];
      const whole = await run(intervalJoin({ ...config(wholeSide), mode }), batches);

      const side: JoinSideRecord<Ev>[] = [];
      const first = intervalJoin({ ...config(side, { flushOnComplete: false }), mode });
      const before = await run(first, batches.slice(0, 4));
      const snapshot = JSON.parse(JSON.stringify(first.state.snapshot())) as IntervalJoinSnapshot<Ev>;
      expect(snapshot.entries.length).toBeGreaterThan(0);
      const second = intervalJoin({ ...config(side), mode });
      second.state.restore(snapshot);
      const after = await run(second, batches.slice(4));

      expect([...before, ...after].map((b) => b.items)).toEqual(whole.map((b) => b.items));
      expect(side).toEqual(wholeSide);
      expect(second.state.stats).toEqual((await statsOf(mode, batches)).stats);
    }
  });

  it('passes the source batch through one to one, even when a subscriber pushes batch by batch', () => {
    const side: JoinSideRecord<Ev>[] = [];
    const join = intervalJoin({ ...config(side), mode: 'pairs' });
    const input = new Subject<Batch<Ev>>();
    const seen: Batch<unknown>[] = [];
    join(input).subscribe((b) => seen.push(b));
    const b1 = batchOf([imp('i1', 'u1', 10)], 5);
    input.next(b1);
    expect(seen).toHaveLength(1);
    expect(seen[0]!.ticket).toBe(b1.ticket);
    input.next(batchOf([click('c1', 'u1', 20)], 6));
    expect(seen).toHaveLength(2);
    expect(seen[1]!.items).toHaveLength(1);
  });

  it('fails the stream with the cause when a configured function throws', async () => {
    const side: JoinSideRecord<Ev>[] = [];
    const cause = new Error('no key');
    const join = intervalJoin({
      ...config(side),
      key: () => {
        throw cause;
      },
      mode: 'pairs',
    });
    await expect(run(join, [batchOf([imp('i1', 'u1', 10)])])).rejects.toMatchObject({ cause });
  });

  it('refuses an empty interval and describes itself', () => {
    const side: JoinSideRecord<Ev>[] = [];
    expect(() => intervalJoin({ ...config(side), lowerMs: 10, upperMs: 5, mode: 'pairs' })).toThrow(RangeError);
    expect(() => intervalJoin({ ...config(side, { maxStateItems: 0 }), mode: 'pairs' })).toThrow(RangeError);
    const join = intervalJoin({ ...config(side), name: 'attribution', mode: 'grouped' });
    expect(join.info).toEqual({
      name: 'attribution',
      kind: 'interval-join',
      params: { mode: 'grouped', lowerMs: 0, upperMs: 1000, maxStateItems: 1_000_000, flushOnComplete: true },
      sideOutputs: ['unjoined'],
    });
  });
});

async function statsOf(mode: 'pairs' | 'grouped', batches: Batch<Ev>[]) {
  const join = intervalJoin({ ...config([], { flushOnComplete: true }), mode });
  await run(join, batches);
  return join.state;
}
