import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { bestFirst } from '../operators/recall/best-first.js';

describe('bestFirst', () => {
  it('gives the head of a stable descending sort, ties in index order (property)', () => {
    fc.assert(
      fc.property(
        // Few distinct values, so ties are common, and sometimes many of them; lengths past a cache of a few.
        fc.array(fc.oneof(fc.integer({ min: -3, max: 3 }), fc.double({ min: -1e6, max: 1e6, noNaN: true })), { maxLength: 600, size: 'max' }),
        fc.integer({ min: 0, max: 700 }),
        fc.integer({ min: 0, max: 50 }),
        (numbers, limit, slack) => {
          const values = Float64Array.from([...numbers, ...Array.from({ length: slack }, () => 99)]);
          const n = numbers.length;
          const expected = Array.from({ length: n }, (_, i) => i)
            .sort((a, b) => values[b]! - values[a]! || a - b)
            .slice(0, limit);
          expect(Array.from(bestFirst(values, n, limit))).toEqual(expected);
        },
      ),
      { numRuns: 500 },
    );
  });

  it('leaves the values as they were', () => {
    const values = Float64Array.from([3, 1, 2, 3, 0]);
    expect(Array.from(bestFirst(values, 5, 2))).toEqual([0, 3]);
    expect(Array.from(values)).toEqual([3, 1, 2, 3, 0]);
  });
});
