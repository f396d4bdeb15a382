import fc from 'fast-check';
import { from, lastValueFrom, toArray } from 'rxjs';
import { describe, expect, it } from 'vitest';
import { batchOf, type Batch } from '../operators/batch.js';
import { dedupe, type DedupeOptions, type DedupeRecord, type DedupeSnapshot } from '../operators/dedupe.js';

interface Ev {
  readonly id: string;
  readonly ts: number;
  /** Tells copies of one id apart in assertions. */
  readonly n: number;
}

const ev = (id: string, ts: number, n = 0): Ev => ({ id, ts, n });

function options(side: DedupeRecord<Ev>[], extra: Partial<DedupeOptions<Ev>> = {}): DedupeOptions<Ev> {
  return { id: (e) => e.id, timestamp: (e) => e.ts, horizonMs: 100, sideOutput: { push: (r) => side.push(r) }, ...extra };
}

function run(op: ReturnType<typeof dedupe<Ev>>, batches: Batch<Ev>[]): Promise<Batch<Ev>[]> {
  return lastValueFrom(op(from(batches)).pipe(toArray()));
}

describe('dedupe', () => {
  it('passes first occurrences and diverts repeats with their reason, one output batch per input batch', async () => {
    const side: DedupeRecord<Ev>[] = [];
    const op = dedupe(options(side));
    const batches = [batchOf([ev('a', 10, 1), ev('b', 11), ev('a', 12, 2)], 5), batchOf([ev('a', 10, 3), ev('c', 20)], 15)];
    const out = await run(op, batches);
    expect(out.map((b) => b.items)).toEqual([[ev('a', 10, 1), ev('b', 11)], [ev('c', 20)]]);
    out.forEach((b, i) => expect(b.ticket).toBe(batches[i]!.ticket));
    expect(out.map((b) => b.watermark)).toEqual([5, 15]);
    expect(side).toEqual([
      { reason: 'duplicate', id: 'a', item: ev('a', 12, 2) },
      { reason: 'duplicate', id: 'a', item: ev('a', 10, 3) },
    ]);
    expect(op.state.stats).toEqual({ received: 5, emitted: 3, duplicates: 2, beyondHorizon: 0, invalid: 0, evictedIds: 0 });
  });

  it('forgets ids once the watermark is more than the horizon past them, and reclaims their memory', async () => {
    const side: DedupeRecord<Ev>[] = [];
    const op = dedupe(options(side));
    const out = await run(op, [
      batchOf([ev('a', 100, 1), ev('b', 150)], 150),
      batchOf([], 201),
      batchOf([ev('a', 180, 2), ev('b', 160)], 201),
    ]);
    expect(out.map((b) => b.items)).toEqual([[ev('a', 100, 1), ev('b', 150)], [], [ev('a', 180, 2)]]);
    expect(side.map((r) => `${r.reason}:${r.id}`)).toEqual(['duplicate:b']);
    expect(op.state.size).toBe(2);
    await run(op, [batchOf([], 1000)]);
    expect(op.state.size).toBe(0);
  });

  it('diverts items older than the horizon by default, and passes them with beyondHorizon: emit', async () => {
    const diverted: DedupeRecord<Ev>[] = [];
    const strict = dedupe(options(diverted));
    const strictOut = await run(strict, [batchOf([ev('a', 500)], 500), batchOf([ev('a', 300), ev('x', 399)])]);
    expect(strictOut.map((b) => b.items)).toEqual([[ev('a', 500)], []]);
    expect(diverted.map((r) => `${r.reason}:${r.id}`)).toEqual(['beyond-horizon:a', 'beyond-horizon:x']);
    expect(strict.state.stats.beyondHorizon).toBe(2);

    const passed: DedupeRecord<Ev>[] = [];
    const lenient = dedupe(options(passed, { beyondHorizon: 'emit' }));
    const lenientOut = await run(lenient, [batchOf([ev('a', 500)], 500), batchOf([ev('x', 399), ev('x', 399), ev('y', 400)])]);
    expect(lenientOut.map((b) => b.items)).toEqual([[ev('a', 500)], [ev('x', 399), ev('x', 399), ev('y', 400)]]);
    expect(passed).toEqual([]);
  });

  it('remembers every id with an infinite horizon, even past a final +Infinity watermark', async () => {
    const side: DedupeRecord<Ev>[] = [];
    const op = dedupe(options(side, { horizonMs: Infinity }));
    const out = await run(op, [batchOf([ev('a', 1, 1)], 1e12), batchOf([], Infinity), batchOf([ev('a', 2, 2), ev('b', 0)])]);
    expect(out.map((b) => b.items)).toEqual([[ev('a', 1, 1)], [], [ev('b', 0)]]);
    expect(side.map((r) => `${r.reason}:${r.item.n}`)).toEqual(['duplicate:2']);
  });

  it('diverts items whose timestamp is not a number', async () => {
    const side: DedupeRecord<Ev>[] = [];
    const op = dedupe(options(side));
    const out = await run(op, [batchOf([ev('a', Number.NaN), ev('a', 1)])]);
    expect(out[0]!.items).toEqual([ev('a', 1)]);
    expect(side).toEqual([{ reason: 'invalid-timestamp', id: 'a', item: ev('a', Number.NaN) }]);
  });

  it('never remembers more than maxIds, counting ids forgotten early', async () => {
    const side: DedupeRecord<Ev>[] = [];
    const op = dedupe(options(side, { maxIds: 3, horizonMs: 1e9 }));
    const out = await run(op, [batchOf(['a', 'b', 'c', 'd', 'a', 'd'].map((id, n) => ev(id, n, n)))]);
    expect(out[0]!.items.map((e) => e.id)).toEqual(['a', 'b', 'c', 'd', 'a']);
    expect(side.map((r) => r.id)).toEqual(['d']);
    expect(op.state.size).toBe(3);
    expect(op.state.stats.evictedIds).toBe(2);
  });

  it('continues from a JSON snapshot as if it had never stopped', async () => {
    const items = Array.from({ length: 200 }, (_, i) => ev(`e${(i * 7) % 60}`, i * 3 + ((i * 13) % 40), i));
    const batches = Array.from({ length: 8 }, (_, b) => batchOf(items.slice(b * 25, (b + 1) * 25), b * 75 - 20));
    const wholeSide: DedupeRecord<Ev>[] = [];
    const whole = await run(dedupe(options(wholeSide)), batches);

    const side: DedupeRecord<Ev>[] = [];
    const first = dedupe(options(side));
    const before = await run(first, batches.slice(0, 3));
    const snapshot = JSON.parse(JSON.stringify(first.state.snapshot())) as DedupeSnapshot;
    const second = dedupe(options(side));
    second.state.restore(snapshot);
    const after = await run(second, batches.slice(3));
    expect([...before, ...after].map((b) => b.items)).toEqual(whole.map((b) => b.items));
    expect(side).toEqual(wholeSide);
    expect(wholeSide.length).toBeGreaterThan(0);
  });

  it('refuses bad bounds and describes itself', () => {
    expect(() => dedupe(options([], { horizonMs: -1 }))).toThrow(RangeError);
    expect(() => dedupe(options([], { maxIds: 0 }))).toThrow(RangeError);
    expect(dedupe(options([], { name: 'events-dedupe' })).info).toEqual({
      name: 'events-dedupe',
      kind: 'dedupe',
      params: { horizonMs: 100, maxIds: 1_000_000, beyondHorizon: 'divert' },
      sideOutputs: ['duplicates'],
    });
  });
});

interface Case {
  readonly batches: readonly { readonly items: readonly Ev[]; readonly watermark: number }[];
  readonly horizonMs: number;
}

const caseArb: fc.Arbitrary<Case> = fc
  .record({
    raw: fc.array(fc.record({ id: fc.constantFrom('a', 'b', 'c', 'd', 'e'), ts: fc.integer({ min: 0, max: 100 }) }), { maxLength: 60 }),
    cuts: fc.array(fc.nat({ max: 60 }), { maxLength: 12 }),
    slacks: fc.array(fc.integer({ min: 0, max: 40 }), { minLength: 1, maxLength: 10 }),
    horizonMs: fc.integer({ min: 0, max: 50 }),
  })
  .map(({ raw, cuts, slacks, horizonMs }) => {
    const events = raw.map((e, n) => ({ ...e, n }));
    const bounds = [...new Set(cuts.map((c) => Math.min(c, events.length)))].sort((a, b) => a - b);
    const batches: { items: Ev[]; watermark: number }[] = [];
    let start = 0;
    let maxTs = -Infinity;
    for (const [i, end] of [...bounds, events.length].entries()) {
      const items = events.slice(start, end);
      for (const e of items) maxTs = Math.max(maxTs, e.ts);
      batches.push({ items, watermark: maxTs - slacks[i % slacks.length]! });
      start = end;
    }
    return { batches, horizonMs };
  });

function runCase(c: Case, horizonMs: number): { out: Ev[][]; side: DedupeRecord<Ev>[] } {
  const side: DedupeRecord<Ev>[] = [];
  const op = dedupe(options(side, { horizonMs }));
  const out: Ev[][] = [];
  from(c.batches.map((b) => batchOf(b.items, b.watermark)))
    .pipe(op)
    .subscribe((b) => out.push([...b.items]));
  return { out, side };
}

describe('dedupe over random out-of-order streams', () => {
  it('passes exactly the items whose id was not passed on within the horizon before them', () => {
    fc.assert(
      fc.property(caseArb, (c) => {
        const { out, side } = runCase(c, c.horizonMs);
        const kept: Ev[] = [];
        const expectedOut: Ev[][] = [];
        const expectedSide: string[] = [];
        let watermark = -Infinity;
        for (const b of c.batches) {
          const here: Ev[] = [];
          for (const e of b.items) {
            if (e.ts < watermark - c.horizonMs) expectedSide.push(`beyond-horizon:${e.n}`);
            else if (kept.some((k) => k.id === e.id && k.ts >= watermark - c.horizonMs)) expectedSide.push(`duplicate:${e.n}`);
            else {
              kept.push(e);
              here.push(e);
            }
          }
          expectedOut.push(here);
          watermark = Math.max(watermark, b.watermark);
        }
        expect(out).toEqual(expectedOut);
        expect(side.map((r) => `${r.reason}:${r.item.n}`)).toEqual(expectedSide);
      }),
      { numRuns: 300 },
    );
  });

  it('with a horizon covering the stream, passes the first occurrence of each id, and outputs + diverted = inputs', () => {
    fc.assert(
      fc.property(caseArb, (c) => {
        const { out, side } = runCase(c, 1e9);
        const inputs = c.batches.flatMap((b) => b.items);
        const firsts = inputs.filter((e, i) => inputs.findIndex((o) => o.id === e.id) === i);
        expect(out.flat()).toEqual(firsts);
        expect(side.every((r) => r.reason === 'duplicate')).toBe(true);
        expect([...out.flat(), ...side.map((r) => r.item)].map((e) => e.n).sort((a, b) => a - b)).toEqual(inputs.map((e) => e.n));
      }),
    );
  });
});
