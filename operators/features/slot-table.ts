/**
 * Open-addressing hash index from 53-bit keys to dense slots, with linear probing and backward-shift deletion, so a
 * slot can be evicted and reused without tombstones. It stores slot numbers only; the key of each slot lives in the
 * caller's `keys` column, which keeps the index at 4 bytes per entry of capacity.
 */
export class SlotIndex {
  private table: Int32Array;
  private mask: number;

  constructor(
    capacity: number,
    private keys: () => ArrayLike<number>,
  ) {
    this.table = new Int32Array(SlotIndex.sizeFor(capacity)).fill(-1);
    this.mask = this.table.length - 1;
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

  private home(key: number): number {
    // The low bits of a cyrb53 key are well mixed already.
    return (key % 4294967296 >>> 0) & this.mask;
  }

  find(key: number): number {
    const keys = this.keys();
    for (let i = this.home(key); ; i = (i + 1) & this.mask) {
      const slot = this.table[i]!;
      if (slot < 0) return -1;
      if (keys[slot] === key) return slot;
    }
  }

  /** Adds `slot`, whose key is already in the keys column. */
  insert(slot: number): void {
    const key = this.keys()[slot]!;
    let i = this.home(key);
    while (this.table[i]! >= 0) i = (i + 1) & this.mask;
    this.table[i] = slot;
  }

  remove(slot: number): void {
    const keys = this.keys();
    let i = this.home(keys[slot]!);
    while (this.table[i] !== slot) {
      if (this.table[i]! < 0) return;
      i = (i + 1) & this.mask;
    }
    // Backward-shift: pull later entries of the probe run into the hole when their home allows it.
    let hole = i;
    for (let j = (i + 1) & this.mask; this.table[j]! >= 0; j = (j + 1) & this.mask) {
      const home = this.home(keys[this.table[j]!]!);
      const distanceHome = (j - home) & this.mask;
      const distanceHole = (j - hole) & this.mask;
      if (distanceHome >= distanceHole) {
        this.table[hole] = this.table[j]!;
        hole = j;
      }
    }
    this.table[hole] = -1;
  }

  /** Rebuilds for a larger capacity from the slots 0..count-1. */
  resize(capacity: number, count: number): void {
    this.table = new Int32Array(SlotIndex.sizeFor(capacity)).fill(-1);
    this.mask = this.table.length - 1;
    for (let s = 0; s < count; s++) this.insert(s);
  }
}
