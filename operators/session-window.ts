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

/** Sessions merge accumulators, so the aggregate must say how. */
export type SessionAggregate<T, A, R> = Aggregate<T, A, R> & { merge(a: A, b: A): A };

export interface SessionWindowOptions<T, K extends WindowKey, A, R> extends WindowOptions<T, K, A, R> {
  /**
   * A session is a key's run of items each less than `gapMs` after the one before; its window is
   * `[first item's time, last item's time + gapMs)`. An item whose window overlaps several sessions of its key
   * merges them.
   */
  readonly gapMs: number;
  readonly aggregate: SessionAggregate<T, A, R>;
  /**
   * Most sessions held at once. Beyond it the least recently updated session fires early with what it has and is
   * dropped (counted in `stats.evicted`); a later item for its key starts a new session. Default 1,000,000.
   */
  readonly maxSessions?: number;
}

export interface SessionWindowsSnapshot<K extends WindowKey> {
  readonly kind: 'session';
  readonly gapMs: number;
  readonly watermark: number | null;
  readonly stats: WindowStats;
  /** Least recently updated first, so a restore keeps the eviction order. */
  readonly sessions: readonly {
    readonly key: K;
    readonly start: number;
    readonly end: number;
    readonly acc: unknown;
    readonly emitted: boolean;
    readonly changed: boolean;
  }[];
}

export type SessionWindowOperator<T, K extends WindowKey, R> = WindowOperator<T, K, R, SessionWindowsSnapshot<K>>;

/**
 * Keyed session windows driven by the batches' watermarks. A session fires once the watermark reaches its end; it
 * fires again (`update: true`) if, within the allowed lateness, a late item extends it or merges it with another.
 *
 * Lateness is judged per item, not per window as for aligned windows: an item is late when
 * `timestamp + allowedLatenessMs < watermark`. Judging by the item's own window would let a late item reach into a
 * session already freed and start a second session where one merged session belongs; judged this way, every item
 * accepted lies after every freed session of its key, so the sessions emitted are exactly those of the accepted items.
 * The returned operator is also the state's handle: `stats`, `watermark`, `snapshot()`, `restore()`.
 */
export function sessionWindow<T, K extends WindowKey, A, R = A>(
  options: SessionWindowOptions<T, K, A, R>,
): SessionWindowOperator<T, K, R> {
  const engine = new SessionWindows(options);
  const params = { gapMs: options.gapMs, allowedLatenessMs: engine.allowedLatenessMs, maxSessions: engine.maxSessions };
  return windowOperator(
    { name: options.name ?? 'session-window', kind: 'session-window', params, sideOutputs: ['late'] },
    engine,
    options.flushOnComplete ?? true,
  );
}

interface Session<K, A> {
  readonly key: K;
  start: number;
  end: number;
  acc: A;
  /** A result was emitted for this session or one merged into it. */
  emitted: boolean;
  /** Changed since its last result. */
  changed: boolean;
  live: boolean;
}

/** A binary min-heap of sessions by a due time. Entries go stale when a session changes; readers check. */
class DueQueue<S> {
  private readonly due: number[] = [];
  private readonly items: S[] = [];

  get size(): number {
    return this.due.length;
  }

  peekDue(): number {
    return this.due.length > 0 ? this.due[0]! : Infinity;
  }

  push(due: number, item: S): void {
    const { due: dues, items } = this;
    let at = dues.length;
    dues.push(due);
    items.push(item);
    while (at > 0) {
      const parent = (at - 1) >> 1;
      if (dues[parent]! <= due) break;
      dues[at] = dues[parent]!;
      items[at] = items[parent]!;
      at = parent;
    }
    dues[at] = due;
    items[at] = item;
  }

  pop(): S {
    const { due: dues, items } = this;
    const top = items[0]!;
    const lastDue = dues.pop()!;
    const lastItem = items.pop()!;
    const n = dues.length;
    if (n > 0) {
      let at = 0;
      for (;;) {
        const left = 2 * at + 1;
        if (left >= n) break;
        const right = left + 1;
        const child = right < n && dues[right]! < dues[left]! ? right : left;
        if (dues[child]! >= lastDue) break;
        dues[at] = dues[child]!;
        items[at] = items[child]!;
        at = child;
      }
      dues[at] = lastDue;
      items[at] = lastItem;
    }
    return top;
  }

  clear(): void {
    this.due.length = 0;
    this.items.length = 0;
  }
}

/**
 * Per key, its sessions in start order (usually one). Two queues order the work: sessions with changes by end (to
 * fire), fired sessions by end + allowed lateness (to free). A Set in order of last update picks what the bound evicts.
 */
class SessionWindows<T, K extends WindowKey, A, R> implements WindowEngine<T, K, R, SessionWindowsSnapshot<K>> {
  readonly allowedLatenessMs: number;
  readonly maxSessions: number;
  stats: WindowStats = emptyStats();
  watermark = -Infinity;
  private readonly gapMs: number;
  private byKey = new Map<K, Session<K, A>[]>();
  private recency = new Set<Session<K, A>>();
  private readonly toFire = new DueQueue<Session<K, A>>();
  private readonly toFree = new DueQueue<Session<K, A>>();

  constructor(private readonly options: SessionWindowOptions<T, K, A, R>) {
    this.gapMs = options.gapMs;
    requirePositive('gapMs', this.gapMs);
    this.allowedLatenessMs = options.allowedLatenessMs ?? 0;
    requireNonNegative('allowedLatenessMs', this.allowedLatenessMs);
    this.maxSessions = options.maxSessions ?? 1_000_000;
    if (!Number.isInteger(this.maxSessions) || this.maxSessions < 1) throw new RangeError(`maxSessions must be a positive integer, got ${this.maxSessions}`);
  }

  process(items: readonly T[], batchWatermark: number): WindowResult<K, R>[] {
    const out: WindowResult<K, R>[] = [];
    const { timestamp, late } = this.options;
    const oldestAccepted = this.watermark - this.allowedLatenessMs;
    for (let i = 0; i < items.length; i++) {
      const item = items[i]!;
      const ts = timestamp(item);
      if (!Number.isFinite(ts) || ts < oldestAccepted) {
        if (!Number.isFinite(ts)) this.stats.invalidTimestamps++;
        this.stats.late++;
        late.push(item);
        continue;
      }
      this.add(item, ts, out);
      this.stats.accepted++;
    }
    this.stats.received += items.length;
    if (batchWatermark > this.watermark) this.watermark = batchWatermark;
    this.fireDue(out);
    this.freeExpired();
    return out;
  }

  private add(item: T, ts: number, out: WindowResult<K, R>[]): void {
    const { aggregate } = this.options;
    const key = this.options.key(item);
    const end = ts + this.gapMs;
    let sessions = this.byKey.get(key);
    if (sessions === undefined) {
      sessions = [];
      this.byKey.set(key, sessions);
    }
    let first = 0;
    while (first < sessions.length && sessions[first]!.end <= ts) first++;
    let last = first;
    while (last < sessions.length && sessions[last]!.start < end) last++;

    let session: Session<K, A>;
    if (first === last) {
      session = { key, start: ts, end, acc: aggregate.add(aggregate.create(), item), emitted: false, changed: true, live: true };
      sessions.splice(first, 0, session);
      this.toFire.push(end, session);
    } else {
      session = sessions[first]!;
      const endBefore = session.end;
      const wasChanged = session.changed;
      for (let j = first + 1; j < last; j++) {
        const other = sessions[j]!;
        session.acc = aggregate.merge(session.acc, other.acc);
        if (other.end > session.end) session.end = other.end;
        session.emitted ||= other.emitted;
        other.live = false;
        this.recency.delete(other);
      }
      if (last - first > 1) sessions.splice(first + 1, last - first - 1);
      session.acc = aggregate.add(session.acc, item);
      if (ts < session.start) session.start = ts;
      if (end > session.end) session.end = end;
      session.changed = true;
      if (!wasChanged || session.end !== endBefore) this.toFire.push(session.end, session);
    }
    this.recency.delete(session);
    this.recency.add(session);
    while (this.recency.size > this.maxSessions) this.evictLeastRecent(out);
  }

  private emit(session: Session<K, A>, out: WindowResult<K, R>[]): void {
    const result = this.options.aggregate.result;
    out.push({
      key: session.key,
      start: session.start,
      end: session.end,
      value: result ? result(session.acc) : (session.acc as unknown as R),
      update: session.emitted,
    });
    if (session.emitted) this.stats.updates++;
    else this.stats.fired++;
    session.emitted = true;
    session.changed = false;
  }

  private fireDue(out: WindowResult<K, R>[]): void {
    while (this.toFire.peekDue() <= this.watermark) {
      const due = this.toFire.peekDue();
      const session = this.toFire.pop();
      // A session that grew has a newer entry at its new end; firing only there keeps results in end order.
      if (!session.live || !session.changed || session.end !== due) continue;
      this.emit(session, out);
      this.toFree.push(session.end + this.allowedLatenessMs, session);
    }
  }

  private freeExpired(): void {
    const limit = this.watermark - this.allowedLatenessMs;
    while (this.toFree.peekDue() <= this.watermark) {
      const session = this.toFree.pop();
      if (session.live && !session.changed && session.end <= limit) this.remove(session);
    }
  }

  private remove(session: Session<K, A>): void {
    session.live = false;
    this.recency.delete(session);
    const sessions = this.byKey.get(session.key)!;
    if (sessions.length === 1) this.byKey.delete(session.key);
    else sessions.splice(sessions.indexOf(session), 1);
  }

  private evictLeastRecent(out: WindowResult<K, R>[]): void {
    const oldest = this.recency.values().next().value!;
    if (oldest.changed) this.emit(oldest, out);
    this.remove(oldest);
    this.stats.evicted++;
  }

  flush(): WindowResult<K, R>[] {
    const out: WindowResult<K, R>[] = [];
    const pending = [...this.recency].filter((s) => s.changed).sort((a, b) => a.end - b.end || a.start - b.start);
    for (const session of pending) this.emit(session, out);
    this.byKey.clear();
    this.recency.clear();
    this.toFire.clear();
    this.toFree.clear();
    this.watermark = Infinity;
    return out;
  }

  snapshot(): SessionWindowsSnapshot<K> {
    return structuredClone({
      kind: 'session',
      gapMs: this.gapMs,
      watermark: finiteOrNull(this.watermark),
      stats: this.stats,
      sessions: [...this.recency].map(({ key, start, end, acc, emitted, changed }) => ({ key, start, end, acc, emitted, changed })),
    });
  }

  restore(snapshot: SessionWindowsSnapshot<K>): void {
    if (snapshot.kind !== 'session' || snapshot.gapMs !== this.gapMs) {
      throw new Error(`snapshot of ${snapshot.kind} windows (gap ${snapshot.gapMs}) does not fit sessions with gap ${this.gapMs}`);
    }
    const copy = structuredClone(snapshot);
    this.watermark = copy.watermark ?? -Infinity;
    this.stats = { ...copy.stats };
    this.byKey = new Map();
    this.recency = new Set();
    this.toFire.clear();
    this.toFree.clear();
    for (const saved of copy.sessions) {
      const session: Session<K, A> = { ...saved, acc: saved.acc as A, live: true };
      let sessions = this.byKey.get(session.key);
      if (sessions === undefined) {
        sessions = [];
        this.byKey.set(session.key, sessions);
      }
      sessions.push(session);
      this.recency.add(session);
      if (session.changed) this.toFire.push(session.end, session);
      else this.toFree.push(session.end + this.allowedLatenessMs, session);
    }
    for (const sessions of this.byKey.values()) sessions.sort((a, b) => a.start - b.start);
  }
}
