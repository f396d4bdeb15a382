import type { FeatureCache } from './cache.js';
import type { RowSet } from './columns.js';
import { hash53 } from './hash.js';

/**
 * Binary records of cached state, the format of Redis values and snapshots. A record starts with a fingerprint of
 * the row layout and config, so a record written under another config is refused instead of misread. Numbers are in
 * the machine's byte order (little-endian on every platform Node supports).
 *
 *   row:         a bitmap of the row's non-zero 32-bit words (bit w of byte w >> 3), then those words in order
 *   user record: fingerprint u32, the user's row
 *   item record: fingerprint u32, the item's row, the item id in UTF-8
 *
 * Leaving zero words out keeps records small: most of a row is window buckets never used, history and affinity
 * slots not yet filled, and co-visitation neighbours not yet seen. The `...Into` encoders write straight into a
 * caller's buffer, so a flush of many records allocates once.
 */

const decoder = new TextDecoder();

const fingerprints = new WeakMap<FeatureCache, number>();

export function layoutFingerprint(cache: FeatureCache): number {
  let fingerprint = fingerprints.get(cache);
  if (fingerprint === undefined) {
    fingerprint = hash53(`${cache.users.rows.layout()}|${cache.items.rows.layout()}|zero-words|${JSON.stringify(cache.config)}`) >>> 0;
    fingerprints.set(cache, fingerprint);
  }
  return fingerprint;
}

function writeUint32(out: Uint8Array, offset: number, value: number): void {
  out[offset] = value & 255;
  out[offset + 1] = (value >>> 8) & 255;
  out[offset + 2] = (value >>> 16) & 255;
  out[offset + 3] = value >>> 24;
}

function readUint32(bytes: Uint8Array, offset: number): number {
  return (bytes[offset]! | (bytes[offset + 1]! << 8) | (bytes[offset + 2]! << 16) | (bytes[offset + 3]! << 24)) >>> 0;
}

function headerMatches(cache: FeatureCache, bytes: Uint8Array): boolean {
  return bytes.byteLength >= 4 && readUint32(bytes, 0) === layoutFingerprint(cache);
}

/** At most the bytes of an encoded row. */
function rowMaxBytes(rows: RowSet<string>): number {
  return Math.ceil(rows.stride4 / 8) + rows.stride;
}

function encodeRow(rows: RowSet<string>, slot: number, out: Uint8Array, offset: number): number {
  const words = rows.stride4;
  const u32 = rows.u32;
  const first = slot * words;
  const bitmapBytes = Math.ceil(words / 8);
  let at = offset + bitmapBytes;
  for (let b = 0; b < bitmapBytes; b++) {
    let mask = 0;
    for (let w = b * 8; w < b * 8 + 8 && w < words; w++) {
      const value = u32[first + w]!;
      if (value === 0) continue;
      mask |= 1 << (w - b * 8);
      writeUint32(out, at, value);
      at += 4;
    }
    out[offset + b] = mask;
  }
  return at;
}

/** Checks an encoded row at `offset` fits in `length` bytes; returns where it ends, or -1. */
function rowEnd(rows: RowSet<string>, bytes: Uint8Array, offset: number, length: number): number {
  const bitmapBytes = Math.ceil(rows.stride4 / 8);
  if (offset + bitmapBytes > length) return -1;
  let words = 0;
  for (let b = 0; b < bitmapBytes; b++) {
    const mask = bytes[offset + b]!;
    if (b === bitmapBytes - 1 && mask >>> (rows.stride4 - b * 8) !== 0) return -1;
    for (let m = mask; m !== 0; m &= m - 1) words++;
  }
  const end = offset + bitmapBytes + 4 * words;
  return end <= length ? end : -1;
}

function decodeRow(rows: RowSet<string>, slot: number, bytes: Uint8Array, offset: number): void {
  const words = rows.stride4;
  const u32 = rows.u32;
  const first = slot * words;
  const bitmapBytes = Math.ceil(words / 8);
  u32.fill(0, first, first + words);
  let at = offset + bitmapBytes;
  for (let b = 0; b < bitmapBytes; b++) {
    const mask = bytes[offset + b]!;
    for (let bit = 0; bit < 8; bit++) {
      if ((mask & (1 << bit)) === 0) continue;
      u32[first + b * 8 + bit] = readUint32(bytes, at);
      at += 4;
    }
  }
}

/** At most the bytes of a user record. */
export function userRecordMaxBytes(cache: FeatureCache): number {
  return 4 + rowMaxBytes(cache.users.rows);
}

/** Writes the user record of `slot` into `out` at `offset`; returns the offset after it. */
export function encodeUserInto(cache: FeatureCache, slot: number, out: Uint8Array, offset: number): number {
  writeUint32(out, offset, layoutFingerprint(cache));
  return encodeRow(cache.users.rows, slot, out, offset + 4);
}

export function encodeUser(cache: FeatureCache, slot: number): Uint8Array {
  const bytes = new Uint8Array(userRecordMaxBytes(cache));
  return bytes.subarray(0, encodeUserInto(cache, slot, bytes, 0));
}

/** Loads a user record under `key`, replacing what the cache holds for it. False if the record does not fit. */
export function decodeUser(cache: FeatureCache, key: number, bytes: Uint8Array): boolean {
  if (!headerMatches(cache, bytes) || rowEnd(cache.users.rows, bytes, 4, bytes.byteLength) !== bytes.byteLength) return false;
  let slot = cache.users.find(key);
  if (slot < 0) slot = cache.users.allocate(key);
  const rows = cache.users.rows;
  decodeRow(rows, slot, bytes, 4);
  rows.f64[slot * rows.stride8] = key;
  // Loaded to be used: it gets the same second chance as a key in use.
  cache.users.reference(slot);
  return true;
}

/** At most the bytes of the item record of `slot`. */
export function itemRecordMaxBytes(cache: FeatureCache, slot: number): number {
  return 4 + rowMaxBytes(cache.items.rows) + 3 * (cache.itemIds[slot] ?? '').length;
}

/** Writes the item record of `slot` into `out` (room for `itemRecordMaxBytes`) at `offset`; returns the offset after it. */
export function encodeItemInto(cache: FeatureCache, slot: number, out: Buffer, offset: number): number {
  writeUint32(out, offset, layoutFingerprint(cache));
  const at = encodeRow(cache.items.rows, slot, out, offset + 4);
  return at + out.write(cache.itemIds[slot] ?? '', at, 'utf8');
}

export function encodeItem(cache: FeatureCache, slot: number): Uint8Array {
  const out = Buffer.allocUnsafe(itemRecordMaxBytes(cache, slot));
  return out.subarray(0, encodeItemInto(cache, slot, out, 0));
}

/** Loads an item record; its key comes from the id it carries. Returns the item id, or undefined if it does not fit. */
export function decodeItem(cache: FeatureCache, bytes: Uint8Array): string | undefined {
  if (!headerMatches(cache, bytes)) return undefined;
  const idAt = rowEnd(cache.items.rows, bytes, 4, bytes.byteLength);
  if (idAt < 0) return undefined;
  const id = decoder.decode(bytes.subarray(idAt));
  const key = hash53(id);
  let slot = cache.items.find(key);
  if (slot < 0) slot = cache.allocateItem(key, id);
  const rows = cache.items.rows;
  decodeRow(rows, slot, bytes, 4);
  rows.f64[slot * rows.stride8] = key;
  cache.items.reference(slot);
  return id;
}

/** Global and per-attribute CTR statistics. */
export function encodeGlobals(cache: FeatureCache): Uint8Array {
  const bytes = new Uint8Array(32 + cache.attributeStats.size * 20);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, layoutFingerprint(cache), true);
  view.setFloat64(4, cache.globalTime, true);
  view.setFloat64(12, cache.globalClicks, true);
  view.setFloat64(20, cache.globalImpressions, true);
  view.setUint32(28, cache.attributeStats.size, true);
  let at = 32;
  for (const [key, stats] of cache.attributeStats) {
    view.setUint32(at, key, true);
    view.setFloat64(at + 4, stats.clicks, true);
    view.setFloat64(at + 12, stats.impressions, true);
    at += 20;
  }
  return bytes;
}

export function decodeGlobals(cache: FeatureCache, bytes: Uint8Array): boolean {
  if (!headerMatches(cache, bytes) || bytes.byteLength < 32) return false;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const count = view.getUint32(28, true);
  if (bytes.byteLength !== 32 + count * 20) return false;
  cache.globalTime = view.getFloat64(4, true);
  cache.globalClicks = view.getFloat64(12, true);
  cache.globalImpressions = view.getFloat64(20, true);
  cache.attributeStats.clear();
  for (let i = 0, at = 32; i < count; i++, at += 20) {
    cache.attributeStats.set(view.getUint32(at, true), { clicks: view.getFloat64(at + 4, true), impressions: view.getFloat64(at + 12, true) });
  }
  return true;
}
