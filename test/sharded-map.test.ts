import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ShardedMap } from '../operators/sharded-map.js';

describe('ShardedMap', () => {
  it('behaves as one Map under any sequence of sets and deletes (property)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ key: fc.string({ maxLength: 40 }), value: fc.integer(), remove: fc.boolean() }), { maxLength: 300, size: 'max' }),
        (operations) => {
          const map = new ShardedMap<number>();
          const reference = new Map<string, number>();
          for (const { key, value, remove } of operations) {
            if (remove) expect(map.delete(key)).toBe(reference.delete(key));
            else {
              map.set(key, value);
              reference.set(key, value);
            }
            expect(map.size).toBe(reference.size);
            expect(map.get(key)).toBe(reference.get(key));
          }
          expect([...map.values()].sort()).toEqual([...reference.values()].sort());
          map.clear();
          expect(map.size).toBe(0);
          expect([...map.values()]).toEqual([]);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('spreads keys that differ only at the end over its shards', () => {
    const map = new ShardedMap<number>();
    for (let i = 0; i < 64_000; i++) map.set(`user-7\u0000item-${i}`, i);
    const shards = (map as unknown as { shards: Map<string, number>[] }).shards.map((shard) => shard.size);
    expect(Math.max(...shards)).toBeLessThan(3 * (64_000 / shards.length));
  });
});
