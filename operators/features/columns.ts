/**
 * Struct-of-arrays storage: one typed array per column, `width` elements per slot. Columns grow by doubling and can
 * copy one slot to or from a binary record, which is the cache's wire and snapshot format.
 */
export type TypedArray = Float64Array | Float32Array | Uint32Array | Int32Array | Uint16Array | Uint8Array;
type TypedArrayConstructor = { new (length: number): TypedArray; readonly BYTES_PER_ELEMENT: number };

export interface ColumnSpec {
  readonly type: TypedArrayConstructor;
  readonly width: number;
  /** Value of a fresh slot. Default 0. */
  readonly initial?: number;
  /** Part of the slot's binary record. Default true. */
  readonly persist?: boolean;
}

export class ColumnSet<Name extends string> {
  readonly cols: Record<Name, TypedArray>;
  /** Byte views of the persisted columns, in record order, for copying slots to and from records. */
  private byteViews: Uint8Array[] = [];
  private readonly byteWidths: number[];
  capacity = 0;
  /** Bytes of one slot across every column. */
  readonly slotBytes: number;
  /** Bytes of one slot's binary record. */
  readonly recordBytes: number;
  private readonly persisted: Name[];

  constructor(
    private readonly specs: Readonly<Record<Name, ColumnSpec>>,
    capacity: number,
  ) {
    const names = Object.keys(specs) as Name[];
    // Widest elements first, so every column starts aligned inside a record.
    this.persisted = names
      .filter((n) => specs[n].persist !== false && specs[n].width > 0)
      .sort((a, b) => specs[b].type.BYTES_PER_ELEMENT - specs[a].type.BYTES_PER_ELEMENT);
    this.slotBytes = names.reduce((sum, n) => sum + specs[n].width * specs[n].type.BYTES_PER_ELEMENT, 0);
    this.recordBytes = this.persisted.reduce((sum, n) => sum + specs[n].width * specs[n].type.BYTES_PER_ELEMENT, 0);
    this.byteWidths = this.persisted.map((n) => specs[n].width * specs[n].type.BYTES_PER_ELEMENT);
    this.cols = {} as Record<Name, TypedArray>;
    this.grow(capacity);
  }

  get bytes(): number {
    return this.capacity * this.slotBytes;
  }

  grow(capacity: number): void {
    for (const name of Object.keys(this.specs) as Name[]) {
      const spec = this.specs[name];
      const next = new spec.type(capacity * spec.width);
      const previous = this.cols[name];
      if (previous) next.set(previous);
      if (spec.initial !== undefined) next.fill(spec.initial, this.capacity * spec.width);
      this.cols[name] = next;
    }
    this.capacity = capacity;
    this.byteViews = this.persisted.map((n) => new Uint8Array(this.cols[n].buffer));
  }

  reset(slot: number): void {
    for (const name of Object.keys(this.specs) as Name[]) {
      const spec = this.specs[name];
      this.cols[name].fill(spec.initial ?? 0, slot * spec.width, (slot + 1) * spec.width);
    }
  }

  encode(slot: number, out: Uint8Array, offset: number): number {
    for (let c = 0; c < this.byteViews.length; c++) {
      const size = this.byteWidths[c]!;
      const view = this.byteViews[c]!;
      const start = slot * size;
      // Short runs copy faster by hand than through a subarray.
      if (size <= 16) for (let b = 0; b < size; b++) out[offset + b] = view[start + b]!;
      else out.set(view.subarray(start, start + size), offset);
      offset += size;
    }
    return offset;
  }

  decode(slot: number, bytes: Uint8Array, offset: number): number {
    for (let c = 0; c < this.byteViews.length; c++) {
      const size = this.byteWidths[c]!;
      this.byteViews[c]!.set(bytes.subarray(offset, offset + size), slot * size);
      offset += size;
    }
    return offset;
  }

  /** A fingerprint of the record layout, so a record written under another config is never misread. */
  layout(): string {
    return this.persisted.map((n) => `${n}:${this.specs[n].type.name}x${this.specs[n].width}`).join(',');
  }
}
