import type { SparseFeatures } from './learner.js';

/**
 * Feature hashing: a feature `name=value` goes to bucket `murmur3_32(utf8("name=value"), seed) mod 2^bits`, so
 * learners keep fixed-size arrays whatever the vocabulary, and the serving side hashes the same way with no
 * dictionary to ship. Numeric features hash their name alone and carry the number as the value.
 */

const C1 = 0xcc9e2d51;
const C2 = 0x1b873593;

let scratch = new Uint8Array(256);

/**
 * Writes `text` as UTF-8 into the shared scratch buffer at `offset` and returns the end offset. It leaves room for
 * at least one more byte after the text.
 */
function utf8(text: string, offset = 0): number {
  if (scratch.length <= offset + text.length * 3) {
    const grown = new Uint8Array(Math.max(scratch.length * 2, offset + text.length * 3 + 1));
    grown.set(scratch.subarray(0, offset));
    scratch = grown;
  }
  const out = scratch;
  let n = offset;
  for (let i = 0; i < text.length; i++) {
    let c = text.charCodeAt(i);
    if (c < 0x80) out[n++] = c;
    else if (c < 0x800) {
      out[n++] = 0xc0 | (c >> 6);
      out[n++] = 0x80 | (c & 63);
    } else if (c >= 0xd800 && c < 0xdc00 && i + 1 < text.length && text.charCodeAt(i + 1) >= 0xdc00 && text.charCodeAt(i + 1) < 0xe000) {
      c = 0x10000 + ((c - 0xd800) << 10) + (text.charCodeAt(++i) - 0xdc00);
      out[n++] = 0xf0 | (c >> 18);
      out[n++] = 0x80 | ((c >> 12) & 63);
      out[n++] = 0x80 | ((c >> 6) & 63);
      out[n++] = 0x80 | (c & 63);
    } else if (c >= 0xd800 && c < 0xe000) {
      // A lone surrogate encodes as U+FFFD, as TextEncoder does.
      out[n++] = 0xef;
      out[n++] = 0xbf;
      out[n++] = 0xbd;
    } else {
      out[n++] = 0xe0 | (c >> 12);
      out[n++] = 0x80 | ((c >> 6) & 63);
      out[n++] = 0x80 | (c & 63);
    }
  }
  return n;
}

const EQUALS = 0x3d;

/** MurmurHash3 x86 32-bit of the first `length` bytes, as an unsigned integer. */
export function murmur3(bytes: Uint8Array, length = bytes.length, seed = 0): number {
  let h = seed >>> 0;
  const blocks = length & ~3;
  for (let i = 0; i < blocks; i += 4) {
    let k = bytes[i]! | (bytes[i + 1]! << 8) | (bytes[i + 2]! << 16) | (bytes[i + 3]! << 24);
    k = Math.imul(k, C1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, C2);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  let k = 0;
  switch (length & 3) {
    case 3:
      k ^= bytes[blocks + 2]! << 16;
    case 2:
      k ^= bytes[blocks + 1]! << 8;
    case 1:
      k ^= bytes[blocks]!;
      k = Math.imul(k, C1);
      k = (k << 15) | (k >>> 17);
      k = Math.imul(k, C2);
      h ^= k;
  }
  h ^= length;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** MurmurHash3 x86 32-bit of the UTF-8 bytes of `text`. */
export function hashString(text: string, seed = 0): number {
  // utf8() may replace the scratch buffer, so it must run before the buffer is read.
  const length = utf8(text);
  return murmur3(scratch, length, seed);
}

/** MurmurHash3 x86 32-bit of the UTF-8 bytes of `${name}=${value}`, without building that string. */
export function hashPair(name: string, value: string, seed = 0): number {
  let length = utf8(name);
  scratch[length++] = EQUALS;
  length = utf8(value, length);
  return murmur3(scratch, length, seed);
}

/** The bucket of one feature in a space of 2^bits buckets. */
export function hashFeature(name: string, value: string | number | boolean, bits: number, seed = 0): number {
  return (hashPair(name, String(value), seed) & bucketMask(bits)) >>> 0;
}

export function bucketMask(bits: number): number {
  if (!Number.isInteger(bits) || bits < 1 || bits > 31) throw new RangeError(`bits must be an integer in 1..31, got ${bits}`);
  return bits === 31 ? 0x7fffffff : (1 << bits) - 1;
}

/** A feature value as `FieldMap` carries it (schema/events.ts). */
export type HashableValue = string | number | boolean | readonly string[] | readonly number[];

export interface FeatureHasherOptions {
  /** log2 of the bucket count. Default 20 (about a million buckets). */
  readonly bits?: number;
  /** Murmur seed; serving and training must agree on it. Default 0. */
  readonly seed?: number;
}

/**
 * Turns named features into hashed sparse features:
 * - string or boolean `v` under `name` -> bucket of `name=v`, value 1;
 * - number `x` under `name` -> bucket of `name`, value `x` (non-finite numbers are skipped);
 * - string list -> one bucket per element `name=element`, value 1;
 * - number list -> bucket of `name[i]` per position, value the element.
 * Collisions are kept as repeated indices; every learner adds repeated indices up.
 */
export class FeatureHasher {
  readonly bits: number;
  readonly seed: number;
  private readonly mask: number;

  constructor(options: FeatureHasherOptions = {}) {
    this.bits = options.bits ?? 20;
    this.seed = options.seed ?? 0;
    this.mask = bucketMask(this.bits);
  }

  bucket(key: string): number {
    return (hashString(key, this.seed) & this.mask) >>> 0;
  }

  /** Buckets and values of `fields` in new arrays of exactly the right length. */
  hash(fields: Readonly<Record<string, HashableValue>>): SparseFeatures & { indices: Uint32Array; values: Float32Array } {
    const size = FeatureHasher.sizeOf(fields);
    const indices = new Uint32Array(size);
    const values = new Float32Array(size);
    const count = this.hashInto(fields, indices, values);
    return count === size ? { indices, values } : { indices: indices.slice(0, count), values: values.slice(0, count) };
  }

  /** The most entries `fields` can hash to: one per scalar, one per list element. */
  static sizeOf(fields: Readonly<Record<string, HashableValue>>): number {
    let size = 0;
    for (const name in fields) {
      const value = fields[name]!;
      size += typeof value === 'object' ? value.length : 1;
    }
    return size;
  }

  /**
   * Writes buckets and values into caller-owned arrays (at least `sizeOf(fields)` long) and returns how many it
   * wrote: for hot paths that reuse buffers instead of allocating two arrays per sample.
   */
  hashInto(fields: Readonly<Record<string, HashableValue>>, indices: Uint32Array, values: Float32Array): number {
    const { mask, seed } = this;
    const capacity = Math.min(indices.length, values.length);
    let k = 0;
    for (const name in fields) {
      const value = fields[name]!;
      if (k + (typeof value === 'object' ? value.length : 1) > capacity) {
        throw new RangeError(`hashInto needs arrays of at least ${FeatureHasher.sizeOf(fields)} entries`);
      }
      if (typeof value === 'number') {
        if (!Number.isFinite(value)) continue;
        indices[k] = (hashString(name, seed) & mask) >>> 0;
        values[k++] = value;
      } else if (typeof value === 'string') {
        indices[k] = (hashPair(name, value, seed) & mask) >>> 0;
        values[k++] = 1;
      } else if (typeof value === 'boolean') {
        indices[k] = (hashPair(name, value ? 'true' : 'false', seed) & mask) >>> 0;
        values[k++] = 1;
      } else {
        for (let i = 0; i < value.length; i++) {
          const element = value[i]!;
          if (typeof element === 'number') {
            if (!Number.isFinite(element)) continue;
            indices[k] = (hashString(`${name}[${i}]`, seed) & mask) >>> 0;
            values[k++] = element;
          } else {
            indices[k] = (hashPair(name, element, seed) & mask) >>> 0;
            values[k++] = 1;
          }
        }
      }
    }
    return k;
  }
}
