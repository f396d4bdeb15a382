/**
 * Item ids to small integers (a position, an index into the request's arrays) for one request at a time, kept
 * between requests. A Map made per request grows its table several times over as hundreds of ids arrive, and that
 * garbage was the largest share of what recall allocated. Here an id seen by an earlier request keeps its entry, and
 * `begin` makes every entry stale at once by moving the base its values count from.
 *
 * Not reentrant: one request's lookups must end before the next `begin`, which holds for the synchronous recall
 * calls that use it.
 */

/** Indexes of one request are below this. */
const SPAN = 1 << 16;
/** Values stay below 2^30, where V8 keeps them as small integers rather than allocating a number for each. */
const LIMIT = (1 << 30) - SPAN;

export class RequestIndex {
  private readonly entries = new Map<string, number>();
  private base = 0;

  /** @param maxEntries ids kept across requests; past it, `begin` starts over from an empty map. */
  constructor(private readonly maxEntries = SPAN) {}

  /** Starts a request: forgets every id set before. */
  begin(): void {
    this.base += SPAN;
    if (this.base >= LIMIT || this.entries.size > this.maxEntries) {
      this.entries.clear();
      this.base = 0;
    }
  }

  /** Ids held, this request's and earlier ones': what the index costs in memory. */
  get retained(): number {
    return this.entries.size;
  }

  get(id: string): number | undefined {
    const value = this.entries.get(id);
    return value !== undefined && value >= this.base ? value - this.base : undefined;
  }

  has(id: string): boolean {
    return this.get(id) !== undefined;
  }

  set(id: string, index: number): void {
    if (!(index >= 0 && index < SPAN)) throw new RangeError(`a request index holds 0 to ${SPAN - 1}, got ${index}`);
    this.entries.set(id, this.base + index);
  }
}
