/**
 * Exponentially decayed counts with exact top-K lists that never need a full sort.
 *
 * A count is stored scaled to a fixed origin: an event of weight w at time t adds w * 2^((t - origin) / halfLife).
 * The count at time `now` is the stored value times 2^(-(now - origin) / halfLife), the same factor for every item,
 * so decay never changes the order of items. Stored values only grow, so an item can only enter a top list by being
 * incremented, which is when the lists are checked: every list stays exact under any event order. When the scale
 * factor gets large the origin moves forward and every stored value is multiplied down, which keeps the order.
 */

/** Past 2^EXPONENT_LIMIT the origin moves, far from float64's 2^1023. */
const EXPONENT_LIMIT = 512;

/** Items by descending stored count, at most `capacity` of them. */
export class TopList {
  readonly ids: string[] = [];
  readonly scores: number[] = [];
  /** itemId -> index in `ids`, kept up to date as items move, so a raise costs only the places it moves. */
  private readonly positions = new Map<string, number>();

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`capacity must be a positive integer, got ${capacity}`);
  }

  get size(): number {
    return this.ids.length;
  }

  has(itemId: string): boolean {
    return this.positions.has(itemId);
  }

  /** Records that `itemId`'s count rose to `score` (counts never fall, so the item can only move up). */
  raise(itemId: string, score: number): void {
    const { ids, scores, positions } = this;
    let index = positions.get(itemId);
    if (index === undefined) {
      if (ids.length < this.capacity) {
        ids.push(itemId);
        scores.push(score);
        index = ids.length - 1;
      } else {
        index = ids.length - 1;
        if (score <= scores[index]!) return;
        positions.delete(ids[index]!);
      }
    }
    while (index > 0 && scores[index - 1]! < score) {
      const moved = ids[index - 1]!;
      ids[index] = moved;
      scores[index] = scores[index - 1]!;
      positions.set(moved, index);
      index--;
    }
    ids[index] = itemId;
    scores[index] = score;
    positions.set(itemId, index);
  }

  scale(factor: number): void {
    for (let i = 0; i < this.scores.length; i++) this.scores[i]! *= factor;
  }
}

export class DecayedCounts {
  private readonly counts = new Map<string, number>();
  private readonly lists = new Set<TopList>();
  private origin: number | undefined;

  constructor(readonly halfLifeMs: number) {
    if (!(halfLifeMs > 0) || !Number.isFinite(halfLifeMs)) throw new RangeError(`halfLifeMs must be positive and finite, got ${halfLifeMs}`);
  }

  get size(): number {
    return this.counts.size;
  }

  /** A top list that this counter keeps scaled with its counts; the caller raises items into it. */
  createList(capacity: number): TopList {
    const list = new TopList(capacity);
    this.lists.add(list);
    return list;
  }

  /** Adds `weight` at event time `ts` and returns the item's new stored count. */
  add(itemId: string, weight: number, ts: number): number {
    if (this.origin === undefined) this.origin = ts;
    let exponent = (ts - this.origin) / this.halfLifeMs;
    if (exponent > EXPONENT_LIMIT) {
      this.rebase(ts);
      exponent = 0;
    }
    const stored = (this.counts.get(itemId) ?? 0) + weight * 2 ** exponent;
    this.counts.set(itemId, stored);
    return stored;
  }

  /** The stored count: comparable across items at any one time, not a count by itself. */
  stored(itemId: string): number {
    return this.counts.get(itemId) ?? 0;
  }

  /** Converts a stored count into the decayed count at `now`. */
  valueAt(stored: number, now: number): number {
    if (this.origin === undefined || stored === 0) return 0;
    return stored * 2 ** ((this.origin - now) / this.halfLifeMs);
  }

  /** The decayed count of `itemId` at `now`. */
  count(itemId: string, now: number): number {
    return this.valueAt(this.stored(itemId), now);
  }

  private rebase(ts: number): void {
    const factor = 2 ** ((this.origin! - ts) / this.halfLifeMs);
    for (const [itemId, stored] of this.counts) this.counts.set(itemId, stored * factor);
    for (const list of this.lists) list.scale(factor);
    this.origin = ts;
  }
}
