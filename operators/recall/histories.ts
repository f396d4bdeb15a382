import { LruMap } from '../lru-map.js';

/**
 * Each user's last few interactions, for sources that learn from sequences (co-visitation, embeddings). Memory is
 * bounded twice: at most `length` entries per user and at most `maxUsers` users, evicting the least recently active.
 */

export interface HistoryEntry {
  readonly itemId: string;
  readonly ts: number;
  readonly weight: number;
}

export interface UserHistoriesOptions {
  /** Entries kept per user. Default 20. */
  readonly length?: number;
  /** Users kept; the least recently active is evicted first. Default 100,000. */
  readonly maxUsers?: number;
}

export class UserHistories {
  readonly length: number;
  readonly maxUsers: number;
  private readonly users: LruMap<string, HistoryEntry[]>;

  constructor(options: UserHistoriesOptions = {}) {
    this.length = options.length ?? 20;
    this.maxUsers = options.maxUsers ?? 100_000;
    this.users = new LruMap(this.maxUsers);
  }

  get size(): number {
    return this.users.size;
  }

  /** The user's entries, oldest first. */
  get(userId: string): readonly HistoryEntry[] {
    return this.users.get(userId) ?? [];
  }

  /** Appends an entry and returns the entries that preceded it (oldest first), before any trimming. */
  push(userId: string, entry: HistoryEntry): readonly HistoryEntry[] {
    const entries = this.users.get(userId) ?? [];
    this.users.set(userId, entries);
    const previous = entries.slice();
    // Keep entries in event-time order even when events arrive slightly out of order.
    let index = entries.length;
    while (index > 0 && entries[index - 1]!.ts > entry.ts) index--;
    entries.splice(index, 0, entry);
    if (entries.length > this.length) entries.splice(0, entries.length - this.length);
    return previous;
  }
}
