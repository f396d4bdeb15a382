import { from, lastValueFrom, toArray } from 'rxjs';
import { describe, expect, it } from 'vitest';
import { batchOf, Ticket, type Batch } from '../operators/batch.js';
import { eventTime, type EventTimeOperator } from '../operators/event-time.js';

interface Event {
  readonly ts: number;
}

const events = (...ts: number[]): Event[] => ts.map((t) => ({ ts: t }));

function onPartition(partition: number, items: Event[]): Batch<Event> {
  return { items, watermark: -Infinity, ticket: new Ticket([{ topic: 'events', partition, offset: 1 }]) };
}

async function watermarks(operator: EventTimeOperator<Event>, batches: Batch<Event>[]): Promise<number[]> {
  const out = await lastValueFrom(from(batches).pipe(operator, toArray()));
  return out.map((b) => b.watermark);
}

describe('eventTime', () => {
  it('sets the watermark to the newest event time minus the bound, and never moves it back', async () => {
    const op = eventTime<Event>({ timestamp: (e) => e.ts, maxOutOfOrdernessMs: 100 });
    const got = await watermarks(op, [
      batchOf(events(1000, 1500, 1200)),
      batchOf(events(900)),
      batchOf(events(1400, 2000)),
      batchOf([]),
    ]);
    expect(got).toEqual([1400, 1400, 1900, 1900]);
    expect(op.watermark).toBe(1900);
  });

  it('keeps items and tickets as they are, one batch out per batch in', async () => {
    const op = eventTime<Event>({ timestamp: (e) => e.ts, maxOutOfOrdernessMs: 0 });
    const input = [batchOf(events(5, 3)), batchOf(events(7))];
    const out = await lastValueFrom(from(input).pipe(op, toArray()));
    expect(out.map((b) => b.items)).toEqual(input.map((b) => b.items));
    expect(out.map((b) => b.ticket)).toEqual(input.map((b) => b.ticket));
  });

  it('is -Infinity until an event with a finite time arrives, and ignores times that are not finite', async () => {
    const op = eventTime<Event>({ timestamp: (e) => e.ts, maxOutOfOrdernessMs: 10 });
    const got = await watermarks(op, [batchOf([]), batchOf(events(NaN, Infinity)), batchOf(events(50, NaN))]);
    expect(got).toEqual([-Infinity, -Infinity, 40]);
  });

  it('takes the least watermark over partitions', async () => {
    const op = eventTime<Event>({ timestamp: (e) => e.ts, maxOutOfOrdernessMs: 10 });
    const got = await watermarks(op, [
      onPartition(0, events(100)),
      onPartition(1, events(50)),
      onPartition(0, events(300)),
      onPartition(1, events(200)),
      onPartition(1, events(500)),
    ]);
    expect(got).toEqual([90, 90, 90, 190, 290]);
  });

  it('stops waiting for a partition idle longer than the timeout, and waits for it again once it delivers', async () => {
    let now = 0;
    const op = eventTime<Event>({ timestamp: (e) => e.ts, maxOutOfOrdernessMs: 0, idleTimeoutMs: 1000, clock: () => now });
    const batches: [number, Batch<Event>][] = [
      [0, onPartition(1, events(50))],
      [10, onPartition(0, events(100))],
      [500, onPartition(0, events(400))], // partition 1 quiet for 500 ms: still holds the watermark at 50
      [1500, onPartition(0, events(800))], // quiet for 1500 ms: idle, partition 0 alone decides
      [1600, onPartition(1, events(600))], // back, and behind: the watermark does not move back
      [1700, onPartition(0, events(1000))], // partition 1 holds it again
      [1800, onPartition(1, events(1200))],
    ];
    const got: number[] = [];
    for (const [at, batch] of batches) {
      now = at;
      got.push(...(await watermarks(op, [batch])));
    }
    expect(got).toEqual([50, 50, 50, 800, 800, 800, 1000]);
  });

  it('advances every partition a multi-partition batch spans', async () => {
    const op = eventTime<Event>({ timestamp: (e) => e.ts, maxOutOfOrdernessMs: 0 });
    const both: Batch<Event> = {
      items: events(70),
      watermark: -Infinity,
      ticket: new Ticket([
        { topic: 'events', partition: 0, offset: 3 },
        { topic: 'events', partition: 1, offset: 9 },
      ]),
    };
    expect(await watermarks(op, [onPartition(0, events(10)), onPartition(1, events(20)), both])).toEqual([10, 10, 70]);
  });

  it('continues from a snapshot as an uninterrupted run would', async () => {
    const batches = () => [onPartition(0, events(100)), onPartition(1, events(60)), onPartition(0, events(300)), onPartition(1, events(250))];
    const uninterrupted = await watermarks(eventTime<Event>({ timestamp: (e) => e.ts, maxOutOfOrdernessMs: 5 }), batches());

    const first = eventTime<Event>({ timestamp: (e) => e.ts, maxOutOfOrdernessMs: 5 });
    const before = await watermarks(first, batches().slice(0, 2));
    const snapshot = JSON.parse(JSON.stringify(first.snapshot()));
    const second = eventTime<Event>({ timestamp: (e) => e.ts, maxOutOfOrdernessMs: 5 });
    second.restore(snapshot);
    const after = await watermarks(second, batches().slice(2));
    expect([...before, ...after]).toEqual(uninterrupted);
    expect(uninterrupted).toEqual([95, 95, 95, 245]);
    // Without the restored partitions, partition 0 alone would have moved the watermark to 295.
    expect(await watermarks(eventTime<Event>({ timestamp: (e) => e.ts, maxOutOfOrdernessMs: 5 }), batches().slice(2, 3))).toEqual([295]);
  });

  it('snapshots an empty state with nulls for -Infinity', () => {
    const op = eventTime<Event>({ timestamp: (e) => e.ts, maxOutOfOrdernessMs: 5 });
    expect(JSON.parse(JSON.stringify(op.snapshot()))).toEqual({ watermark: null, partitions: [] });
  });

  it('describes itself and rejects a negative bound', () => {
    const op = eventTime<Event>({ timestamp: (e) => e.ts, maxOutOfOrdernessMs: 250, idleTimeoutMs: 5000 });
    expect(op.info).toEqual({ name: 'event-time', kind: 'watermark', params: { maxOutOfOrdernessMs: 250, idleTimeoutMs: 5000 } });
    expect(() => eventTime<Event>({ timestamp: (e) => e.ts, maxOutOfOrdernessMs: -1 })).toThrow(RangeError);
  });
});
