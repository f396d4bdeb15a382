/**
 * A string-keyed map split over many small maps by a hash of each key's tail. A Map rebuilds its whole table when it
 * grows, on the thread that inserts: measured here at 136 ms for 512k entries and 280 ms for a million, a stall of
 * the event loop. Split 64 ways, each rebuild moves a sixty-fourth of the entries. Keys that share their last 16
 * characters share a shard, so the worst case is the single map it replaces.
 */
const SHARDS = 64;
const HASHED_TAIL = 16;

export class ShardedMap<V> {
  private readonly shards: Map<string, V>[] = Array.from({ length: SHARDS }, () => new Map<string, V>());
  private count = 0;

  get size(): number {
    return this.count;
  }

  get(key: string): V | undefined {
    return this.shardOf(key).get(key);
  }

  set(key: string, value: V): void {
    const shard = this.shardOf(key);
    const before = shard.size;
    shard.set(key, value);
    this.count += shard.size - before;
  }

  delete(key: string): boolean {
    const deleted = this.shardOf(key).delete(key);
    if (deleted) this.count--;
    return deleted;
  }

  clear(): void {
    for (const shard of this.shards) shard.clear();
    this.count = 0;
  }

  /** Values shard by shard, each shard's in insertion order. */
  *values(): IterableIterator<V> {
    for (const shard of this.shards) yield* shard.values();
  }

  private shardOf(key: string): Map<string, V> {
    let hash = key.length;
    for (let i = Math.max(0, key.length - HASHED_TAIL); i < key.length; i++) hash = (Math.imul(hash, 31) + key.charCodeAt(i)) | 0;
    return this.shards[(hash ^ (hash >>> 16)) & (SHARDS - 1)]!;
  }
}
