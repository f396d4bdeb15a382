import {
  emptyStats,
  finiteOrNull,
  requireNonNegative,
  requirePositive,
  windowOperator,
  type Aggregate,
  type WindowEngine,
  type WindowKey,
  type WindowOperator,
  type WindowOptions,
  type WindowResult,
  type WindowStats,
} from './windows.js';

/**
 * Tumbling and sliding windows: windows of a fixed size whose starts lie on a grid (every `slideMs`, shifted by
 * `offsetMs`), the same for every key.
 */

export interface AlignedWindowBounds {
  /**
   * Most accumulators (key x window) held at once. When an item would exceed it, the oldest window fires early with
   * what it has and is dropped (counted in `stats.evicted`); items that arrive for it, or for any older window,
   * afterwards go to the late sink. Default 1,000,000.
   */
  readonly maxEntries?: number;
  /** Window starts are `offsetMs + n * slide`. Default 0. */
  readonly offsetMs?: number;
}

export interface TumblingWindowOptions<T, K extends WindowKey, A, R> extends WindowOptions<T, K, A, R>, AlignedWindowBounds {
  readonly sizeMs: number;
}

export interface SlidingWindowOptions<T, K extends WindowKey, A, R> extends WindowOptions<T, K, A, R>, AlignedWindowBounds {
  readonly sizeMs: number;
  /** How far apart window starts are; each item belongs to about `sizeMs / slideMs` windows. */
  readonly slideMs: number;
}

export interface AlignedWindowsSnapshot<K extends WindowKey> {
  readonly kind: 'aligned';
  readonly sizeMs: number;
  readonly slideMs: number;
  readonly offsetMs: number;
  readonly watermark: number | null;
  readonly closedThrough: number | null;
  readonly stats: WindowStats;
  /** Open windows in start order: `entries` are `[key, accumulator]`. */
  readonly windows: readonly { readonly start: number; readonly fired: boolean; readonly entries: readonly (readonly [K, unknown])[] }[];
}

export type AlignedWindowOperator<T, K extends WindowKey, R> = WindowOperator<T, K, R, AlignedWindowsSnapshot<K>>;

/**
 * Keyed tumbling windows of `sizeMs`, driven by the batches' watermarks (see `eventTime`). Emits a
 * `WindowResult` per key for each window in the batch whose watermark reaches the window's end, windows in start
 * order. The returned operator is also the state's handle: `stats`, `watermark`, `snapshot()`, `restore()`.
 */
export function tumblingWindow<T, K extends WindowKey, A, R = A>(
  options: TumblingWindowOptions<T, K, A, R>,
): AlignedWindowOperator<T, K, R> {
  return alignedWindow(options, options.sizeMs, options.sizeMs, 'tumbling-window');
}

/** Keyed sliding windows of `sizeMs` starting every `slideMs`; otherwise as `tumblingWindow`. */
export function slidingWindow<T, K extends WindowKey, A, R = A>(
  options: SlidingWindowOptions<T, K, A, R>,
): AlignedWindowOperator<T, K, R> {
  return alignedWindow(options, options.sizeMs, options.slideMs, 'sliding-window');
}

function alignedWindow<T, K extends WindowKey, A, R>(
  options: WindowOptions<T, K, A, R> & AlignedWindowBounds,
  sizeMs: number,
  slideMs: number,
  kind: string,
): AlignedWindowOperator<T, K, R> {
  const engine = new AlignedWindows(options, sizeMs, slideMs);
  const params = {
    sizeMs,
    ...(slideMs !== sizeMs ? { slideMs } : {}),
    allowedLatenessMs: engine.allowedLatenessMs,
    maxEntries: engine.maxEntries,
  };
  return windowOperator({ name: options.name ?? kind, kind, params, sideOutputs: ['late'] }, engine, options.flushOnComplete ?? true);
}

interface Slot<K, A> {
  readonly start: number;
  readonly end: number;
  readonly accs: Map<K, A>;
  fired: boolean;
  /** Keys changed since the window fired, each with whether a result was emitted for it before. */
  readonly changed: Map<K, boolean>;
}

/**
 * The state: per window start a Map of key to accumulator, and the windows in start order, which for windows of one
 * size is also end order, so firing and freeing walk from the front. The per-item path is one window lookup (skipped
 * when the item falls in the same window as the previous one) and one Map get and set.
 */
class AlignedWindows<T, K extends WindowKey, A, R> implements WindowEngine<T, K, R, AlignedWindowsSnapshot<K>> {
  readonly allowedLatenessMs: number;
  readonly maxEntries: number;
  stats: WindowStats = emptyStats();
  watermark = -Infinity;
  /** End of the newest window dropped by the state bound: items for windows ending at or before it are late. */
  private closedThrough = -Infinity;
  private entries = 0;
  private slots = new Map<number, Slot<K, A>>();
  private ordered: Slot<K, A>[] = [];
  private readonly offsetMs: number;
  private readonly keyOf: (item: T) => K;
  private readonly timestampOf: (item: T) => number;
  private readonly aggregate: Aggregate<T, A, R>;
  private readonly late: WindowOptions<T, K, A, R>['late'];

  constructor(
    options: WindowOptions<T, K, A, R> & AlignedWindowBounds,
    private readonly sizeMs: number,
    private readonly slideMs: number,
  ) {
    requirePositive('sizeMs', sizeMs);
    requirePositive('slideMs', slideMs);
    if (slideMs > sizeMs) throw new RangeError(`slideMs (${slideMs}) must not exceed sizeMs (${sizeMs})`);
    this.allowedLatenessMs = options.allowedLatenessMs ?? 0;
    requireNonNegative('allowedLatenessMs', this.allowedLatenessMs);
    this.maxEntries = options.maxEntries ?? 1_000_000;
    if (!Number.isInteger(this.maxEntries) || this.maxEntries < 1) throw new RangeError(`maxEntries must be a positive integer, got ${this.maxEntries}`);
    this.offsetMs = options.offsetMs ?? 0;
    this.keyOf = options.key;
    this.timestampOf = options.timestamp;
    this.aggregate = options.aggregate;
    this.late = options.late;
  }

  process(items: readonly T[], batchWatermark: number): WindowResult<K, R>[] {
    const out: WindowResult<K, R>[] = [];
    if (this.slideMs === this.sizeMs) this.addTumbling(items, out);
    else this.addSliding(items, out);
    if (batchWatermark > this.watermark) this.watermark = batchWatermark;
    this.fireDue(out);
    this.freeExpired();
    return out;
  }

  private addTumbling(items: readonly T[], out: WindowResult<K, R>[]): void {
    const { sizeMs, offsetMs, keyOf, timestampOf, aggregate, maxEntries } = this;
    let horizon = this.acceptHorizon();
    let entries = this.entries;
    let accepted = 0;
    let cachedStart = NaN;
    let slot: Slot<K, A> | undefined;
    for (let i = 0; i < items.length; i++) {
      const item = items[i]!;
      const ts = timestampOf(item);
      const rem = (ts - offsetMs) % sizeMs;
      const start = ts - (rem < 0 ? rem + sizeMs : rem);
      if (start !== cachedStart) {
        if (!Number.isFinite(start)) {
          this.reject(item, true);
          continue;
        }
        cachedStart = start;
        slot = start + sizeMs > horizon ? this.slotAt(start) : undefined;
      }
      if (slot === undefined) {
        this.reject(item, false);
        continue;
      }
      const key = keyOf(item);
      const accs = slot.accs;
      const previous = accs.get(key);
      accs.set(key, aggregate.add(previous === undefined ? aggregate.create() : previous, item));
      accepted++;
      if (slot.fired && !slot.changed.has(key)) slot.changed.set(key, previous !== undefined);
      if (previous === undefined && ++entries > maxEntries) {
        this.entries = entries;
        this.evictOldest(out);
        entries = this.entries;
        horizon = this.acceptHorizon();
        cachedStart = NaN;
      }
    }
    this.entries = entries;
    this.stats.accepted += accepted;
    this.stats.received += items.length;
  }

  private addSliding(items: readonly T[], out: WindowResult<K, R>[]): void {
    const { sizeMs, slideMs, offsetMs, keyOf, timestampOf, aggregate, stats } = this;
    let horizon = this.acceptHorizon();
    for (let i = 0; i < items.length; i++) {
      const item = items[i]!;
      const ts = timestampOf(item);
      if (!Number.isFinite(ts)) {
        this.reject(item, true);
        continue;
      }
      const rem = (ts - offsetMs) % slideMs;
      let key: K | undefined;
      let accepted = false;
      for (let start = ts - (rem < 0 ? rem + slideMs : rem); start > ts - sizeMs && start + sizeMs > horizon; start -= slideMs) {
        const slot = this.slotAt(start);
        if (key === undefined) key = keyOf(item);
        const previous = slot.accs.get(key);
        if (previous === undefined) {
          slot.accs.set(key, aggregate.add(aggregate.create(), item));
          this.entries++;
        } else slot.accs.set(key, aggregate.add(previous, item));
        if (slot.fired && !slot.changed.has(key)) slot.changed.set(key, previous !== undefined);
        accepted = true;
        if (this.entries > this.maxEntries) {
          this.evictOldest(out);
          horizon = this.acceptHorizon();
        }
      }
      if (accepted) stats.accepted++;
      else this.reject(item, false);
    }
    stats.received += items.length;
  }

  /** Windows ending at or before this take no more items. */
  private acceptHorizon(): number {
    return Math.max(this.watermark - this.allowedLatenessMs, this.closedThrough);
  }

  private reject(item: T, invalidTimestamp: boolean): void {
    if (invalidTimestamp) this.stats.invalidTimestamps++;
    this.stats.late++;
    this.late.push(item);
  }

  private slotAt(start: number): Slot<K, A> {
    let slot = this.slots.get(start);
    if (slot === undefined) {
      slot = { start, end: start + this.sizeMs, accs: new Map(), fired: false, changed: new Map() };
      this.slots.set(start, slot);
      const ordered = this.ordered;
      let at = ordered.length;
      while (at > 0 && ordered[at - 1]!.start > start) at--;
      ordered.splice(at, 0, slot);
    }
    return slot;
  }

  private fireDue(out: WindowResult<K, R>[]): void {
    for (const slot of this.ordered) {
      if (slot.end > this.watermark) break;
      this.fire(slot, out);
    }
  }

  /** Emits every key of a window not yet fired, or the keys changed since it fired. */
  private fire(slot: Slot<K, A>, out: WindowResult<K, R>[]): void {
    const { start, end } = slot;
    const result = this.aggregate.result;
    if (!slot.fired) {
      for (const [key, acc] of slot.accs) {
        out.push({ key, start, end, value: result ? result(acc) : (acc as unknown as R), update: false });
      }
      this.stats.fired += slot.accs.size;
      slot.fired = true;
      return;
    }
    if (slot.changed.size === 0) return;
    for (const [key, emittedBefore] of slot.changed) {
      const acc = slot.accs.get(key)!;
      out.push({ key, start, end, value: result ? result(acc) : (acc as unknown as R), update: emittedBefore });
      if (emittedBefore) this.stats.updates++;
      else this.stats.fired++;
    }
    slot.changed.clear();
  }

  private freeExpired(): void {
    const limit = this.watermark - this.allowedLatenessMs;
    let expired = 0;
    while (expired < this.ordered.length && this.ordered[expired]!.end <= limit) this.drop(this.ordered[expired++]!);
    if (expired > 0) this.ordered.splice(0, expired);
  }

  private drop(slot: Slot<K, A>): void {
    this.slots.delete(slot.start);
    this.entries -= slot.accs.size;
  }

  private evictOldest(out: WindowResult<K, R>[]): void {
    const oldest = this.ordered.shift()!;
    this.fire(oldest, out);
    this.drop(oldest);
    if (oldest.end > this.closedThrough) this.closedThrough = oldest.end;
    this.stats.evicted++;
  }

  flush(): WindowResult<K, R>[] {
    const out: WindowResult<K, R>[] = [];
    for (const slot of this.ordered) this.fire(slot, out);
    this.slots.clear();
    this.ordered = [];
    this.entries = 0;
    this.watermark = Infinity;
    return out;
  }

  snapshot(): AlignedWindowsSnapshot<K> {
    return structuredClone({
      kind: 'aligned',
      sizeMs: this.sizeMs,
      slideMs: this.slideMs,
      offsetMs: this.offsetMs,
      watermark: finiteOrNull(this.watermark),
      closedThrough: finiteOrNull(this.closedThrough),
      stats: this.stats,
      windows: this.ordered.map((slot) => ({ start: slot.start, fired: slot.fired, entries: [...slot.accs] })),
    });
  }

  restore(snapshot: AlignedWindowsSnapshot<K>): void {
    if (snapshot.kind !== 'aligned' || snapshot.sizeMs !== this.sizeMs || snapshot.slideMs !== this.slideMs || snapshot.offsetMs !== this.offsetMs) {
      throw new Error(
        `snapshot of ${snapshot.kind} windows (size ${snapshot.sizeMs}, slide ${snapshot.slideMs}, offset ${snapshot.offsetMs}) ` +
          `does not fit windows of size ${this.sizeMs}, slide ${this.slideMs}, offset ${this.offsetMs}`,
      );
    }
    const copy = structuredClone(snapshot);
    this.watermark = restoreWatermark(copy.watermark);
    this.closedThrough = restoreWatermark(copy.closedThrough);
    this.stats = { ...copy.stats };
    this.slots = new Map();
    this.ordered = [];
    this.entries = 0;
    for (const window of copy.windows) {
      const slot = this.slotAt(window.start);
      slot.fired = window.fired;
      for (const [key, acc] of window.entries) slot.accs.set(key, acc as A);
      this.entries += slot.accs.size;
    }
  }
}

function restoreWatermark(value: number | null): number {
  return value === null ? -Infinity : value;
}
