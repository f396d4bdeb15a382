import fc from 'fast-check';
import { Subject } from 'rxjs';
import { describe, expect, it } from 'vitest';
import { batchOf, type Batch } from '../operators/batch.js';
import {
  intervalJoin,
  type IntervalJoinSnapshot,
  type JoinedGroup,
  type JoinedPair,
  type JoinMode,
  type JoinSideRecord,
} from '../operators/interval-join.js';

/** L: left only, R: right only, B: both sides, O: neither. */
interface Ev {
  readonly id: number;
  readonly key: string;
  readonly kind: 'L' | 'R' | 'B' | 'O';
  readonly ts: number;
}

interface Case {
  readonly batches: readonly { readonly items: readonly Ev[]; readonly watermark: number }[];
  readonly lowerMs: number;
  readonly upperMs: number;
  readonly flushOnComplete: boolean;
  /** Batch index before which the join is snapshotted to JSON and continued by a fresh operator; -1 for none. */
  readonly restartAt: number;
  /** Whether pairs must also meet `extraCondition`. */
  readonly conditioned: boolean;
}

/** A join predicate beyond key and time, for the cases that have one: about a third of pairs fail it. */
const extraCondition = (l: Ev, r: Ev) => (l.id * 7 + r.id) % 3 !== 0;

const isLeft = (e: Ev) => e.kind === 'L' || e.kind === 'B';
const isRight = (e: Ev) => e.kind === 'R' || e.kind === 'B';

/**
 * Random streams: events in random order with random keys and times, cut into random batches (some empty), each batch
 * carrying a watermark that trails the largest time seen so far by a random slack (sometimes going backwards, which
 * the join must ignore), followed by a few empty batches that move the watermark on.
 */
const caseArb: fc.Arbitrary<Case> = fc
  .record({
    raw: fc.array(
      fc.record({
        key: fc.constantFrom('a', 'b', 'c'),
        kind: fc.constantFrom<Ev['kind']>('L', 'L', 'R', 'R', 'R', 'B', 'O'),
        ts: fc.integer({ min: 0, max: 60 }),
      }),
      { maxLength: 60 },
    ),
    cuts: fc.array(fc.nat({ max: 60 }), { maxLength: 15 }),
    slacks: fc.array(fc.integer({ min: 0, max: 30 }), { minLength: 1, maxLength: 20 }),
    tail: fc.array(fc.integer({ min: 0, max: 40 }), { maxLength: 3 }),
    lowerMs: fc.integer({ min: -10, max: 10 }),
    width: fc.integer({ min: 0, max: 20 }),
    flushOnComplete: fc.boolean(),
    restart: fc.nat({ max: 30 }),
    conditioned: fc.boolean(),
  })
  .map(({ raw, cuts, slacks, tail, lowerMs, width, flushOnComplete, restart, conditioned }) => {
    const events = raw.map((e, id) => ({ ...e, id }));
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
    for (const step of tail) batches.push({ items: [], watermark: (maxTs === -Infinity ? 0 : maxTs) + step });
    return { batches, lowerMs, upperMs: lowerMs + width, flushOnComplete, restartAt: restart < batches.length ? restart : -1, conditioned };
  });

interface Observed {
  /** Per output batch, its results as sorted strings. */
  readonly outputs: string[][];
  /** `batch:reason:side:id`, sorted; the batch index is the input batch during which it was pushed. */
  readonly side: string[];
  readonly flushWatermark: number | undefined;
  /** Items held by the join after each input batch, then after completion. */
  readonly held: number[];
}

const resultText = (r: JoinedPair<Ev> | JoinedGroup<Ev>): string =>
  'right' in r
    ? `${r.left.id}-${r.right.id}`
    : `${r.left.id}:[${r.matches
        .map((m) => m.id)
        .sort((a, b) => a - b)
        .join(',')}]`;

function runJoin(c: Case, mode: JoinMode): Observed {
  const side: string[] = [];
  let current = 0;
  const sideOutput = { push: (r: JoinSideRecord<Ev>) => side.push(`${current}:${r.reason}:${r.side}:${r.item.id}`) };
  const make = () =>
    intervalJoin<Ev>({
      left: isLeft,
      right: isRight,
      key: (e) => e.key,
      ...(c.conditioned ? { condition: extraCondition } : {}),
      timestamp: (e) => e.ts,
      lowerMs: c.lowerMs,
      upperMs: c.upperMs,
      flushOnComplete: c.flushOnComplete,
      sideOutput,
      mode,
    });
  const outputs: string[][] = [];
  const held: number[] = [];
  let flushWatermark: number | undefined;
  const attach = (join: ReturnType<typeof make>) => {
    const input = new Subject<Batch<Ev>>();
    const subscription = join(input).subscribe((b) => {
      if (current === c.batches.length) flushWatermark = b.watermark;
      outputs.push(b.items.map(resultText).sort());
    });
    return { input, subscription };
  };
  let join = make();
  let wired = attach(join);
  c.batches.forEach((b, k) => {
    if (k === c.restartAt) {
      const snapshot = JSON.parse(JSON.stringify(join.state.snapshot())) as IntervalJoinSnapshot<Ev>;
      wired.subscription.unsubscribe();
      join = make();
      join.state.restore(snapshot);
      wired = attach(join);
    }
    current = k;
    wired.input.next(batchOf(b.items, b.watermark));
    held.push(join.state.size);
  });
  current = c.batches.length;
  wired.input.complete();
  held.push(join.state.size);
  return { outputs, side: side.sort(), flushWatermark, held };
}

/** The same join by brute force: decide lateness by the rule, then nested loops over the accepted items. */
function reference(c: Case, mode: JoinMode): Observed {
  const n = c.batches.length;
  const arrival = new Map<Ev, number>();
  const watermarkAfter: number[] = [];
  const lefts: Ev[] = [];
  const rights: Ev[] = [];
  const side: string[] = [];
  let watermark = -Infinity;
  c.batches.forEach((b, k) => {
    for (const e of b.items) {
      arrival.set(e, k);
      if (e.ts < watermark) {
        if (isLeft(e)) side.push(`${k}:late:left:${e.id}`);
        if (isRight(e)) side.push(`${k}:late:right:${e.id}`);
        continue;
      }
      if (isLeft(e)) lefts.push(e);
      if (isRight(e)) rights.push(e);
    }
    watermark = Math.max(watermark, b.watermark);
    watermarkAfter.push(watermark);
  });
  const matches = (l: Ev, r: Ev) =>
    l.key === r.key && l.ts + c.lowerMs <= r.ts && r.ts <= l.ts + c.upperMs && (!c.conditioned || extraCondition(l, r));
  /** The input batch after which an item held until the watermark passes `expiry` is freed; n is the flush. */
  const freedAt = (e: Ev, expiry: number): number | undefined => {
    for (let k = arrival.get(e)!; k < n; k++) if (watermarkAfter[k]! > expiry) return k;
    return c.flushOnComplete ? n : undefined;
  };
  const outputs: string[][] = Array.from({ length: n + 1 }, () => []);
  const held = Array.from({ length: n + 1 }, () => 0);
  const holdUntil = (e: Ev, at: number | undefined) => {
    for (let k = arrival.get(e)!; k < (at ?? n + 1); k++) held[k]!++;
  };
  for (const l of lefts) {
    const mine = rights.filter((r) => matches(l, r));
    const at = freedAt(l, l.ts + c.upperMs);
    holdUntil(l, at);
    if (mode === 'pairs') {
      for (const r of mine) outputs[Math.max(arrival.get(l)!, arrival.get(r)!)]!.push(`${l.id}-${r.id}`);
      if (mine.length === 0 && at !== undefined) side.push(`${at}:unmatched:left:${l.id}`);
    } else if (at !== undefined) {
      outputs[at]!.push(`${l.id}:[${mine.map((m) => m.id).sort((a, b) => a - b).join(',')}]`);
    }
  }
  for (const r of rights) {
    const at = freedAt(r, r.ts - c.lowerMs);
    holdUntil(r, at);
    if (at !== undefined && !lefts.some((l) => matches(l, r))) side.push(`${at}:unmatched:right:${r.id}`);
  }
  const flushed = outputs.pop()!;
  if (flushed.length > 0) outputs.push(flushed);
  return {
    outputs: outputs.map((o) => o.sort()),
    side: side.sort(),
    flushWatermark: flushed.length > 0 ? Infinity : undefined,
    held,
  };
}

describe('intervalJoin over random out-of-order streams', () => {
  for (const mode of ['pairs', 'grouped'] as const) {
    it(`equals a nested-loop join of the on-time items (${mode})`, () => {
      fc.assert(
        fc.property(caseArb, (c) => {
          expect(runJoin(c, mode)).toEqual(reference(c, mode));
        }),
        { numRuns: 300 },
      );
    });
  }

  it('accounts for every left or right item in the main output or the side output', () => {
    fc.assert(
      fc.property(caseArb, (c) => {
        const observed = runJoin({ ...c, flushOnComplete: true }, 'grouped');
        const seen = new Set<string>();
        for (const batch of observed.outputs) {
          for (const text of batch) {
            const [left, matched] = text.split(':');
            seen.add(`left:${left}`);
            for (const r of matched!.slice(1, -1).split(',').filter(Boolean)) seen.add(`right:${r}`);
          }
        }
        for (const s of observed.side) {
          const [, , role, id] = s.split(':');
          seen.add(`${role}:${id}`);
        }
        const expected = new Set<string>();
        for (const b of c.batches) {
          for (const e of b.items) {
            if (isLeft(e)) expected.add(`left:${e.id}`);
            if (isRight(e)) expected.add(`right:${e.id}`);
          }
        }
        expect(seen).toEqual(expected);
        expect(observed.held.at(-1)).toBe(0);
      }),
    );
  });
});
