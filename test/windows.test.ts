import { from, lastValueFrom, toArray, type OperatorFunction } from 'rxjs';
import { describe, expect, it } from 'vitest';
import { slidingWindow, tumblingWindow } from '../operators/aligned-windows.js';
import { batchOf, Ticket, type Batch } from '../operators/batch.js';
import { eventTime } from '../operators/event-time.js';
import { Pipeline } from '../operators/pipeline.js';
import { sessionWindow } from '../operators/session-window.js';
import { count, sum, type Aggregate, type WindowResult } from '../operators/windows.js';

interface Click {
  readonly key: string;
  readonly ts: number;
  readonly n?: number;
}

const click = (key: string, ts: number, n = 1): Click => ({ key, ts, n });

/** The times of the items a window holds, sorted, so a result shows exactly what it counted. */
const timesOf: Aggregate<Click, number[]> & { merge(a: number[], b: number[]): number[] } = {
  create: () => [],
  add: (acc, item) => {
    acc.push(item.ts);
    return acc;
  },
  merge: (a, b) => a.concat(b),
  result: (acc) => [...acc].sort((x, y) => x - y),
};

class Collector<T> {
  readonly items: T[] = [];
  push(item: T): void {
    this.items.push(item);
  }
}

async function run<R>(operator: OperatorFunction<Batch<Click>, Batch<R>>, batches: Batch<Click>[]): Promise<Batch<R>[]> {
  return lastValueFrom(from(batches).pipe(operator, toArray()));
}

type Row<R> = [key: string, start: number, end: number, value: R, update: boolean];
const rows = <R,>(batch: Batch<WindowResult<string, R>> | undefined): Row<R>[] =>
  (batch?.items ?? []).map((r) => [r.key, r.start, r.end, r.value, r.update]);

describe('tumblingWindow', () => {
  const tumbling = (late: Collector<Click>, allowedLatenessMs = 0, flushOnComplete = true) =>
    tumblingWindow<Click, string, number>({
      sizeMs: 10,
      key: (c) => c.key,
      timestamp: (c) => c.ts,
      aggregate: count(),
      allowedLatenessMs,
      late,
      flushOnComplete,
    });

  it('fires each window in the batch whose watermark reaches its end, in start order', async () => {
    const late = new Collector<Click>();
    const out = await run(tumbling(late), [
      batchOf([click('a', 1), click('b', 2), click('a', 9), click('a', 12)], 5),
      batchOf([click('b', 15), click('a', 3)], 9), // 3 is out of order but its window is still open
      batchOf([click('a', 21)], 10),
      batchOf([], 25),
    ]);
    expect(out).toHaveLength(5);
    expect(rows(out[0])).toEqual([]);
    expect(rows(out[1])).toEqual([]);
    expect(rows(out[2])).toEqual([
      ['a', 0, 10, 3, false],
      ['b', 0, 10, 1, false],
    ]);
    expect(rows(out[3])).toEqual([
      ['a', 10, 20, 1, false],
      ['b', 10, 20, 1, false],
    ]);
    expect(rows(out[4])).toEqual([['a', 20, 30, 1, false]]);
    expect(late.items).toEqual([]);
  });

  it('sends items for windows already fired to the late sink when there is no allowed lateness', async () => {
    const late = new Collector<Click>();
    const op = tumbling(late);
    const out = await run(op, [batchOf([click('a', 1)], 10), batchOf([click('a', 4), click('a', 11)], 10)]);
    expect(rows(out[0])).toEqual([['a', 0, 10, 1, false]]);
    expect(late.items).toEqual([click('a', 4)]);
    expect(op.stats).toMatchObject({ received: 3, accepted: 2, late: 1, fired: 2, updates: 0 });
  });

  it('updates a fired window for items within the allowed lateness, and frees it after', async () => {
    const late = new Collector<Click>();
    const op = tumbling(late, 5);
    const out = await run(op, [
      batchOf([click('a', 1), click('b', 2)], 10), // fires [0,10)
      batchOf([click('a', 3), click('a', 4), click('c', 5)], 12), // within lateness: a updated, c first result
      batchOf([click('b', 6)], 15), // still accepted: checked against watermark 12 < 10 + 5
      batchOf([click('b', 7)], 15), // watermark 15 >= 10 + 5: state was freed, late
    ]);
    expect(rows(out[0])).toEqual([
      ['a', 0, 10, 1, false],
      ['b', 0, 10, 1, false],
    ]);
    expect(rows(out[1])).toEqual([
      ['a', 0, 10, 3, true],
      ['c', 0, 10, 1, false],
    ]);
    expect(rows(out[2])).toEqual([['b', 0, 10, 2, true]]);
    expect(rows(out[3])).toEqual([]);
    expect(late.items).toEqual([click('b', 7)]);
    expect(op.stats).toMatchObject({ received: 7, accepted: 6, late: 1, fired: 3, updates: 2, evicted: 0 });
  });

  it('flushes open windows on completion in one extra batch, unless told not to', async () => {
    const input = () => [batchOf([click('a', 1), click('a', 25)], 5)];
    const flushed = await run(tumbling(new Collector()), input());
    expect(flushed).toHaveLength(2);
    expect(flushed[1]!.watermark).toBe(Infinity);
    expect(flushed[1]!.ticket.positions).toEqual([]);
    expect(rows(flushed[1])).toEqual([
      ['a', 0, 10, 1, false],
      ['a', 20, 30, 1, false],
    ]);
    const kept = await run(tumbling(new Collector(), 0, false), input());
    expect(kept).toHaveLength(1);
    expect(rows(kept[0])).toEqual([]);
  });

  it('sends items whose time is not a finite number to the late sink and counts them', async () => {
    const late = new Collector<Click>();
    const op = tumbling(late);
    await run(op, [batchOf([click('a', NaN), click('a', 3), click('a', Infinity)], 0)]);
    expect(late.items.map((c) => c.ts)).toEqual([NaN, Infinity]);
    expect(op.stats).toMatchObject({ received: 3, accepted: 1, late: 2, invalidTimestamps: 2 });
  });

  it('keeps state bounded: past maxEntries the oldest window fires early, and items for it are late afterwards', async () => {
    const late = new Collector<Click>();
    const op = tumblingWindow<Click, string, number>({
      sizeMs: 10,
      key: (c) => c.key,
      timestamp: (c) => c.ts,
      aggregate: count(),
      late,
      maxEntries: 3,
    });
    const out = await run(op, [
      batchOf([click('a', 1), click('b', 2), click('a', 11), click('c', 12)], 0),
      batchOf([click('a', 5), click('d', 13)], 0),
    ]);
    expect(rows(out[0])).toEqual([
      ['a', 0, 10, 1, false],
      ['b', 0, 10, 1, false],
    ]);
    expect(late.items).toEqual([click('a', 5)]);
    expect(rows(out[2])).toEqual([
      ['a', 10, 20, 1, false],
      ['c', 10, 20, 1, false],
      ['d', 10, 20, 1, false],
    ]);
    expect(op.stats).toMatchObject({ received: 6, accepted: 5, late: 1, evicted: 1 });
  });

  it('emits what the aggregate result makes of the accumulator', async () => {
    const op = tumblingWindow<Click, string, number, string>({
      sizeMs: 10,
      key: (c) => c.key,
      timestamp: (c) => c.ts,
      aggregate: { ...sum<Click>((c) => c.n ?? 0), result: (total) => `total ${total}` },
      late: new Collector(),
    });
    const out = await run(op, [batchOf([click('a', 1, 4), click('a', 2, 6)], 10)]);
    expect(rows(out[0])).toEqual([['a', 0, 10, 'total 10', false]]);
  });

  it('continues from a snapshot exactly as an uninterrupted run', async () => {
    const batches = () => [
      batchOf([click('a', 1), click('b', 8), click('a', 14)], 5),
      batchOf([click('b', 3), click('a', 16)], 12),
      batchOf([click('a', 9), click('c', 22)], 16), // a@9 updates [0,10) within lateness
      batchOf([click('b', 2), click('b', 27)], 30),
      batchOf([click('c', 29)], 31),
    ];
    const make = (flushOnComplete = true) =>
      tumblingWindow<Click, string, number[]>({
        sizeMs: 10,
        key: (c) => c.key,
        timestamp: (c) => c.ts,
        aggregate: timesOf,
        allowedLatenessMs: 5,
        late: new Collector(),
        flushOnComplete,
      });
    const whole = make();
    const uninterrupted = (await run(whole, batches())).map(rows);

    const first = make(false);
    const before = (await run(first, batches().slice(0, 2))).map(rows);
    const snapshot = JSON.parse(JSON.stringify(first.snapshot()));
    const second = make();
    second.restore(snapshot);
    const after = (await run(second, batches().slice(2))).map(rows);
    expect([...before, ...after]).toEqual(uninterrupted);
    expect(second.stats).toEqual(whole.stats);
    expect(uninterrupted).toEqual([
      [],
      [
        ['a', 0, 10, [1], false],
        ['b', 0, 10, [3, 8], false],
      ],
      [['a', 0, 10, [1, 9], true]],
      [
        ['a', 10, 20, [14, 16], false],
        ['c', 20, 30, [22], false],
        ['b', 20, 30, [27], false],
      ],
      [['c', 20, 30, [22, 29], true]],
    ]);
    expect(whole.stats).toMatchObject({ received: 10, accepted: 9, late: 1 });
  });

  it('refuses a snapshot of windows of another shape', () => {
    const ten = tumbling(new Collector());
    const twenty = tumblingWindow<Click, string, number>({ sizeMs: 20, key: (c) => c.key, timestamp: (c) => c.ts, aggregate: count(), late: new Collector() });
    expect(() => twenty.restore(ten.snapshot())).toThrow(/does not fit/);
  });

  it('gives complete results for a bounded, shuffled stream behind eventTime', async () => {
    const clicks = Array.from({ length: 4000 }, (_, i) => click(`k${i % 7}`, i));
    // A permutation within each run of 50, so no click is more than 49 ms out of order.
    const shuffled = clicks.map((_, i) => clicks[Math.floor(i / 50) * 50 + ((i * 7) % 50)]!);
    const batches = Array.from({ length: 400 }, (_, b) => batchOf(shuffled.slice(b * 10, b * 10 + 10)));
    const late = new Collector<Click>();
    const out = await lastValueFrom(
      from(batches).pipe(
        eventTime<Click>({ timestamp: (c) => c.ts, maxOutOfOrdernessMs: 49 }),
        tumblingWindow<Click, string, number>({ sizeMs: 50, key: (c) => c.key, timestamp: (c) => c.ts, aggregate: count(), late }),
        toArray(),
      ),
    );
    const totals = new Map<string, number>();
    for (const r of out.flatMap((b) => b.items)) totals.set(`${r.start}/${r.key}`, r.value);
    const expected = new Map<string, number>();
    for (const c of clicks) expected.set(`${c.ts - (c.ts % 50)}/${c.key}`, (expected.get(`${c.ts - (c.ts % 50)}/${c.key}`) ?? 0) + 1);
    expect(totals).toEqual(expected);
    expect(late.items).toEqual([]);
    expect(out.slice(0, 400).filter((b) => b.items.length > 0).length).toBeGreaterThan(70);
  });

  it('fires only when every active partition has passed the window end, or the laggard has gone idle', async () => {
    let now = 0;
    const onPartition = (partition: number, items: Click[]): Batch<Click> => ({
      items,
      watermark: -Infinity,
      ticket: new Ticket([{ topic: 'clicks', partition, offset: items.length }]),
    });
    const steps: [number, Batch<Click>][] = [
      [0, onPartition(0, [click('a', 1)])],
      [0, onPartition(1, [click('b', 2)])],
      [10, onPartition(0, [click('a', 15)])], // partition 1 still at 2: [0,10) waits
      [5000, onPartition(0, [click('a', 16)])], // partition 1 idle: [0,10) fires
      [5001, onPartition(1, [click('b', 9)])], // back, behind the watermark of 16: late
    ];
    const late = new Collector<Click>();
    const times = eventTime<Click>({ timestamp: (c) => c.ts, maxOutOfOrdernessMs: 0, idleTimeoutMs: 1000, clock: () => now });
    const windows = tumblingWindow<Click, string, number>({ sizeMs: 10, key: (c) => c.key, timestamp: (c) => c.ts, aggregate: count(), late, flushOnComplete: false });
    const fired: Row<number>[][] = [];
    for (const [at, batch] of steps) {
      now = at;
      fired.push(...(await lastValueFrom(from([batch]).pipe(times, windows, toArray()))).map(rows));
    }
    expect(fired).toEqual([
      [],
      [],
      [],
      [
        ['a', 0, 10, 1, false],
        ['b', 0, 10, 1, false],
      ],
      [],
    ]);
    expect(late.items).toEqual([click('b', 9)]);
  });

  it('describes itself in a pipeline with its late side output', () => {
    const topology = Pipeline.from<Click>('clicks', { name: 'events', kind: 'topic' })
      .pipe(tumbling(new Collector(), 1000))
      .routeSide('late', { name: 'late-clicks', kind: 'memory' })
      .describe();
    expect(topology.nodes[1]).toEqual({
      id: '1:tumbling-window',
      name: 'tumbling-window',
      kind: 'tumbling-window',
      params: { sizeMs: 10, allowedLatenessMs: 1000, maxEntries: 1_000_000 },
      sideOutputs: ['late'],
    });
    expect(topology.edges).toContainEqual({ from: '1:tumbling-window', to: 'sink:memory:late-clicks', output: 'late' });
  });
});

describe('slidingWindow', () => {
  it('puts each item in every window that covers it', async () => {
    const op = slidingWindow<Click, string, number[]>({ sizeMs: 10, slideMs: 5, key: (c) => c.key, timestamp: (c) => c.ts, aggregate: timesOf, late: new Collector() });
    const out = await run(op, [batchOf([click('a', 3), click('a', 7), click('b', 12)], 10), batchOf([], 20)]);
    expect(rows(out[0])).toEqual([
      ['a', -5, 5, [3], false],
      ['a', 0, 10, [3, 7], false],
    ]);
    expect(rows(out[1])).toEqual([
      ['a', 5, 15, [7], false],
      ['b', 5, 15, [12], false],
      ['b', 10, 20, [12], false],
    ]);
  });

  it('keeps an item for the windows still open and sends it late only when none is', async () => {
    const late = new Collector<Click>();
    const op = slidingWindow<Click, string, number[]>({ sizeMs: 10, slideMs: 5, key: (c) => c.key, timestamp: (c) => c.ts, aggregate: timesOf, late });
    const out = await run(op, [batchOf([click('a', 1)], 10), batchOf([click('a', 6), click('a', 2)], 10), batchOf([], 15)]);
    expect(rows(out[0])).toEqual([
      ['a', -5, 5, [1], false],
      ['a', 0, 10, [1], false],
    ]);
    // a@6 misses [0,10) (fired, no lateness) but lands in [5,15); a@2 has no open window left.
    expect(late.items).toEqual([click('a', 2)]);
    expect(rows(out[2])).toEqual([['a', 5, 15, [6], false]]);
    expect(op.stats).toMatchObject({ received: 3, accepted: 2, late: 1 });
  });

  it('rejects a slide longer than the window', () => {
    expect(() => slidingWindow<Click, string, number>({ sizeMs: 5, slideMs: 10, key: (c) => c.key, timestamp: (c) => c.ts, aggregate: count(), late: new Collector() })).toThrow(RangeError);
  });
});

describe('sessionWindow', () => {
  const sessions = (late: Collector<Click>, allowedLatenessMs = 0, maxSessions?: number) =>
    sessionWindow<Click, string, number[]>({
      gapMs: 10,
      key: (c) => c.key,
      timestamp: (c) => c.ts,
      aggregate: timesOf,
      allowedLatenessMs,
      late,
      ...(maxSessions !== undefined ? { maxSessions } : {}),
    });

  it('groups items closer than the gap and fires a session once the watermark passes its end', async () => {
    const out = await run(sessions(new Collector()), [
      batchOf([click('a', 0), click('a', 9), click('b', 5), click('a', 19)], 0), // 19 is exactly one gap after 9: new session
      batchOf([], 19),
      batchOf([], 40),
    ]);
    expect(rows(out[0])).toEqual([]);
    expect(rows(out[1])).toEqual([
      ['b', 5, 15, [5], false],
      ['a', 0, 19, [0, 9], false],
    ]);
    expect(rows(out[2])).toEqual([['a', 19, 29, [19], false]]);
  });

  it('merges sessions an out-of-order item bridges', async () => {
    const out = await run(sessions(new Collector()), [batchOf([click('a', 0), click('a', 14)], 0), batchOf([click('a', 7)], 0), batchOf([], 100)]);
    expect(rows(out[2])).toEqual([['a', 0, 24, [0, 7, 14], false]]);
  });

  it('re-fires a session as an update when a late item within the lateness extends or merges it', async () => {
    const late = new Collector<Click>();
    const op = sessions(late, 25);
    const out = await run(op, [
      batchOf([click('a', 0), click('a', 15)], 30), // two sessions, both fired: [0,10) and [15,25)
      batchOf([click('a', 8)], 30), // 8 + 25 >= 30: accepted, bridges them into one session, an update
      batchOf([click('a', 5)], 60), // 5 + 25 >= 30: accepted, another update; then freed at 60
      batchOf([click('a', 30)], 60), // 30 + 25 < 60: late
    ]);
    expect(rows(out[0])).toEqual([
      ['a', 0, 10, [0], false],
      ['a', 15, 25, [15], false],
    ]);
    expect(rows(out[1])).toEqual([['a', 0, 25, [0, 8, 15], true]]);
    expect(rows(out[2])).toEqual([['a', 0, 25, [0, 5, 8, 15], true]]);
    expect(late.items).toEqual([click('a', 30)]);
    expect(op.stats).toMatchObject({ received: 5, accepted: 4, late: 1, fired: 2, updates: 2 });
  });

  it('judges lateness by the item time, so an item never reaches into a freed session', async () => {
    const late = new Collector<Click>();
    const out = await run(sessions(late, 0), [batchOf([click('a', 0)], 10), batchOf([click('a', 9)], 12)]);
    expect(rows(out[0])).toEqual([['a', 0, 10, [0], false]]);
    expect(late.items).toEqual([click('a', 9)]);
  });

  it('keeps state bounded: past maxSessions the least recently updated session fires early', async () => {
    const op = sessions(new Collector(), 0, 2);
    const out = await run(op, [batchOf([click('a', 0), click('b', 1), click('a', 2), click('c', 3)], 0), batchOf([click('b', 4)], 0)]);
    expect(rows(out[0])).toEqual([['b', 1, 11, [1], false]]);
    expect(rows(out[1])).toEqual([['a', 0, 12, [0, 2], false]]);
    expect(rows(out[2])).toEqual([
      ['c', 3, 13, [3], false],
      ['b', 4, 14, [4], false],
    ]);
    expect(op.stats).toMatchObject({ evicted: 2, accepted: 5, late: 0 });
  });

  it('continues from a snapshot exactly as an uninterrupted run', async () => {
    const batches = () => [
      batchOf([click('a', 0), click('b', 3), click('a', 30)], 0),
      batchOf([click('a', 6), click('b', 40)], 20),
      batchOf([click('a', 14), click('a', 22)], 25), // within lateness: they join a's fired session and its next one
      batchOf([click('b', 45)], 70),
    ];
    const whole = sessions(new Collector(), 10);
    const uninterrupted = (await run(whole, batches())).map(rows);
    const first = sessionWindow<Click, string, number[]>({
      gapMs: 10,
      key: (c) => c.key,
      timestamp: (c) => c.ts,
      aggregate: timesOf,
      allowedLatenessMs: 10,
      late: new Collector(),
      flushOnComplete: false,
    });
    const before = (await run(first, batches().slice(0, 2))).map(rows);
    const snapshot = JSON.parse(JSON.stringify(first.snapshot()));
    const second = sessions(new Collector(), 10);
    second.restore(snapshot);
    const after = (await run(second, batches().slice(2))).map(rows);
    expect([...before, ...after]).toEqual(uninterrupted);
    expect(second.stats).toEqual(whole.stats);
    expect(uninterrupted).toEqual([
      [],
      [
        ['b', 3, 13, [3], false],
        ['a', 0, 16, [0, 6], false],
      ],
      [],
      [
        ['a', 0, 40, [0, 6, 14, 22, 30], true],
        ['b', 40, 55, [40, 45], false],
      ],
    ]);
  });

  it('refuses a snapshot taken with another gap', () => {
    const other = sessionWindow<Click, string, number[]>({ gapMs: 99, key: (c) => c.key, timestamp: (c) => c.ts, aggregate: timesOf, late: new Collector() });
    expect(() => sessions(new Collector()).restore(other.snapshot())).toThrow(/does not fit/);
  });
});

describe('window results type', () => {
  it('are plain data', async () => {
    const out = await run(
      tumblingWindow<Click, string, number>({ sizeMs: 10, key: (c) => c.key, timestamp: (c) => c.ts, aggregate: count(), late: new Collector() }),
      [batchOf([click('a', 1)], 10)],
    );
    const result: WindowResult<string, number> = out[0]!.items[0]!;
    expect(JSON.parse(JSON.stringify(result))).toEqual({ key: 'a', start: 0, end: 10, value: 1, update: false });
  });
});
