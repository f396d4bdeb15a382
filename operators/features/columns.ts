/**
 * Row storage: every slot is one fixed-size row of fields in a single ArrayBuffer, read through typed views of each
 * element type. An update touches the one or two cache lines of its row instead of one line per column, and the
 * codec turns a row into a binary record (the cache's wire and snapshot format) in one pass over its words.
 */
export type ElementType = 'f64' | 'f32' | 'u32' | 'i32' | 'u16' | 'u8';

const ELEMENT_BYTES: Readonly<Record<ElementType, number>> = { f64: 8, f32: 4, u32: 4, i32: 4, u16: 2, u8: 1 };

export interface FieldSpec {
  readonly type: ElementType;
  readonly width: number;
  /** Value of a fresh slot. Default 0. */
  readonly initial?: number;
  /** Byte alignment of the field within its row, e.g. 64 to start a list on a cache line. Default its element size. */
  readonly align?: number;
}

export class RowSet<Name extends string> {
  f64!: Float64Array;
  f32!: Float32Array;
  u32!: Uint32Array;
  i32!: Int32Array;
  u16!: Uint16Array;
  u8!: Uint8Array;
  capacity = 0;
  /** Bytes of one row, a multiple of 8 so every view indexes it exactly. */
  readonly stride: number;
  /** The row length in 8-, 4- and 2-byte elements: slot `s` starts at `s * stride8` in `f64`, and so on. */
  readonly stride8: number;
  readonly stride4: number;
  readonly stride2: number;
  /** Where each field starts within a row, in elements of its own type (add the row's base in those elements). */
  readonly at: Readonly<Record<Name, number>>;
  /** A fresh row: zeros and the fields' initial values. */
  private readonly template: Uint8Array;
  private readonly fresh: boolean;

  /** Fields lie in the order given (so fields used together share cache lines), each aligned to its element size. */
  constructor(
    private readonly specs: Readonly<Record<Name, FieldSpec>>,
    capacity: number,
  ) {
    const names = Object.keys(specs) as Name[];
    const at = {} as Record<Name, number>;
    let offset = 0;
    for (const name of names) {
      const size = ELEMENT_BYTES[specs[name].type];
      const align = specs[name].width > 0 ? Math.max(size, specs[name].align ?? size) : size;
      offset = Math.ceil(offset / align) * align;
      at[name] = offset / size;
      offset += size * specs[name].width;
    }
    this.at = at;
    const stride = Math.max(8, Math.ceil(offset / 8) * 8);
    // Rows that start on a cache line read in fewer lines; worth it when the padding adds at most 1/16 to a row.
    const lineAligned = Math.ceil(stride / 64) * 64;
    this.stride = stride >= 128 && lineAligned - stride <= stride / 16 ? lineAligned : stride;
    this.stride8 = this.stride / 8;
    this.stride4 = this.stride / 4;
    this.stride2 = this.stride / 2;
    this.template = new Uint8Array(this.stride);
    const row = new DataView(this.template.buffer);
    for (const name of names) {
      const { type, width, initial } = specs[name];
      if (initial === undefined || initial === 0) continue;
      for (let i = 0; i < width; i++) {
        const byte = (at[name] + i) * ELEMENT_BYTES[type];
        if (type === 'f64') row.setFloat64(byte, initial, true);
        else if (type === 'f32') row.setFloat32(byte, initial, true);
        else if (type === 'i32') row.setInt32(byte, initial, true);
        else if (type === 'u32') row.setUint32(byte, initial, true);
        else if (type === 'u16') row.setUint16(byte, initial, true);
        else row.setUint8(byte, initial);
      }
    }
    this.fresh = this.template.every((b) => b === 0);
    this.grow(capacity);
  }

  get bytes(): number {
    return this.capacity * this.stride;
  }

  grow(capacity: number): void {
    const buffer = new ArrayBuffer(capacity * this.stride);
    const u8 = new Uint8Array(buffer);
    if (this.u8) u8.set(this.u8);
    if (!this.fresh) for (let s = this.capacity; s < capacity; s++) u8.set(this.template, s * this.stride);
    this.f64 = new Float64Array(buffer);
    this.f32 = new Float32Array(buffer);
    this.u32 = new Uint32Array(buffer);
    this.i32 = new Int32Array(buffer);
    this.u16 = new Uint16Array(buffer);
    this.u8 = u8;
    this.capacity = capacity;
  }

  reset(slot: number): void {
    this.u8.set(this.template, slot * this.stride);
  }

  /** A fingerprint of the row layout, so a record written under another config is never misread. */
  layout(): string {
    return (Object.keys(this.specs) as Name[]).map((n) => `${n}:${this.specs[n].type}x${this.specs[n].width}@${this.at[n]}`).join(',');
  }
}
