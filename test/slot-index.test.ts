import { describe, expect, it } from 'vitest';
import { hash53 } from '../operators/features/hash.js';
import { SlotIndex } from '../operators/features/slot-table.js';

/** An index over `count` rows of `stride` f64 each, every row's key at its start, like the cache's rows. */
function indexOver(keys: readonly number[], stride: number, capacity = keys.length): { index: SlotIndex; rows: Float64Array } {
  const rows = new Float64Array(Math.max(capacity, keys.length) * stride);
  const index = new SlotIndex(capacity);
  index.bind(rows, stride);
  keys.forEach((key, slot) => {
    rows[slot * stride] = key;
    index.insert(slot);
  });
  return { index, rows };
}

describe('SlotIndex.findAll', () => {
  it('finds what find finds for present and absent keys, in input order', () => {
    const present = Array.from({ length: 3000 }, (_, i) => hash53(`item-${i}`));
    const { index } = indexOver(present, 5, 3000);
    const asked = [...Array.from({ length: 500 }, (_, i) => present[(i * 7) % present.length]!), ...Array.from({ length: 500 }, (_, i) => hash53(`absent-${i}`))];
    const keys = Float64Array.from(asked);
    const slots = new Int32Array(keys.length);
    index.findAll(keys, keys.length, slots);
    expect(Array.from(slots)).toEqual(asked.map((key) => index.find(key)));
    expect(slots.slice(0, 500).every((slot) => slot >= 0)).toBe(true);
    expect(slots.slice(500).every((slot) => slot === -1)).toBe(true);
  });

  it('probes past entries that share a home position or a low-32-bit tag', () => {
    // Keys with equal low 32 bits share a tag and a home entry: only the whole key in the row tells them apart.
    const sameTag = [1 * 2 ** 32 + 77, 2 * 2 ** 32 + 77, 3 * 2 ** 32 + 77];
    // Different tags with equal low bits under the mask share a home entry only.
    const sameHome = [5, 5 + 1024, 5 + 2048];
    const { index } = indexOver([...sameTag, ...sameHome], 2, 16);
    const asked = [sameTag[2]!, sameHome[2]!, sameTag[0]!, 4 * 2 ** 32 + 77, sameHome[1]!, 5 + 4096];
    const slots = new Int32Array(asked.length);
    index.findAll(Float64Array.from(asked), asked.length, slots);
    expect(Array.from(slots)).toEqual([2, 5, 0, -1, 4, -1]);
  });

  it('fills only the first count entries', () => {
    const { index } = indexOver([hash53('a'), hash53('b')], 1);
    const slots = new Int32Array(3).fill(9);
    index.findAll(Float64Array.from([hash53('b'), hash53('a'), hash53('b')]), 2, slots);
    expect(Array.from(slots)).toEqual([1, 0, 9]);
  });
});
