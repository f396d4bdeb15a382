/**
 * cyrb53: a fast 53-bit string hash, exact as a JS number. Users and items are keyed by it, so the cache keeps no
 * strings; two ids share a key with probability about n^2 / 2^54 (5e-5 for a million ids).
 */
export function hash53(text: string, seed = 0): number {
  let h1 = 0xdeadbeef ^ seed;
  let h2 = 0x41c6ce57 ^ seed;
  for (let i = 0; i < text.length; i++) {
    const ch = text.charCodeAt(i);
    h1 = Math.imul(h1 ^ ch, 2654435761);
    h2 = Math.imul(h2 ^ ch, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507);
  h1 ^= Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507);
  h2 ^= Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return 4294967296 * (2097151 & h2) + (h1 >>> 0);
}

/** The low 32 bits of a 53-bit key, for compact references (histories, co-visitation, attributes). */
export function low32(key: number): number {
  return key >>> 0;
}

/** An attribute value as a 32-bit reference: `field=value`. */
export function attributeKey(field: string, value: string | number | boolean): number {
  return low32(hash53(`${field}=${String(value)}`));
}

const HEX_BYTES = Array.from({ length: 256 }, (_, b) => b.toString(16).padStart(2, '0'));

/**
 * `key.toString(16)` for a whole number below 2^53, about ten times faster: V8 formats doubles in a radix through a
 * general fraction-aware path, and Redis key names of records are built with this for every record written.
 */
export function hex53(key: number): string {
  const high = Math.floor(key / 4294967296);
  const low = key >>> 0;
  const lowHex = HEX_BYTES[low >>> 24]! + HEX_BYTES[(low >>> 16) & 255]! + HEX_BYTES[(low >>> 8) & 255]! + HEX_BYTES[low & 255]!;
  if (high > 0) return high.toString(16) + lowHex;
  let start = 0;
  while (start < 7 && lowHex.charCodeAt(start) === 48) start++;
  return lowHex.slice(start);
}
