import { describe, expect, it } from 'vitest';
import { remembered } from '../schema/remembered.js';

describe('remembered', () => {
  it('computes a key once while it is among the last capacity / 2 keys, and again once it has aged out of both generations', () => {
    const computed: string[] = [];
    const upper = remembered((key: string) => {
      computed.push(key);
      return key.toUpperCase();
    }, 4);
    expect([upper('a'), upper('b'), upper('a')]).toEqual(['A', 'B', 'A']);
    expect(computed).toEqual(['a', 'b']);
    // c and d fill a new generation; a is still found in the old one and moves to a young one, which makes c and d
    // the old generation: b, older than the last two keys, is computed again.
    for (const key of ['c', 'd', 'a', 'b']) upper(key);
    expect(computed).toEqual(['a', 'b', 'c', 'd', 'b']);
    // The last two keys (a, b) are always found.
    upper('a');
    upper('b');
    expect(computed).toEqual(['a', 'b', 'c', 'd', 'b']);
  });

  it('returns the first result for a key, so equal strings parsed apart come back as one', () => {
    const shared = remembered((text: string) => text, 8);
    const first = shared(JSON.parse('"request-1"') as string);
    const second = shared(JSON.parse('"request-1"') as string);
    expect(second).toBe(first);
  });
});
