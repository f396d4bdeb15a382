import { hashString } from '../hashing.js';

/**
 * What an experiment keeps per exposed user: a small state (0..255, and 0 is never stored) under a 64-bit
 * fingerprint of the user id, in open-addressed typed arrays split 64 ways.
 *
 * A Map keyed by user id keeps every id string alive as a heap object the collector marks, and rebuilds its whole
 * table on the inserting thread as it grows: at millions of exposed users that is a gigabyte of heap and stalls of a
 * good part of a second on the serving thread. Here a user costs about 18 bytes and no object, and a growth rebuilds
 * one shard. Two ids share a fingerprint with probability about n^2 / 2^65 (3e-6 at ten million users).
 */
const SHARD_BITS = 6;
const SHARDS = 1 << SHARD_BITS;
const INITIAL_SLOTS = 16;
/** Seeds of the two 32-bit halves of a fingerprint. */
const HIGH_SEED = 0x5bd1e995;
const LOW_SEED = 0x27d4eb2f;

class Shard {
  high = new Uint32Array(INITIAL_SLOTS);
  low = new Uint32Array(INITIAL_SLOTS);
  /** 0: empty slot. */
  state = new Uint8Array(INITIAL_SLOTS);
  size = 0;

  /** The slot holding the fingerprint, or the empty slot where it would go. */
  slotOf(high: number, low: number): number {
    const mask = this.state.length - 1;
    for (let at = high & mask; ; at = (at + 1) & mask) {
      if (this.state[at] === 0 || (this.high[at] === high && this.low[at] === low)) return at;
    }
  }

  grow(): void {
    const { high, low, state } = this;
    const slots = state.length * 2;
    this.high = new Uint32Array(slots);
    this.low = new Uint32Array(slots);
    this.state = new Uint8Array(slots);
    for (let from = 0; from < state.length; from++) {
      if (state[from] === 0) continue;
      const to = this.slotOf(high[from]!, low[from]!);
      this.high[to] = high[from]!;
      this.low[to] = low[from]!;
      this.state[to] = state[from]!;
    }
  }
}

export class ExposureTable {
  private readonly shards: Shard[] = Array.from({ length: SHARDS }, () => new Shard());
  private count = 0;
  /** The fingerprint of the last user looked up: a first exposure reads the user's state, then sets it. */
  private fingerprinted: string | undefined;
  private high = 0;
  private low = 0;

  get size(): number {
    return this.count;
  }

  /** The user's state, or 0 when the user has none. */
  get(userId: string): number {
    const shard = this.shardOf(userId);
    return shard.state[shard.slotOf(this.high, this.low)]!;
  }

  /** Sets the user's state, 1..255. */
  set(userId: string, state: number): void {
    if (!Number.isInteger(state) || state < 1 || state > 255) throw new RangeError(`an exposure state is 1..255, got ${state}`);
    const shard = this.shardOf(userId);
    const { high, low } = this;
    let at = shard.slotOf(high, low);
    if (shard.state[at] === 0) {
      // At most 3/4 full, so probes stay short and an empty slot always ends them.
      if (4 * (shard.size + 1) > 3 * shard.state.length) {
        shard.grow();
        at = shard.slotOf(high, low);
      }
      shard.high[at] = high;
      shard.low[at] = low;
      shard.size++;
      this.count++;
    }
    shard.state[at] = state;
  }

  /** The user's shard, with the user's fingerprint in `high` and `low`. */
  private shardOf(userId: string): Shard {
    if (userId !== this.fingerprinted) {
      this.high = hashString(userId, HIGH_SEED);
      this.low = hashString(userId, LOW_SEED);
      this.fingerprinted = userId;
    }
    return this.shards[this.low & (SHARDS - 1)]!;
  }
}
