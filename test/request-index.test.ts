import { describe, expect, it } from 'vitest';
import { RequestIndex } from '../operators/recall/request-index.js';

describe('RequestIndex', () => {
  it('answers only for ids set since the last begin', () => {
    const index = new RequestIndex();
    index.begin();
    index.set('a', 0);
    index.set('b', 7);
    expect([index.get('a'), index.get('b'), index.get('c')]).toEqual([0, 7, undefined]);
    index.begin();
    expect([index.has('a'), index.has('b')]).toEqual([false, false]);
    index.set('b', 2);
    expect([index.get('a'), index.get('b')]).toEqual([undefined, 2]);
  });

  it('starts over from an empty map past its bound, and when its values would leave the small-integer range', () => {
    const bounded = new RequestIndex(3);
    bounded.begin();
    for (const [i, id] of ['a', 'b', 'c', 'd'].entries()) bounded.set(id, i);
    expect(bounded.retained).toBe(4);
    bounded.begin();
    bounded.set('e', 0);
    expect([bounded.get('a'), bounded.get('e')]).toEqual([undefined, 0]);
    expect(bounded.retained).toBe(1);
    bounded.begin();
    bounded.set('f', 0);
    expect(bounded.retained).toBe(2);

    const index = new RequestIndex();
    // 2^30 / 2^16 requests reach the end of the range: every one of them still sees only its own ids.
    for (let request = 0; request < (1 << 14) + 3; request++) {
      index.begin();
      expect(index.get('x')).toBeUndefined();
      index.set('x', request % 5);
      expect(index.get('x')).toBe(request % 5);
    }
  });

  it('rejects an index outside what one request holds', () => {
    const index = new RequestIndex();
    index.begin();
    expect(() => index.set('a', 1 << 16)).toThrow(/0 to 65535/);
    expect(() => index.set('a', -1)).toThrow(RangeError);
  });
});
