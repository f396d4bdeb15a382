/**
 * Windows over random out-of-order streams, cut into random batches, with a random watermark bound and allowed
 * lateness, and sometimes snapshotted and restored into fresh operators midway, against a brute-force reference
 * computed from the events alone. Every event must end up either in a result or in the late output.
 */
import fc from 'fast-check';
import { from, lastValueFrom, toArray } from 'rxjs';
import { describe, expect, it } from 'vitest';
import { slidingWindow, tumblingWindow } from '../operators/aligned-windows.js';
import { batchOf, type Batch } from '../operators/batch.js';
import { eventTime, type EventTimeOperator } from '../operators/event-time.js';
import { sessionWindow } from '../operators/session-window.js';
import type { WindowOperator, WindowResult } from '../operators/windows.js';

interface Event {
  readonly id: number;
  readonly key: string;
  readonly ts: number;
}

interface Scenario {
  readonly events: Event[];
  /** Batch sizes, in arrival order; together they cover every event. */
  readonly batches: Event[][];
  readonly boundMs: number;
  readonly latenessMs: number;
  /** Snapshot after this many batches and continue in fresh operators; -1 for an uninterrupted run. */
  readonly restoreAfter: number;
}

/** Mostly rising event times with jitter into the past, so some events are out of order and some are late. */
const scenarioArb: fc.Arbitrary<Scenario> = fc
  .record({
    steps: fc.array(fc.record({ advance: fc.integer({ min: 0, max: 4 }), jitter: fc.integer({ min: 0, max: 24 }), key: fc.integer({ min: 0, max: 3 }) }), {
      maxLength: 80,
    }),
    sizes: fc.array(fc.integer({ min: 1, max: 12 }), { minLength: 1, maxLength: 80 }),
    boundMs: fc.integer({ min: 0, max: 12 }),
    latenessMs: fc.integer({ min: 0, max: 12 }),
    restoreAt: fc.option(fc.nat({ max: 40 }), { nil: undefined }),
  })
  .map(({ steps, sizes, boundMs, latenessMs, restoreAt }) => {
    let clock = 100;
    const events = steps.map((step, id) => {
      clock += step.advance;
      return { id, key: `k${step.key}`, ts: clock - step.jitter };
    });
    const batches: Event[][] = [];
    for (let at = 0, i = 0; at < events.length; i++) {
      const size = sizes[i % sizes.length]!;
      batches.push(events.slice(at, at + size));
      at += size;
    }
    const restoreAfter = restoreAt === undefined || batches.length === 0 ? -1 : restoreAt % (batches.length + 1);
    return { events, batches, boundMs, latenessMs, restoreAfter };
  });

const idsOf = {
  create: (): number[] => [],
  add: (acc: number[], e: Event) => {
    acc.push(e.id);
    return acc;
  },
  merge: (a: number[], b: number[]) => a.concat(b),
  result: (acc: number[]) => [...acc].sort((x, y) => x - y),
};

class LateIds {
  readonly ids: number[] = [];
  push(e: Event): void {
    this.ids.push(e.id);
  }
}

/** The watermark after each batch, as eventTime computes it on one partition. */
function watermarksAfter(s: Scenario): number[] {
  let newest = -Infinity;
  let watermark = -Infinity;
  return s.batches.map((batch) => {
    for (const e of batch) newest = Math.max(newest, e.ts);
    watermark = Math.max(watermark, newest - s.boundMs);
    return watermark;
  });
}

type Ops = [EventTimeOperator<Event>, WindowOperator<Event, string, number[], unknown>];

/** Runs the scenario; with a restore point, snapshots both operators there (through JSON) and continues in new ones. */
async function runScenario(s: Scenario, make: (flushOnComplete: boolean) => Ops, late: LateIds): Promise<Batch<WindowResult<string, number[]>>[]> {
  const feed = async ([times, windows]: Ops, batches: Event[][]) =>
    lastValueFrom(from(batches.map((items) => batchOf(items))).pipe(times, windows, toArray()));
  if (s.restoreAfter < 0) return feed(make(true), s.batches);
  const first = make(false);
  const before = await feed(first, s.batches.slice(0, s.restoreAfter));
  const saved = JSON.parse(JSON.stringify({ times: first[0].snapshot(), windows: first[1].snapshot() }));
  const second = make(true);
  second[0].restore(saved.times);
  second[1].restore(saved.windows);
  const after = await feed(second, s.batches.slice(s.restoreAfter));
  expect(late.ids.length).toBe(second[1].stats.late);
  expect(second[1].stats.received).toBe(s.events.length);
  return [...before, ...after];
}

type Row = [key: string, start: number, end: number, ids: number[], update: boolean];
const byRow = (a: Row, b: Row) => a[0].localeCompare(b[0]) || a[1] - b[1] || Number(a[4]) - Number(b[4]);

/**
 * Tumbling and sliding windows, from the events alone: an event joins each of its windows whose end + lateness is
 * past the watermark before its batch, and is late if it joins none. A key's window first fires in the first batch,
 * from the one that brought its first event, whose watermark reaches the end (else in the flush), and fires again as
 * an update in each later batch that brings it events.
 */
function alignedReference(s: Scenario, sizeMs: number, slideMs: number): { rows: Row[][]; late: number[] } {
  const after = watermarksAfter(s);
  const late: number[] = [];
  const joined = new Map<string, { key: string; start: number; arrivals: { batch: number; id: number }[] }>();
  s.batches.forEach((batch, b) => {
    const before = b === 0 ? -Infinity : after[b - 1]!;
    for (const e of batch) {
      let any = false;
      for (let start = Math.floor(e.ts / slideMs) * slideMs; start > e.ts - sizeMs; start -= slideMs) {
        if (start + sizeMs + s.latenessMs <= before) continue;
        any = true;
        const id = `${e.key}/${start}`;
        if (!joined.has(id)) joined.set(id, { key: e.key, start, arrivals: [] });
        joined.get(id)!.arrivals.push({ batch: b, id: e.id });
      }
      if (!any) late.push(e.id);
    }
  });
  const n = s.batches.length;
  const rows: Row[][] = Array.from({ length: n + 1 }, () => []);
  for (const { key, start, arrivals } of joined.values()) {
    const end = start + sizeMs;
    const firstArrival = arrivals[0]!.batch;
    let fires = after.findIndex((w, b) => b >= firstArrival && w >= end);
    if (fires < 0) fires = n;
    const emitAt = [fires, ...new Set(arrivals.map((a) => a.batch).filter((b) => b > fires))];
    emitAt.forEach((b, i) => {
      const ids = arrivals.filter((a) => a.batch <= b).map((a) => a.id);
      rows[b]!.push([key, start, end, ids.sort((x, y) => x - y), i > 0]);
    });
  }
  if (rows[n]!.length === 0) rows.pop();
  return { rows: rows.map((r) => r.sort(byRow)), late: late.sort((a, b) => a - b) };
}

/**
 * Sessions, from the events alone: an event is accepted unless its time + lateness is before the watermark before
 * its batch; each key's accepted events, in time order, form sessions broken where an event is at least a gap after
 * the session's last one.
 */
function sessionReference(s: Scenario, gapMs: number): { sessions: Row[]; late: number[] } {
  const after = watermarksAfter(s);
  const lateIds: number[] = [];
  const accepted: Event[] = [];
  s.batches.forEach((batch, b) => {
    const before = b === 0 ? -Infinity : after[b - 1]!;
    for (const e of batch) {
      if (e.ts + s.latenessMs < before) lateIds.push(e.id);
      else accepted.push(e);
    }
  });
  const sessions: Row[] = [];
  const keys = [...new Set(accepted.map((e) => e.key))];
  for (const key of keys) {
    const events = accepted.filter((e) => e.key === key).sort((a, b) => a.ts - b.ts);
    let current: Row | undefined;
    for (const e of events) {
      if (current && e.ts < current[2]) {
        current[2] = Math.max(current[2], e.ts + gapMs);
        current[3].push(e.id);
      } else {
        current = [key, e.ts, e.ts + gapMs, [e.id], false];
        sessions.push(current);
      }
    }
  }
  for (const session of sessions) session[3].sort((a, b) => a - b);
  return { sessions: sessions.sort(byRow), late: lateIds.sort((a, b) => a - b) };
}

const toRows = (batch: Batch<WindowResult<string, number[]>>): Row[] =>
  batch.items.map((r): Row => [r.key, r.start, r.end, r.value, r.update]).sort(byRow);

function expectAllAccounted(s: Scenario, resultIds: Iterable<number>, lateIds: number[]): void {
  const seen = new Set([...resultIds, ...lateIds]);
  expect([...seen].sort((a, b) => a - b)).toEqual(s.events.map((e) => e.id));
}

const runs = { numRuns: 150 };

describe('windows against a brute-force reference', () => {
  it('tumbling windows', async () => {
    await fc.assert(
      fc.asyncProperty(scenarioArb, fc.integer({ min: 2, max: 20 }), async (s, sizeMs) => {
        const late = new LateIds();
        const make = (flushOnComplete: boolean): Ops => [
          eventTime<Event>({ timestamp: (e) => e.ts, maxOutOfOrdernessMs: s.boundMs }),
          tumblingWindow<Event, string, number[]>({
            sizeMs,
            key: (e) => e.key,
            timestamp: (e) => e.ts,
            aggregate: idsOf,
            allowedLatenessMs: s.latenessMs,
            late,
            flushOnComplete,
          }) as Ops[1],
        ];
        const out = await runScenario(s, make, late);
        const expected = alignedReference(s, sizeMs, sizeMs);
        expect(out.map(toRows)).toEqual(expected.rows);
        expect([...late.ids].sort((a, b) => a - b)).toEqual(expected.late);
        expectAllAccounted(s, out.flatMap((b) => b.items.flatMap((r) => r.value)), late.ids);
      }),
      runs,
    );
  });

  it('sliding windows', async () => {
    await fc.assert(
      fc.asyncProperty(scenarioArb, fc.integer({ min: 1, max: 8 }), fc.integer({ min: 0, max: 20 }), async (s, slideMs, extraMs) => {
        const sizeMs = slideMs + extraMs;
        const late = new LateIds();
        const make = (flushOnComplete: boolean): Ops => [
          eventTime<Event>({ timestamp: (e) => e.ts, maxOutOfOrdernessMs: s.boundMs }),
          slidingWindow<Event, string, number[]>({
            sizeMs,
            slideMs,
            key: (e) => e.key,
            timestamp: (e) => e.ts,
            aggregate: idsOf,
            allowedLatenessMs: s.latenessMs,
            late,
            flushOnComplete,
          }) as Ops[1],
        ];
        const out = await runScenario(s, make, late);
        const expected = alignedReference(s, sizeMs, slideMs);
        expect(out.map(toRows)).toEqual(expected.rows);
        expect([...late.ids].sort((a, b) => a - b)).toEqual(expected.late);
        expectAllAccounted(s, out.flatMap((b) => b.items.flatMap((r) => r.value)), late.ids);
      }),
      runs,
    );
  });

  it('session windows', async () => {
    await fc.assert(
      fc.asyncProperty(scenarioArb, fc.integer({ min: 1, max: 12 }), async (s, gapMs) => {
        const late = new LateIds();
        const make = (flushOnComplete: boolean): Ops => [
          eventTime<Event>({ timestamp: (e) => e.ts, maxOutOfOrdernessMs: s.boundMs }),
          sessionWindow<Event, string, number[]>({
            gapMs,
            key: (e) => e.key,
            timestamp: (e) => e.ts,
            aggregate: idsOf,
            allowedLatenessMs: s.latenessMs,
            late,
            flushOnComplete,
          }) as Ops[1],
        ];
        const out = await runScenario(s, make, late);
        const after = watermarksAfter(s);
        // A session's latest result supersedes the earlier ones it contains; what is left is the final sessions.
        const final: Row[] = [];
        out.forEach((batch, b) => {
          for (const row of toRows(batch)) {
            const [key, start, end, , update] = row;
            if (b < s.batches.length) expect(end).toBeLessThanOrEqual(after[b]!);
            const superseded = final.filter((f) => f[0] === key && f[1] >= start && f[2] <= end);
            expect(update).toBe(superseded.length > 0);
            for (const f of superseded) final.splice(final.indexOf(f), 1);
            expect(final.some((f) => f[0] === key && f[1] < end && start < f[2])).toBe(false);
            final.push([key, start, end, row[3], false]);
          }
        });
        const expected = sessionReference(s, gapMs);
        expect(final.sort(byRow)).toEqual(expected.sessions);
        expect([...late.ids].sort((a, b) => a - b)).toEqual(expected.late);
        expectAllAccounted(s, final.flatMap((r) => r[3]), late.ids);
      }),
      runs,
    );
  });
});
