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

const LEFT = 0;
const RIGHT = 1;
const NONE = -1;
const INITIAL_SLOTS = 1024;
const INITIAL_BUCKETS = 256;
const NO_MATCHES: readonly never[] = Object.freeze([]);

function grown<A extends Float64Array | Int32Array | Uint8Array>(array: A, length: number, fill = 0): A {
  const next = new (array.constructor as new (length: number) => A)(length);
  next.set(array);
  if (fill !== 0) next.fill(fill, array.length);
  return next;
}

/**
 * `array` copied into a new array of `length`, the rest undefined: allocated once, where growing it push by push
 * reallocates as it goes, a burst of garbage at a million slots.
 */
function extended<V>(array: readonly (V | undefined)[], length: number): (V | undefined)[] {
  const next = new Array<V | undefined>(length).fill(undefined);
  for (let i = 0; i < array.length; i++) next[i] = array[i];
  return next;
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
 * items one key has within an interval; freeing is a binary heap on time per side, O(log held) per item.
 *
 * Held items live in slots, and everything the join keeps about a slot is a column: typed arrays for times, order,
 * flags and the links between the slots of one key (a list per key and side, in arrival order), plain arrays for the
 * items and their matches. A join can hold a million items for a whole attribution window, and as objects each took
 * four more (its entry, the entry's two boxed times, its key's bucket): the collector's marking of those, on the
 * event loop, stalled serving for hundreds of milliseconds. Keys are numbered buckets, free slots and buckets reused.
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
  private readonly maxStateItems: number;
  private readonly grouped: boolean;

  /** Bucket number of each held key. */
  private readonly buckets = new ShardedMap<number>();
  private bucketKeys: (string | undefined)[] = [];
  /** First and last slot of each bucket's list per side, at 2 * bucket + side. */
  private bucketHeads = new Int32Array(2 * INITIAL_BUCKETS).fill(NONE);
  private bucketTails = new Int32Array(2 * INITIAL_BUCKETS).fill(NONE);
  private readonly freeBuckets: number[] = [];

  private items: (T | undefined)[] = [];
  private times = new Float64Array(INITIAL_SLOTS);
  /** Arrival order, which breaks ties between items of the same time. */
  private seqs = new Float64Array(INITIAL_SLOTS);
  private sides = new Uint8Array(INITIAL_SLOTS);
  private matchedFlags = new Uint8Array(INITIAL_SLOTS);
  private bucketOf = new Int32Array(INITIAL_SLOTS);
  private nextInBucket = new Int32Array(INITIAL_SLOTS);
  private previousInBucket = new Int32Array(INITIAL_SLOTS);
  /** Grouped mode, left items only: what each has matched, a list made at its first match. */
  private matches: (T[] | undefined)[] = [];
  private readonly freeSlots: number[] = [];
  /** Slots ever used: those below it are held or free. */
  private usedSlots = 0;

  /** Min-heaps of slots on (time, arrival), one a side: the next item of the side to free is always on top. */
  private readonly heaps = [new Int32Array(INITIAL_SLOTS), new Int32Array(INITIAL_SLOTS)];
  private readonly heapSizes = [0, 0];

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
    this.items = extended([], INITIAL_SLOTS);
    this.matches = extended([], INITIAL_SLOTS);
  }

  get watermark(): number {
    return this.watermarkNow;
  }

  /** Items held, both sides. */
  get size(): number {
    return this.heapSizes[LEFT]! + this.heapSizes[RIGHT]!;
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
      for (const side of [LEFT, RIGHT]) {
        for (let slot = this.bucketHeads[2 * bucket + side]!; slot !== NONE; slot = this.nextInBucket[slot]!) {
          const held = this.matches[slot];
          const matches = held ? { matches: [...held] } : {};
          entries.push({ side: side === LEFT ? 'left' : 'right', item: this.items[slot]!, seq: this.seqs[slot]!, matched: this.matchedFlags[slot] === 1, ...matches });
        }
      }
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
    this.bucketKeys = [];
    this.bucketHeads.fill(NONE);
    this.bucketTails.fill(NONE);
    this.freeBuckets.length = 0;
    this.items.fill(undefined);
    this.matches.fill(undefined);
    this.freeSlots.length = 0;
    this.usedSlots = 0;
    this.heapSizes[LEFT] = 0;
    this.heapSizes[RIGHT] = 0;
    this.watermarkNow = snapshot.watermark ?? -Infinity;
    Object.assign(this.stats, snapshot.stats);
    let nextSeq = 0;
    for (const saved of snapshot.entries) {
      this.seq = saved.seq;
      const side = saved.side === 'left' ? LEFT : RIGHT;
      const slot = this.hold(saved.item, side, this.config.key(saved.item), this.config.timestamp(saved.item));
      this.matchedFlags[slot] = saved.matched ? 1 : 0;
      for (const match of saved.matches ?? []) this.addMatch(slot, match);
      nextSeq = Math.max(nextSeq, saved.seq + 1);
    }
    this.seq = nextSeq;
  }

  private addLeft(item: T, key: string, ts: number, out: (JoinedPair<T> | JoinedGroup<T>)[]): void {
    const slot = this.hold(item, LEFT, key, ts);
    const from = ts + this.config.lowerMs;
    const to = ts + this.config.upperMs;
    const condition = this.config.condition;
    const times = this.times;
    for (let r = this.bucketHeads[2 * this.bucketOf[slot]! + RIGHT]!; r !== NONE; r = this.nextInBucket[r]!) {
      const right = this.items[r]!;
      if (times[r]! < from || times[r]! > to || (condition !== undefined && !condition(item, right))) continue;
      this.matchedFlags[r] = 1;
      this.matchedFlags[slot] = 1;
      if (this.grouped) this.addMatch(slot, right);
      else this.emit(out, { key, left: item, right });
    }
    this.enforceBound(out);
  }

  private addRight(item: T, key: string, ts: number, out: (JoinedPair<T> | JoinedGroup<T>)[]): void {
    const slot = this.hold(item, RIGHT, key, ts);
    const { lowerMs, upperMs, condition } = this.config;
    const times = this.times;
    for (let l = this.bucketHeads[2 * this.bucketOf[slot]! + LEFT]!; l !== NONE; l = this.nextInBucket[l]!) {
      const left = this.items[l]!;
      if (ts < times[l]! + lowerMs || ts > times[l]! + upperMs || (condition !== undefined && !condition(left, item))) continue;
      this.matchedFlags[l] = 1;
      this.matchedFlags[slot] = 1;
      if (this.grouped) this.addMatch(l, item);
      else this.emit(out, { key, left, right: item });
    }
    this.enforceBound(out);
  }

  /** Takes a slot for `item`, appends it to its key's list for `side` and to the side's heap. */
  private hold(item: T, side: number, key: string, ts: number): number {
    let bucket = this.buckets.get(key);
    if (bucket === undefined) {
      bucket = this.freeBuckets.pop() ?? this.bucketKeys.length;
      if (2 * bucket >= this.bucketHeads.length) {
        this.bucketHeads = grown(this.bucketHeads, 4 * bucket + 2, NONE);
        this.bucketTails = grown(this.bucketTails, 4 * bucket + 2, NONE);
      }
      this.bucketKeys[bucket] = key;
      this.buckets.set(key, bucket);
    }
    const slot = this.freeSlots.pop() ?? this.newSlot();
    this.items[slot] = item;
    this.times[slot] = ts;
    this.seqs[slot] = this.seq++;
    this.sides[slot] = side;
    this.matchedFlags[slot] = 0;
    this.bucketOf[slot] = bucket;
    const list = 2 * bucket + side;
    const tail = this.bucketTails[list]!;
    this.previousInBucket[slot] = tail;
    this.nextInBucket[slot] = NONE;
    if (tail === NONE) this.bucketHeads[list] = slot;
    else this.nextInBucket[tail] = slot;
    this.bucketTails[list] = slot;
    this.heapPush(side, slot);
    return slot;
  }

  private newSlot(): number {
    const slot = this.usedSlots++;
    if (slot === this.times.length) {
      const capacity = 2 * slot;
      this.times = grown(this.times, capacity);
      this.seqs = grown(this.seqs, capacity);
      this.sides = grown(this.sides, capacity);
      this.matchedFlags = grown(this.matchedFlags, capacity);
      this.bucketOf = grown(this.bucketOf, capacity);
      this.nextInBucket = grown(this.nextInBucket, capacity);
      this.previousInBucket = grown(this.previousInBucket, capacity);
      this.heaps[LEFT] = grown(this.heaps[LEFT]!, capacity);
      this.heaps[RIGHT] = grown(this.heaps[RIGHT]!, capacity);
      this.items = extended(this.items, capacity);
      this.matches = extended(this.matches, capacity);
    }
    return slot;
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
    const lefts = this.heaps[LEFT]!;
    while (this.size > this.maxStateItems) {
      if (this.heapSizes[LEFT] === 0) {
        this.freeEarly(this.heapPop(RIGHT), out);
        continue;
      }
      const ts = this.times[lefts[0]!]!;
      while (this.heapSizes[LEFT]! > 0 && this.times[lefts[0]!] === ts) this.freeEarly(this.heapPop(LEFT), out);
    }
  }

  private freeEarly(slot: number, out: (JoinedPair<T> | JoinedGroup<T>)[]): void {
    this.stats.stateFull++;
    if (this.grouped && this.sides[slot] === LEFT) {
      this.emit(out, { key: this.bucketKeys[this.bucketOf[slot]!]!, left: this.items[slot]!, matches: this.matches[slot] ?? NO_MATCHES, closedEarly: true });
    } else if (this.matchedFlags[slot] === 0) {
      this.config.sideOutput.push({ reason: 'state-full', side: this.sides[slot] === LEFT ? 'left' : 'right', item: this.items[slot]! });
    }
    this.release(slot);
  }

  private freeUpTo(watermark: number, out: (JoinedPair<T> | JoinedGroup<T>)[]): void {
    const { lowerMs, upperMs } = this.config;
    for (const side of [LEFT, RIGHT]) {
      const heap = this.heaps[side]!;
      // A left item expires at ts + upperMs, a right one at ts - lowerMs: within a side, time order is expiry order.
      const shift = side === LEFT ? upperMs : -lowerMs;
      while (this.heapSizes[side]! > 0 && this.times[heap[0]!]! + shift < watermark) {
        const slot = this.heapPop(side);
        if (this.grouped && side === LEFT) {
          this.emit(out, { key: this.bucketKeys[this.bucketOf[slot]!]!, left: this.items[slot]!, matches: this.matches[slot] ?? NO_MATCHES });
        } else if (this.matchedFlags[slot] === 0) {
          this.stats.unmatched++;
          this.config.sideOutput.push({ reason: 'unmatched', side: side === LEFT ? 'left' : 'right', item: this.items[slot]! });
        }
        this.release(slot);
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

  private addMatch(slot: number, item: T): void {
    const matches = this.matches[slot];
    if (matches) matches.push(item);
    else this.matches[slot] = [item];
  }

  /** Unlinks a slot (already off its heap) from its key's list, frees the key once it holds nothing, frees the slot. */
  private release(slot: number): void {
    const bucket = this.bucketOf[slot]!;
    const list = 2 * bucket + this.sides[slot]!;
    const previous = this.previousInBucket[slot]!;
    const next = this.nextInBucket[slot]!;
    if (previous === NONE) this.bucketHeads[list] = next;
    else this.nextInBucket[previous] = next;
    if (next === NONE) this.bucketTails[list] = previous;
    else this.previousInBucket[next] = previous;
    if (this.bucketHeads[2 * bucket + LEFT] === NONE && this.bucketHeads[2 * bucket + RIGHT] === NONE) {
      this.buckets.delete(this.bucketKeys[bucket]!);
      this.bucketKeys[bucket] = undefined;
      this.freeBuckets.push(bucket);
    }
    this.items[slot] = undefined;
    this.matches[slot] = undefined;
    this.freeSlots.push(slot);
  }

  private before(a: number, b: number): boolean {
    const times = this.times;
    return times[a]! < times[b]! || (times[a] === times[b] && this.seqs[a]! < this.seqs[b]!);
  }

  private heapPush(side: number, slot: number): void {
    const heap = this.heaps[side]!;
    let i = this.heapSizes[side]!++;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const p = heap[parent]!;
      if (!this.before(slot, p)) break;
      heap[i] = p;
      i = parent;
    }
    heap[i] = slot;
  }

  /** Takes the top slot off a non-empty heap. */
  private heapPop(side: number): number {
    const heap = this.heaps[side]!;
    const top = heap[0]!;
    const n = --this.heapSizes[side]!;
    if (n === 0) return top;
    const last = heap[n]!;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const child = r < n && this.before(heap[r]!, heap[l]!) ? r : l;
      const c = heap[child]!;
      if (!this.before(c, last)) break;
      heap[i] = c;
      i = child;
    }
    heap[i] = last;
    return top;
  }
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
