/**
 * A reusable hash map from 32-bit references to numbers, for the per-lookup tables of a feature lookup (the user's
 * items, their co-visited neighbours, the user's affinities), which every candidate probes. Open addressing over
 * typed arrays, emptied in O(1) by moving to a new generation: a lookup builds and probes these hundreds of times,
 * and a Map or Set costs several times as much per probe and allocates on every lookup.
 */
export class RefScores {
  private keys: Uint32Array;
  private values: Float64Array;
  /** The generation an entry was written in; an entry of an older one is empty. */
  private stamps: Uint32Array;
  private mask: number;
  /** 32 less the table's bits: the top bits of a Fibonacci hash pick the home slot. */
  private shift: number;
  private generation = 1;
  size = 0;

  constructor(capacity = 64) {
    const slots = RefScores.slotsFor(capacity);
    this.keys = new Uint32Array(slots);
    this.values = new Float64Array(slots);
    this.stamps = new Uint32Array(slots);
    this.mask = slots - 1;
    this.shift = 32 - Math.log2(slots);
  }

  /** Slots for `count` entries at a load of at most one half. */
  private static slotsFor(count: number): number {
    let slots = 16;
    while (slots < 2 * count) slots *= 2;
    return slots;
  }

  clear(): void {
    this.size = 0;
    if (this.generation === 0xffffffff) {
      this.stamps.fill(0);
      this.generation = 0;
    }
    this.generation++;
  }

  /** Adds `amount` to the value of `ref` (0 when absent). */
  add(ref: number, amount: number): void {
    if (2 * (this.size + 1) > this.keys.length) this.grow();
    const at = this.slotOf(ref);
    if (this.stamps[at] === this.generation) this.values[at]! += amount;
    else {
      this.stamps[at] = this.generation;
      this.keys[at] = ref;
      this.values[at] = amount;
      this.size++;
    }
  }

  /** The value of `ref`, 0 when absent. */
  get(ref: number): number {
    const at = this.slotOf(ref);
    return this.stamps[at] === this.generation ? this.values[at]! : 0;
  }

  has(ref: number): boolean {
    return this.stamps[this.slotOf(ref)] === this.generation;
  }

  /** The slot holding `ref`, or the empty slot where it would go. */
  private slotOf(ref: number): number {
    const keys = this.keys;
    const stamps = this.stamps;
    const mask = this.mask;
    for (let at = Math.imul(ref, 0x9e3779b1) >>> this.shift; ; at = (at + 1) & mask) {
      if (stamps[at] !== this.generation || keys[at] === ref >>> 0) return at;
    }
  }

  private grow(): void {
    const { keys, values, stamps, generation } = this;
    const slots = keys.length * 2;
    this.keys = new Uint32Array(slots);
    this.values = new Float64Array(slots);
    this.stamps = new Uint32Array(slots);
    this.mask = slots - 1;
    this.shift = 32 - Math.log2(slots);
    for (let at = 0; at < keys.length; at++) {
      if (stamps[at] !== generation) continue;
      const to = this.slotOf(keys[at]!);
      this.stamps[to] = generation;
      this.keys[to] = keys[at]!;
      this.values[to] = values[at]!;
    }
  }
}
