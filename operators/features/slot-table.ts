/**
 * Open-addressing hash index from 53-bit keys to dense slots, with linear probing and backward-shift deletion, so a
 * slot can be evicted and reused without tombstones. Each entry holds the slot and the low 32 bits of its key (its
 * 32-bit reference), so a probe skips other keys without leaving the table, finds a slot by reference alone
 * (`findRef`), and confirms a whole key in the slot's row (`keys[slot * stride]`, bound with `bind`), which is the
 * row the caller reads next.
 */
export class SlotIndex {
  /** Pairs of int32: the slot (-1: empty) and the low 32 bits of its key. */
  private table: Int32Array;
  private mask: number;
  private keys: Float64Array = new Float64Array(0);
  private stride = 1;

  constructor(capacity: number) {
    this.table = new Int32Array(2 * SlotIndex.sizeFor(capacity)).fill(-1);
    this.mask = this.table.length / 2 - 1;
  }

  /** Where the keys are: `keys[slot * stride]`. Call again whenever the rows move. */
  bind(keys: Float64Array, stride: number): void {
    this.keys = keys;
    this.stride = stride;
  }

  /** Index size for `capacity` entries at a load of at most 0.75. */
  static sizeFor(capacity: number): number {
    let size = 16;
    while (size * 0.75 < capacity) size *= 2;
    return size;
  }

  get bytes(): number {
    return this.table.byteLength;
  }

  find(key: number): number {
    const table = this.table;
    const mask = this.mask;
    const keys = this.keys;
    const stride = this.stride;
    // The low bits of a cyrb53 key are well mixed already. `>>> 0` takes them exactly for keys below 2^53, and unlike
    // `% 2^32` it compiles to a truncation instead of a call to fmod.
    const tag = key >>> 0 | 0;
    for (let i = tag & mask; ; i = (i + 1) & mask) {
      const slot = table[2 * i]!;
      if (slot < 0) return -1;
      if (table[2 * i + 1] === tag && keys[slot * stride] === key) return slot;
    }
  }

  /**
   * `find` for `count` keys at once, into `slots`. Each pass over the keys has no dependence between iterations, so the
   * processor overlaps the cache misses of many keys: first every key's home entry, then every row's key.
   */
  findAll(keys: Float64Array, count: number, slots: Int32Array): void {
    const table = this.table;
    const mask = this.mask;
    for (let n = 0; n < count; n++) {
      const tag = keys[n]! >>> 0 | 0;
      const i = tag & mask;
      slots[n] = table[2 * i + 1] === tag ? table[2 * i]! : -2;
    }
    const rowKeys = this.keys;
    const stride = this.stride;
    for (let n = 0; n < count; n++) {
      const slot = slots[n]!;
      if (slot < 0 || rowKeys[slot * stride] !== keys[n]) slots[n] = this.find(keys[n]!);
    }
  }

  /** The first slot whose key's low 32 bits are `ref`, or -1. */
  findRef(ref: number): number {
    const table = this.table;
    const mask = this.mask;
    const tag = ref | 0;
    for (let i = tag & mask; ; i = (i + 1) & mask) {
      const slot = table[2 * i]!;
      if (slot < 0) return -1;
      if (table[2 * i + 1] === tag) return slot;
    }
  }

  /** Adds `slot`, whose key is already in its row. */
  insert(slot: number): void {
    const tag = this.keys[slot * this.stride]! >>> 0 | 0;
    let i = tag & this.mask;
    while (this.table[2 * i]! >= 0) i = (i + 1) & this.mask;
    this.table[2 * i] = slot;
    this.table[2 * i + 1] = tag;
  }

  /** Removes `slot`, whose key is still in its row. */
  remove(slot: number): void {
    const table = this.table;
    let i = (this.keys[slot * this.stride]! >>> 0 | 0) & this.mask;
    while (table[2 * i] !== slot) {
      if (table[2 * i]! < 0) return;
      i = (i + 1) & this.mask;
    }
    // Backward-shift: pull later entries of the probe run into the hole when their home allows it.
    let hole = i;
    for (let j = (i + 1) & this.mask; table[2 * j]! >= 0; j = (j + 1) & this.mask) {
      const home = table[2 * j + 1]! & this.mask;
      const distanceHome = (j - home) & this.mask;
      const distanceHole = (j - hole) & this.mask;
      if (distanceHome >= distanceHole) {
        table[2 * hole] = table[2 * j]!;
        table[2 * hole + 1] = table[2 * j + 1]!;
        hole = j;
      }
    }
    table[2 * hole] = -1;
  }

  /** Rebuilds for a larger capacity from the slots 0..count-1. */
  resize(capacity: number, count: number): void {
    this.table = new Int32Array(2 * SlotIndex.sizeFor(capacity)).fill(-1);
    this.mask = this.table.length / 2 - 1;
    for (let s = 0; s < count; s++) this.insert(s);
  }
}
