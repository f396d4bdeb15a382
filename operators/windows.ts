import { concat, defer, EMPTY, map, of } from 'rxjs';
import { Ticket, withItems, type Batch } from './batch.js';
import { defineOperator, type Operator, type OperatorInfo } from './operator.js';

/**
 * What the event-time window operators (aligned-windows.ts: tumbling and sliding; session-window.ts) share: the
 * aggregate they fold items with, the results they emit, their options, counters and snapshot helpers.
 *
 * Semantics, as in Flink: a window fires in the batch whose watermark reaches its end (watermark >= end). Items are
 * checked against the watermark as it stood before their batch. An item for a window that has fired but whose
 * `allowedLatenessMs` has not yet run out (watermark < end + allowedLatenessMs) updates it, and the window fires again
 * for the keys it changed, once per batch, marked `update: true`. Items later than that go to the `late` sink and are
 * counted. A window's state is freed once watermark >= end + allowedLatenessMs. Sessions judge lateness per item;
 * see session-window.ts.
 *
 * Watermarks come from the batches (set them with `eventTime` upstream); with none, windows fire only on the flush at
 * completion. Each operator instance owns its state and is also its handle (`stats`, `snapshot`, `restore`): create
 * one per pipeline and subscribe it once.
 */

/**
 * Folds items into an accumulator. `add` may mutate and return `acc`; `result` defaults to the accumulator itself.
 * Accumulators are never `undefined`, and are JSON-serialisable if snapshots are to be stored as JSON.
 */
export interface Aggregate<T, A, R = A> {
  create(): A;
  add(acc: A, item: T): A;
  /** Combines two accumulators; session windows need it to merge sessions an item bridges. */
  merge?(a: A, b: A): A;
  result?(acc: A): R;
}

/** Counts items. */
export function count<T>(): Aggregate<T, number> & { merge(a: number, b: number): number } {
  return { create: () => 0, add: (acc) => acc + 1, merge: (a, b) => a + b };
}

/** Sums a number taken from each item. */
export function sum<T>(of: (item: T) => number): Aggregate<T, number> & { merge(a: number, b: number): number } {
  return { create: () => 0, add: (acc, item) => acc + of(item), merge: (a, b) => a + b };
}

/** Keys are strings or numbers, so that state snapshots are plain JSON. */
export type WindowKey = string | number;

export interface WindowResult<K, R> {
  readonly key: K;
  /** Inclusive, ms. */
  readonly start: number;
  /** Exclusive, ms. */
  readonly end: number;
  readonly value: R;
  /**
   * True when a result for this key and window was emitted before and this one supersedes it (a late item within the
   * allowed lateness arrived; for sessions, the window may also have grown to contain the earlier one).
   */
  readonly update: boolean;
}

export interface LateSink<T> {
  push(item: T): void;
}

export interface WindowOptions<T, K extends WindowKey, A, R> {
  readonly key: (item: T) => K;
  /** The item's event time in ms. An item whose time is not a finite number goes to `late` and is counted. */
  readonly timestamp: (item: T) => number;
  readonly aggregate: Aggregate<T, A, R>;
  /** Default 0: a window's state is freed as soon as it fires. */
  readonly allowedLatenessMs?: number;
  /** Receives every item too late for any window; required, so late items are never dropped silently. */
  readonly late: LateSink<T>;
  /**
   * When the input completes, fire every window still open, in one last batch with watermark +Infinity and a ticket
   * without positions, so a bounded stream gives complete results. Default true. Turn it off for a job that stops to
   * resume from a snapshot later: flushing would emit partial windows that the resumed job emits again.
   */
  readonly flushOnComplete?: boolean;
  readonly name?: string;
}

export interface WindowStats {
  /** Items seen. Always `accepted + late`. */
  received: number;
  /** Items added to at least one window. */
  accepted: number;
  /** Items sent to the late sink, including those with an invalid timestamp. */
  late: number;
  invalidTimestamps: number;
  /** Results emitted for the first time for their key and window. */
  fired: number;
  /** Results that supersede an earlier one (`update: true`). */
  updates: number;
  /** Windows (aligned) or sessions fired early and dropped because the state bound was reached. */
  evicted: number;
}

export function emptyStats(): WindowStats {
  return { received: 0, accepted: 0, late: 0, invalidTimestamps: 0, fired: 0, updates: 0, evicted: 0 };
}

/** The handle every window operator carries besides being an operator. */
export interface WindowState<S> {
  readonly stats: WindowStats;
  /** The watermark the operator has reached (-Infinity before the first). */
  readonly watermark: number;
  /**
   * The keyed window state, JSON-serialisable when keys and accumulators are. Take it between batches (for example
   * in the runner's `checkpoint`); restoring it into a fresh operator with the same options and feeding the batches
   * that followed gives the same results as an uninterrupted run.
   */
  snapshot(): S;
  /** Replaces the state with a snapshot's. */
  restore(snapshot: S): void;
}

export function finiteOrNull(value: number): number | null {
  return Number.isFinite(value) ? value : null;
}

export function requirePositive(name: string, value: number): void {
  if (!(value > 0) || !Number.isFinite(value)) throw new RangeError(`${name} must be a positive finite number, got ${value}`);
}

export function requireNonNegative(name: string, value: number): void {
  if (!(value >= 0) || !Number.isFinite(value)) throw new RangeError(`${name} must be a finite number >= 0, got ${value}`);
}

/** The state machine behind a window operator; `windowOperator` wires it into a stream. */
export interface WindowEngine<T, K, R, S> extends WindowState<S> {
  /** Adds a batch's items against the current watermark, then advances it; returns the results that fire. */
  process(items: readonly T[], watermark: number): WindowResult<K, R>[];
  /** Fires every open window and frees all state. */
  flush(): WindowResult<K, R>[];
}

export type WindowOperator<T, K, R, S> = Operator<T, WindowResult<K, R>> & WindowState<S>;

/** Maps each batch through the engine, one batch out per batch in, and flushes on completion if asked. */
export function windowOperator<T, K, R, S>(
  info: OperatorInfo,
  engine: WindowEngine<T, K, R, S>,
  flushOnComplete: boolean,
): WindowOperator<T, K, R, S> {
  const operator = defineOperator<T, WindowResult<K, R>>(info, (source$) => {
    const processed$ = source$.pipe(map((batch) => withItems(batch, engine.process(batch.items, batch.watermark))));
    if (!flushOnComplete) return processed$;
    const flushed$ = defer(() => {
      const results = engine.flush();
      return results.length === 0 ? EMPTY : of<Batch<WindowResult<K, R>>>({ items: results, watermark: Infinity, ticket: new Ticket([]) });
    });
    return concat(processed$, flushed$);
  });
  return Object.defineProperties(operator, {
    stats: { get: () => engine.stats, enumerable: true },
    watermark: { get: () => engine.watermark, enumerable: true },
    snapshot: { value: () => engine.snapshot() },
    restore: { value: (snapshot: S) => engine.restore(snapshot) },
  }) as WindowOperator<T, K, R, S>;
}
