import { map } from 'rxjs';
import { withItems } from './batch.js';
import { defineOperator, type Operator } from './operator.js';

/**
 * Why an item was held back:
 * - `duplicate`: an earlier item with its id was passed on and is still remembered;
 * - `beyond-horizon`: its timestamp is below watermark - horizonMs, where ids are no longer remembered, so whether it
 *   repeats an earlier item cannot be told (only with `beyondHorizon: 'divert'`);
 * - `invalid-timestamp`: its timestamp is not a finite number.
 */
export type DedupeReason = 'duplicate' | 'beyond-horizon' | 'invalid-timestamp';

export interface DedupeRecord<T> {
  readonly reason: DedupeReason;
  readonly id: string;
  readonly item: T;
}

export interface DedupeSink<T> {
  push(record: DedupeRecord<T>): void;
}

export interface DedupeOptions<T> {
  readonly name?: string;
  readonly id: (item: T) => string;
  /** Event time in ms. */
  readonly timestamp: (item: T) => number;
  /** An id is remembered while its item's timestamp is at or above watermark - horizonMs. */
  readonly horizonMs: number;
  /**
   * Most ids remembered; beyond it the id remembered longest is forgotten early (counted in `evictedIds`), so a later
   * repeat of it would pass. Default 1_000_000.
   */
  readonly maxIds?: number;
  /**
   * What to do with an item older than the horizon: `divert` it to the side output (default: no duplicate can get
   * through), or `emit` it (no event is held back, at the risk of passing a repeat).
   */
  readonly beyondHorizon?: 'divert' | 'emit';
  readonly sideOutput: DedupeSink<T>;
}

export interface DedupeStats {
  received: number;
  emitted: number;
  duplicates: number;
  beyondHorizon: number;
  invalid: number;
  /** Ids forgotten early because `maxIds` was reached. */
  evictedIds: number;
}

export interface DedupeSnapshot {
  /** null stands for -Infinity, which JSON cannot carry. */
  readonly watermark: number | null;
  /** `[id, timestamp]` of the remembered ids, oldest first. */
  readonly seen: readonly (readonly [string, number])[];
  readonly stats: DedupeStats;
}

/**
 * The ids seen within the horizon. An item arriving under watermark W (the watermark of the batches before its own)
 * is a duplicate when an item with its id was passed on with a timestamp >= W - horizonMs. Memory is reclaimed in
 * arrival order as the watermark advances; an id that arrived out of order may stay a little longer than its horizon,
 * but the timestamp check keeps the rule exact, and `maxIds` bounds the total.
 */
export class DedupeState<T> {
  readonly stats: DedupeStats = { received: 0, emitted: 0, duplicates: 0, beyondHorizon: 0, invalid: 0, evictedIds: 0 };
  private readonly seen = new Map<string, number>();
  private watermarkNow = -Infinity;
  private readonly maxIds: number;
  private readonly divertBeyondHorizon: boolean;

  constructor(private readonly options: DedupeOptions<T>) {
    if (!(options.horizonMs >= 0)) throw new RangeError(`horizonMs must be >= 0, got ${options.horizonMs}`);
    this.maxIds = options.maxIds ?? 1_000_000;
    if (!Number.isInteger(this.maxIds) || this.maxIds < 1) {
      throw new RangeError(`maxIds must be a positive integer, got ${this.maxIds}`);
    }
    this.divertBeyondHorizon = (options.beyondHorizon ?? 'divert') === 'divert';
  }

  get watermark(): number {
    return this.watermarkNow;
  }

  /** Ids held in memory, including forgotten ones not yet reclaimed. */
  get size(): number {
    return this.seen.size;
  }

  /** Passes on the batch's first occurrences, then advances to `watermark` and reclaims ids beyond the horizon. */
  process(items: readonly T[], watermark: number): T[] {
    const { id: idOf, timestamp, sideOutput } = this.options;
    const seen = this.seen;
    const stats = this.stats;
    const oldest = this.oldestRemembered(this.watermarkNow);
    const out: T[] = [];
    for (const item of items) {
      stats.received++;
      const id = idOf(item);
      const ts = timestamp(item);
      if (!Number.isFinite(ts)) {
        stats.invalid++;
        sideOutput.push({ reason: 'invalid-timestamp', id, item });
        continue;
      }
      if (ts < oldest) {
        if (this.divertBeyondHorizon) {
          stats.beyondHorizon++;
          sideOutput.push({ reason: 'beyond-horizon', id, item });
        } else {
          stats.emitted++;
          out.push(item);
        }
        continue;
      }
      const previous = seen.get(id);
      if (previous !== undefined) {
        if (previous >= oldest) {
          stats.duplicates++;
          sideOutput.push({ reason: 'duplicate', id, item });
          continue;
        }
        seen.delete(id);
      } else if (seen.size >= this.maxIds) {
        this.evictOldest();
      }
      seen.set(id, ts);
      stats.emitted++;
      out.push(item);
    }
    if (watermark > this.watermarkNow) {
      this.watermarkNow = watermark;
      this.reclaim(this.oldestRemembered(watermark));
    }
    return out;
  }

  snapshot(): DedupeSnapshot {
    return {
      watermark: this.watermarkNow === -Infinity ? null : this.watermarkNow,
      seen: [...this.seen],
      stats: { ...this.stats },
    };
  }

  restore(snapshot: DedupeSnapshot): void {
    this.seen.clear();
    this.watermarkNow = snapshot.watermark ?? -Infinity;
    Object.assign(this.stats, snapshot.stats);
    for (const [id, ts] of snapshot.seen) {
      if (this.seen.size >= this.maxIds) this.evictOldest();
      this.seen.set(id, ts);
    }
  }

  /** watermark - horizonMs, except that an infinite horizon remembers everything even at an infinite watermark. */
  private oldestRemembered(watermark: number): number {
    return this.options.horizonMs === Infinity ? -Infinity : watermark - this.options.horizonMs;
  }

  private evictOldest(): void {
    for (const id of this.seen.keys()) {
      this.seen.delete(id);
      this.stats.evictedIds++;
      return;
    }
  }

  private reclaim(oldest: number): void {
    for (const [id, ts] of this.seen) {
      if (ts >= oldest) return;
      this.seen.delete(id);
    }
  }
}

export type DedupeOperator<T> = Operator<T, T> & { readonly state: DedupeState<T> };

/**
 * Drops repeated event ids within an event-time horizon. Each repeat goes to `sideOutput` (side output `duplicates`)
 * with its reason and is counted, so passed on + diverted = received. The operator's `state` holds the remembered ids
 * for snapshot and restore; one operator instance serves one running graph.
 */
export function dedupe<T>(options: DedupeOptions<T>): DedupeOperator<T> {
  const state = new DedupeState(options);
  const operator = defineOperator<T, T>(
    {
      name: options.name ?? 'dedupe',
      kind: 'dedupe',
      params: {
        horizonMs: options.horizonMs,
        maxIds: options.maxIds ?? 1_000_000,
        beyondHorizon: options.beyondHorizon ?? 'divert',
      },
      sideOutputs: ['duplicates'],
    },
    (source$) => source$.pipe(map((batch) => withItems(batch, state.process(batch.items, batch.watermark)))),
  );
  return Object.assign(operator, { state });
}
