import type { FeatureCache } from './cache.js';
import { hash53 } from './hash.js';

/**
 * Binary records of cached state, the format of Redis values and snapshots. A record starts with a fingerprint of
 * the column layout and config, so a record written under another config is refused instead of misread. Numbers
 * are in the machine's byte order (little-endian on every platform Node supports).
 */

const encoder = new TextEncoder();
const decoder = new TextDecoder();

const fingerprints = new WeakMap<FeatureCache, number>();

export function layoutFingerprint(cache: FeatureCache): number {
  let fingerprint = fingerprints.get(cache);
  if (fingerprint === undefined) {
    fingerprint = hash53(`${cache.users.columns.layout()}|${cache.items.columns.layout()}|${JSON.stringify(cache.config)}`) >>> 0;
    fingerprints.set(cache, fingerprint);
  }
  return fingerprint;
}

function withHeader(cache: FeatureCache, bodyBytes: number): { bytes: Uint8Array; view: DataView } {
  const bytes = new Uint8Array(4 + bodyBytes);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, layoutFingerprint(cache), true);
  return { bytes, view };
}

function headerMatches(cache: FeatureCache, bytes: Uint8Array): boolean {
  return bytes.byteLength >= 4 && new DataView(bytes.buffer, bytes.byteOffset, 4).getUint32(0, true) === layoutFingerprint(cache);
}

export function encodeUser(cache: FeatureCache, slot: number): Uint8Array {
  const { bytes } = withHeader(cache, cache.users.columns.recordBytes);
  cache.users.columns.encode(slot, bytes, 4);
  return bytes;
}

/** Loads a user record under `key`, replacing what the cache holds for it. False if the record does not fit. */
export function decodeUser(cache: FeatureCache, key: number, bytes: Uint8Array): boolean {
  if (!headerMatches(cache, bytes) || bytes.byteLength !== 4 + cache.users.columns.recordBytes) return false;
  let slot = cache.users.find(key);
  if (slot < 0) slot = cache.users.allocate(key);
  cache.users.columns.decode(slot, bytes, 4);
  // Loaded to be used: it gets the same second chance as a key in use.
  cache.users.columns.cols.referenced[slot] = 1;
  return true;
}

export function encodeItem(cache: FeatureCache, slot: number): Uint8Array {
  const id = encoder.encode(cache.itemIds[slot] ?? '');
  const size = cache.items.columns.recordBytes;
  const { bytes } = withHeader(cache, size + id.byteLength);
  cache.items.columns.encode(slot, bytes, 4);
  bytes.set(id, 4 + size);
  return bytes;
}

/** Loads an item record; its key comes from the id it carries. Returns the item id, or undefined if it does not fit. */
export function decodeItem(cache: FeatureCache, bytes: Uint8Array): string | undefined {
  const size = cache.items.columns.recordBytes;
  if (!headerMatches(cache, bytes) || bytes.byteLength < 4 + size) return undefined;
  const id = decoder.decode(bytes.subarray(4 + size));
  const key = hash53(id);
  let slot = cache.items.find(key);
  if (slot < 0) slot = cache.allocateItem(key, id);
  const ref = cache.items.columns.cols.ref[slot]!;
  cache.items.columns.decode(slot, bytes, 4);
  cache.items.columns.cols.key[slot] = key;
  cache.items.columns.cols.ref[slot] = ref;
  cache.items.columns.cols.referenced[slot] = 1;
  return id;
}

/** Global and per-attribute CTR statistics. */
export function encodeGlobals(cache: FeatureCache): Uint8Array {
  const { bytes, view } = withHeader(cache, 28 + cache.attributeStats.size * 20);
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
