import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { LruMap } from '../operators/lru-map.js';

describe('LruMap', () => {
  it('evicts the least recently set key, like a reference list (property)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 8 }),
        fc.array(fc.oneof(fc.record({ set: fc.integer({ min: 0, max: 12 }) }), fc.record({ remove: fc.integer({ min: 0, max: 12 }) })), { maxLength: 200, size: 'max' }),
        (capacity, operations) => {
          const map = new LruMap<number, number>(capacity);
          // Reference: keys, least recent first.
          let order: number[] = [];
          operations.forEach((operation, step) => {
            if ('set' in operation) {
              map.set(operation.set, step);
              order = order.filter((key) => key !== operation.set);
              if (order.length >= capacity) order.shift();
              order.push(operation.set);
            } else {
              expect(map.delete(operation.remove)).toBe(order.includes(operation.remove));
              order = order.filter((key) => key !== operation.remove);
            }
            expect(map.size).toBe(order.length);
            for (let key = 0; key <= 12; key++) expect(map.get(key) !== undefined).toBe(order.includes(key));
          });
        },
      ),
      { numRuns: 300 },
    );
  });

  it('keeps the newest value of a key', () => {
    const map = new LruMap<string, number>(2);
    map.set('a', 1);
    map.set('b', 2);
    map.set('a', 3);
    map.set('c', 4);
    expect([map.get('a'), map.get('b'), map.get('c')]).toEqual([3, undefined, 4]);
    expect(() => new LruMap(0)).toThrow(/capacity/);
  });
});
