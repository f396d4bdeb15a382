import { Observable } from 'rxjs';
import { Ticket, withItems, type Batch } from './batch.js';
import { defineOperator, type Operator } from './operator.js';
import { ShardedMap } from './sharded-map.js';

/** One match: a right item whose time falls in its left item's interval. */
export interface JoinedPair<T> {
  readonly key: string;
  readonly left: T;
  readonly right: T;
}

/** A left item with every right item that matched it, emitted once its interval is complete (possibly no match). */
export interface JoinedGroup<T> {
  readonly key: string;
  readonly left: T;
  readonly matches: readonly T[];
  /** Emitted before its interval was complete, because the join held `maxStateItems` items: later matches are missed. */
  readonly closedEarly?: true;
}

export type JoinSide = 'left' | 'right';

/**
 * Why an item left the join other than in the main output:
 * - `late`: it arrived with a timestamp below the watermark, when some items it could have matched may already be
 *   gone, so joining it would give a partial answer;
 * - `unmatched`: it was freed without matching anything (right items in both modes, left items in `pairs` mode;
 *   in `grouped` mode an unmatched left item is a main output with no matches);
 * - `state-full`: it was freed early, unmatched, because the join held `maxStateItems` items (a right item when no
 *   left item was held, or a left item in `pairs` mode); it may have missed matches;
 * - `invalid-timestamp`: its timestamp is not a finite number.
 */
export type JoinSideReason = 'late' | 'unmatched' | 'state-full' | 'invalid-timestamp';

export interface JoinSideRecord<T> {
  readonly reason: JoinSideReason;
  readonly side: JoinSide;
  readonly item: T;
}

export interface JoinSideSink<T> {
  push(record: JoinSideRecord<T>): void;
}

export interface IntervalJoinConfig<T> {
  readonly name?: string;
  readonly left: (item: T) => boolean;
  readonly right: (item: T) => boolean;
  readonly key: (item: T) => string;
  /**
   * A further condition a left and a right item of the same key, in each other's interval, must meet to match (an
   * interval join's extra join predicate). Default none: key and time decide.
   */
  readonly condition?: (left: T, right: T) => boolean;
  /** Event time in ms. */
  readonly timestamp: (item: T) => number;
  /** A right item matches a left item of the same key when left.ts + lowerMs <= right.ts <= left.ts + upperMs. */
  readonly lowerMs: number;
  readonly upperMs: number;
  /**
   * Most items (both sides) held; beyond it the oldest left items are finished early (see `enforceBound`).
   * Default 1_000_000.
   */
  readonly maxStateItems?: number;
  /**
   * When the source completes, finish every held item as if the watermark had reached +Infinity and pass the
   * results on in one last batch (watermark +Infinity, no positions). Default true, which is right for bounded
   * input; a job that checkpoints the join state across restarts sets it to false so that held items wait in the
   * state for their matches instead of being finished early.
   */
  readonly flushOnComplete?: boolean;
  readonly sideOutput: JoinSideSink<T>;
}

export interface IntervalJoinStats {
  left: number;
  right: number;
  /** Items that are neither left nor right; the join is not about them. */
  ignored: number;
  emitted: number;
  late: number;
  unmatched: number;
  stateFull: number;
  invalid: number;
}

export interface IntervalJoinSnapshot<T> {
  /** null stands for -Infinity, which JSON cannot carry. */
  readonly watermark: number | null;
  /** Held items key by key, each key's items in the order they are matched against, so a restore keeps that order. */
  readonly entries: readonly {
    readonly side: JoinSide;
    readonly item: T;
    /** Arrival order, which breaks ties between items freed at the same time. */
    readonly seq: number;
    readonly matched: boolean;
    readonly matches?: readonly T[];
  }[];
  readonly stats: IntervalJoinStats;
}

export type JoinMode = 'pairs' | 'grouped';

/**
 * What one side of a bucket holds: nothing, its one entry, or a list of two or more. Most keys hold one item a side
 * for their whole window (an impression, its served features), and a list of one would be an object more for each.
 */
type Held<T> = Entry<T> | Entry<T>[] | undefined;

interface Bucket<T> {
  /** The key's string, held once for all the bucket's entries. */
  readonly key: string;
  left: Held<T>;
  right: Held<T>;
}

/** Calls `visit` with each entry `held` holds. */
function forEachHeld<T>(held: Held<T>, visit: (entry: Entry<T>) => void): void {
  if (held === undefined) return;
  if (Array.isArray(held)) for (const entry of held) visit(entry);
  else visit(held);
}

interface Entry<T> {
  readonly item: T;
  readonly side: JoinSide;
  readonly ts: number;
  /** Freed once the watermark is above this. */
  readonly expiry: number;
  readonly seq: number;
  readonly bucket: Bucket<T>;
  /** Position in its bucket's array, for O(1) removal. */
  index: number;
  matched: boolean;
  /**
   * Grouped mode, left items only: the first match, and a list of the others, created at the second match. A held
   * impression typically gets one match (its served features) for its whole window, and a list of one would be an
   * object more for each. Items are never undefined.
   */
  firstMatch: T | undefined;
  moreMatches: T[] | undefined;
}

/**
 * The state and logic of an event-time interval join, without RxJS.
 *
 * Lateness follows Flink: an item whose timestamp is below the watermark it arrives under (the watermark of the
 * batches before its own) is late and goes to the side output. That is exactly the rule under which every match of
 * an accepted item is still held or yet to come, so the result over accepted items equals a nested-loop join of
 * them. A left item is held until the watermark passes ts + upperMs (then, in `grouped` mode, it is emitted); a
 * right item until the watermark passes ts - lowerMs, after which no acceptable left item could match it.
 *
 * Each arriving item is compared with the held items of its key on the other side, so its cost grows with how many
 * items one key has within an interval; freeing is a binary heap on expiry per side, O(log held) per item.
 */
export class IntervalJoinState<T> {
  readonly stats: IntervalJoinStats = {
    left: 0,
    right: 0,
    ignored: 0,
    emitted: 0,
    late: 0,
    unmatched: 0,
    stateFull: 0,
    invalid: 0,
  };
  private watermarkNow = -Infinity;
  private seq = 0;
  private readonly buckets = new ShardedMap<Bucket<T>>();
  /** Min-heaps on (expiry, seq), one a side: the next item of the side to free is always on top. */
  private readonly leftHeap: Entry<T>[] = [];
  private readonly rightHeap: Entry<T>[] = [];
  private readonly maxStateItems: number;
  private readonly grouped: boolean;

  constructor(
    private readonly config: IntervalJoinConfig<T>,
    readonly mode: JoinMode,
  ) {
    if (!Number.isFinite(config.lowerMs) || !Number.isFinite(config.upperMs) || config.lowerMs > config.upperMs) {
      throw new RangeError(`interval join needs finite lowerMs <= upperMs, got [${config.lowerMs}, ${config.upperMs}]`);
    }
    this.grouped = mode === 'grouped';
    this.maxStateItems = config.maxStateItems ?? 1_000_000;
    if (!Number.isInteger(this.maxStateItems) || this.maxStateItems < 1) {
      throw new RangeError(`maxStateItems must be a positive integer, got ${this.maxStateItems}`);
    }
  }

  get watermark(): number {
    return this.watermarkNow;
  }

  /** Items held, both sides. */
  get size(): number {
    return this.leftHeap.length + this.rightHeap.length;
  }

  get keys(): number {
    return this.buckets.size;
  }

  /** Joins a batch's items under the current watermark, then advances to `watermark` and frees what it completes. */
  process(items: readonly T[], watermark: number, out: (JoinedPair<T> | JoinedGroup<T>)[]): void {
    const { left, right, timestamp } = this.config;
    for (const item of items) {
      const isLeft = left(item);
      const isRight = right(item);
      if (!isLeft && !isRight) {
        this.stats.ignored++;
        continue;
      }
      if (isLeft) this.stats.left++;
      if (isRight) this.stats.right++;
      const ts = timestamp(item);
      if (!Number.isFinite(ts)) {
        if (isLeft) this.divert('invalid-timestamp', 'left', item);
        if (isRight) this.divert('invalid-timestamp', 'right', item);
        continue;
      }
      if (ts < this.watermarkNow) {
        if (isLeft) this.divert('late', 'left', item);
        if (isRight) this.divert('late', 'right', item);
        continue;
      }
      const key = this.config.key(item);
      if (isLeft) this.addLeft(item, key, ts, out);
      if (isRight) this.addRight(item, key, ts, out);
    }
    if (watermark > this.watermarkNow) this.watermarkNow = watermark;
    // Also when the watermark stands still: a right item accepted just now may already be past its expiry.
    this.freeUpTo(this.watermarkNow, out);
  }

  /** Finishes every held item as if the watermark were +Infinity; the watermark itself is left as it is. */
  drain(out: (JoinedPair<T> | JoinedGroup<T>)[]): void {
    this.freeUpTo(Infinity, out);
  }

  snapshot(): IntervalJoinSnapshot<T> {
    const entries: IntervalJoinSnapshot<T>['entries'][number][] = [];
    for (const bucket of this.buckets.values()) {
      forEachHeld(bucket.left, (e) => entries.push(savedOf(e)));
      forEachHeld(bucket.right, (e) => entries.push(savedOf(e)));
    }
    return {
      watermark: this.watermarkNow === -Infinity ? null : this.watermarkNow,
      entries,
      stats: { ...this.stats },
    };
  }

  /** Replaces the state with a snapshot's; key and time are recomputed from the items with this join's config. */
  restore(snapshot: IntervalJoinSnapshot<T>): void {
    this.buckets.clear();
    this.leftHeap.length = 0;
    this.rightHeap.length = 0;
    this.watermarkNow = snapshot.watermark ?? -Infinity;
    Object.assign(this.stats, snapshot.stats);
    let nextSeq = 0;
    for (const saved of snapshot.entries) {
      this.seq = saved.seq;
      const entry = this.hold(saved.item, saved.side, this.config.key(saved.item), this.config.timestamp(saved.item));
      entry.matched = saved.matched;
      for (const match of saved.matches ?? []) addMatch(entry, match);
      nextSeq = Math.max(nextSeq, saved.seq + 1);
    }
    this.seq = nextSeq;
  }

  private addLeft(item: T, key: string, ts: number, out: (JoinedPair<T> | JoinedGroup<T>)[]): void {
    const entry = this.hold(item, 'left', key, ts);
    const from = ts + this.config.lowerMs;
    const to = ts + this.config.upperMs;
    const condition = this.config.condition;
    forEachHeld(entry.bucket.right, (r) => {
      if (r.ts < from || r.ts > to || (condition !== undefined && !condition(item, r.item))) return;
      r.matched = true;
      entry.matched = true;
      if (this.grouped) addMatch(entry, r.item);
      else this.emit(out, { key, left: item, right: r.item });
    });
    this.enforceBound(out);
  }

  private addRight(item: T, key: string, ts: number, out: (JoinedPair<T> | JoinedGroup<T>)[]): void {
    const entry = this.hold(item, 'right', key, ts);
    const { lowerMs, upperMs, condition } = this.config;
    forEachHeld(entry.bucket.left, (l) => {
      if (ts < l.ts + lowerMs || ts > l.ts + upperMs || (condition !== undefined && !condition(l.item, item))) return;
      l.matched = true;
      entry.matched = true;
      if (this.grouped) addMatch(l, item);
      else this.emit(out, { key, left: l.item, right: item });
    });
    this.enforceBound(out);
  }

  private hold(item: T, side: JoinSide, key: string, ts: number): Entry<T> {
    let bucket = this.buckets.get(key);
    if (bucket === undefined) {
      bucket = { key, left: undefined, right: undefined };
      this.buckets.set(key, bucket);
    }
    const isLeft = side === 'left';
    const held = isLeft ? bucket.left : bucket.right;
    const entry: Entry<T> = {
      item,
      side,
      ts,
      expiry: isLeft ? ts + this.config.upperMs : ts - this.config.lowerMs,
      seq: this.seq++,
      bucket,
      index: 0,
      matched: false,
      firstMatch: undefined,
      moreMatches: undefined,
    };
    let next: Entry<T> | Entry<T>[] = entry;
    if (Array.isArray(held)) {
      entry.index = held.length;
      held.push(entry);
      next = held;
    } else if (held !== undefined) {
      // An array literal of exactly two: a push onto an empty array would reserve room for 17.
      entry.index = 1;
      next = [held, entry];
    }
    if (isLeft) bucket.left = next;
    else bucket.right = next;
    this.heapPush(isLeft ? this.leftHeap : this.rightHeap, entry);
    return entry;
  }

  /**
   * Over `maxStateItems`, the oldest left items leave first, with every left item of the same time, so that the
   * impressions of one request leave together. Most of their interval has passed, while a held right item is young and
   * is what newer left items still need: freeing items in expiry order would free the right items first (a right item
   * is held only until the watermark passes its own time), and newer left items would then miss their matches. In
   * `grouped` mode a freed left item is emitted with what it matched (`closedEarly`); in `pairs` mode its matches were
   * emitted already. Right items go only when no left item is held.
   */
  private enforceBound(out: (JoinedPair<T> | JoinedGroup<T>)[]): void {
    const lefts = this.leftHeap;
    while (this.size > this.maxStateItems) {
      if (lefts.length === 0) {
        const entry = this.heapPop(this.rightHeap)!;
        this.freeEarly(entry, out);
        continue;
      }
      const expiry = lefts[0]!.expiry;
      while (lefts.length > 0 && lefts[0]!.expiry === expiry) this.freeEarly(this.heapPop(lefts)!, out);
    }
  }

  private freeEarly(entry: Entry<T>, out: (JoinedPair<T> | JoinedGroup<T>)[]): void {
    this.release(entry);
    this.stats.stateFull++;
    if (this.grouped && entry.side === 'left') {
      this.emit(out, { key: entry.bucket.key, left: entry.item, matches: matchesOf(entry), closedEarly: true });
    } else if (!entry.matched) {
      this.config.sideOutput.push({ reason: 'state-full', side: entry.side, item: entry.item });
    }
  }

  private freeUpTo(watermark: number, out: (JoinedPair<T> | JoinedGroup<T>)[]): void {
    for (const heap of [this.leftHeap, this.rightHeap]) {
      while (heap.length > 0 && heap[0]!.expiry < watermark) {
        const entry = this.heapPop(heap)!;
        this.release(entry);
        if (this.grouped && entry.side === 'left') {
          this.emit(out, { key: entry.bucket.key, left: entry.item, matches: matchesOf(entry) });
        } else if (!entry.matched) {
          this.stats.unmatched++;
          this.config.sideOutput.push({ reason: 'unmatched', side: entry.side, item: entry.item });
        }
      }
    }
  }

  private emit(out: (JoinedPair<T> | JoinedGroup<T>)[], result: JoinedPair<T> | JoinedGroup<T>): void {
    this.stats.emitted++;
    out.push(result);
  }

  private divert(reason: JoinSideReason, side: JoinSide, item: T): void {
    if (reason === 'late') this.stats.late++;
    else this.stats.invalid++;
    this.config.sideOutput.push({ reason, side, item });
  }

  private release(entry: Entry<T>): void {
    const bucket = entry.bucket;
    const isLeft = entry.side === 'left';
    const held = isLeft ? bucket.left : bucket.right;
    let next: Held<T> = undefined;
    if (Array.isArray(held)) {
      const last = held.pop()!;
      if (last !== entry) {
        held[entry.index] = last;
        last.index = entry.index;
      }
      // Back to one entry: held on its own again, not in a list of one.
      if (held.length === 1) held[0]!.index = 0;
      next = held.length === 1 ? held[0] : held;
    }
    if (isLeft) bucket.left = next;
    else bucket.right = next;
    if (bucket.left === undefined && bucket.right === undefined) this.buckets.delete(bucket.key);
  }

  private heapPush(heap: Entry<T>[], entry: Entry<T>): void {
    let i = heap.length;
    heap.push(entry);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const p = heap[parent]!;
      if (!before(entry, p)) break;
      heap[i] = p;
      i = parent;
    }
    heap[i] = entry;
  }

  private heapPop(heap: Entry<T>[]): Entry<T> | undefined {
    const top = heap[0];
    const last = heap.pop();
    if (top === undefined || last === undefined || heap.length === 0) return top;
    const n = heap.length;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const child = r < n && before(heap[r]!, heap[l]!) ? r : l;
      const c = heap[child]!;
      if (!before(c, last)) break;
      heap[i] = c;
      i = child;
    }
    heap[i] = last;
    return top;
  }
}

const NO_MATCHES: readonly never[] = Object.freeze([]);

function addMatch<T>(entry: Entry<T>, item: T): void {
  if (entry.firstMatch === undefined) entry.firstMatch = item;
  else if (entry.moreMatches) entry.moreMatches.push(item);
  else entry.moreMatches = [item];
}

/** A left entry's matches as the list a group carries, made when it is emitted or saved. */
function matchesOf<T>(entry: Entry<T>): readonly T[] {
  if (entry.firstMatch === undefined) return NO_MATCHES;
  return entry.moreMatches ? [entry.firstMatch, ...entry.moreMatches] : [entry.firstMatch];
}

function savedOf<T>(e: Entry<T>): IntervalJoinSnapshot<T>['entries'][number] {
  const matches = e.firstMatch !== undefined ? { matches: [...matchesOf(e)] } : {};
  return { side: e.side, item: e.item, seq: e.seq, matched: e.matched, ...matches };
}

function before<T>(a: Entry<T>, b: Entry<T>): boolean {
  return a.expiry < b.expiry || (a.expiry === b.expiry && a.seq < b.seq);
}

export type IntervalJoinOperator<T, O> = Operator<T, O> & { readonly state: IntervalJoinState<T> };

/**
 * Event-time interval join of two kinds of item arriving in one stream (impressions and clicks from `events`): a
 * right item matches each left item of the same key with left.ts + lowerMs <= right.ts <= left.ts + upperMs (and
 * `condition(left, right)`, when given).
 *
 * - `pairs`: each match is emitted in the batch where its second item arrives.
 * - `grouped`: an outer join on the left; each left item is emitted once, with all its matches, in the batch whose
 *   watermark passes left.ts + upperMs, or earlier (`closedEarly`) when the join holds `maxStateItems` items.
 *
 * An output is on time for a downstream event-time operator when timed by when it became complete: a pair by
 * max(left.ts, right.ts), a group by left.ts + upperMs. (Timed by left.ts, a group is late by design.)
 *
 * Late, unmatched, freed-early and invalid items go to `sideOutput` (side output `unjoined`) with the reason (see
 * `JoinSideReason`), so every left or right item shows up in the main output or there. The operator's
 * `state` holds the join's state for snapshot and restore; one operator instance serves one running graph.
 */
export function intervalJoin<T>(
  config: IntervalJoinConfig<T> & { readonly mode: 'pairs' },
): IntervalJoinOperator<T, JoinedPair<T>>;
export function intervalJoin<T>(
  config: IntervalJoinConfig<T> & { readonly mode: 'grouped' },
): IntervalJoinOperator<T, JoinedGroup<T>>;
export function intervalJoin<T>(
  config: IntervalJoinConfig<T> & { readonly mode: JoinMode },
): IntervalJoinOperator<T, JoinedPair<T> | JoinedGroup<T>>;
export function intervalJoin<T>(
  config: IntervalJoinConfig<T> & { readonly mode: JoinMode },
): IntervalJoinOperator<T, JoinedPair<T> | JoinedGroup<T>> {
  const state = new IntervalJoinState<T>(config, config.mode);
  const flushOnComplete = config.flushOnComplete ?? true;
  const operator = defineOperator<T, JoinedPair<T> | JoinedGroup<T>>(
    {
      name: config.name ?? 'interval-join',
      kind: 'interval-join',
      params: {
        mode: config.mode,
        lowerMs: config.lowerMs,
        upperMs: config.upperMs,
        maxStateItems: config.maxStateItems ?? 1_000_000,
        flushOnComplete,
      },
      sideOutputs: ['unjoined'],
    },
    (source$) =>
      new Observable<Batch<JoinedPair<T> | JoinedGroup<T>>>((subscriber) =>
        source$.subscribe({
          next: (batch) => {
            const out: (JoinedPair<T> | JoinedGroup<T>)[] = [];
            try {
              state.process(batch.items, batch.watermark, out);
            } catch (error) {
              subscriber.error(new Error(`${config.name ?? 'interval-join'} failed on a batch`, { cause: error }));
              return;
            }
            subscriber.next(withItems(batch, out));
          },
          error: (error: unknown) => subscriber.error(error),
          complete: () => {
            if (flushOnComplete) {
              const out: (JoinedPair<T> | JoinedGroup<T>)[] = [];
              state.drain(out);
              if (out.length > 0) subscriber.next({ items: out, watermark: Infinity, ticket: new Ticket([]) });
            }
            subscriber.complete();
          },
        }),
      ),
  );
  return Object.assign(operator, { state });
}
