/**
 * Ready-to-score feature rows: `count` rows of `names.length` features each, row after row in one Float32Array, so
 * a scorer can take `values` as a [count, width] tensor without copying.
 */
export class FeatureRows {
  readonly width: number;
  values: Float32Array;
  count: number;

  constructor(
    readonly names: readonly string[],
    count: number,
  ) {
    this.width = names.length;
    this.count = count;
    this.values = new Float32Array(count * this.width);
  }

  /** Reuses the buffer for `count` rows; it must be large enough. */
  reset(count: number): this {
    this.count = count;
    return this;
  }

  row(index: number): Float32Array {
    return this.values.subarray(index * this.width, (index + 1) * this.width);
  }

  /** One feature of one row, by name. */
  get(index: number, name: string): number {
    const column = this.names.indexOf(name);
    if (column < 0) throw new RangeError(`no feature named ${name}`);
    return this.values[index * this.width + column]!;
  }

  /** Rows as name -> value records, for logging and debugging. */
  toRecords(): Record<string, number>[] {
    return Array.from({ length: this.count }, (_, i) => Object.fromEntries(this.names.map((n, c) => [n, this.values[i * this.width + c]!])));
  }
}
