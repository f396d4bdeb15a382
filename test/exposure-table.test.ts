import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ExposureTable } from '../models/ab/exposure-table.js';
import { Experiments } from '../models/ab/experiments.js';

describe('ExposureTable', () => {
  it('behaves as a Map from user id to state under any sequence of sets (property)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ userId: fc.oneof(fc.string({ maxLength: 30 }), fc.string({ unit: 'grapheme', maxLength: 8 })), state: fc.integer({ min: 1, max: 255 }) }), { maxLength: 400, size: 'max' }),
        (operations) => {
          const table = new ExposureTable();
          const reference = new Map<string, number>();
          for (const { userId, state } of operations) {
            expect(table.get(userId)).toBe(reference.get(userId) ?? 0);
            table.set(userId, state);
            reference.set(userId, state);
            expect(table.size).toBe(reference.size);
          }
          for (const [userId, state] of reference) expect(table.get(userId)).toBe(state);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('keeps every user through many growths of its shards', () => {
    const table = new ExposureTable();
    const users = 200_000;
    for (let u = 0; u < users; u++) table.set(`user-${u}`, 1 + (u % 255));
    expect(table.size).toBe(users);
    let wrong = 0;
    for (let u = 0; u < users; u++) if (table.get(`user-${u}`) !== 1 + (u % 255)) wrong++;
    expect(wrong).toBe(0);
    expect(table.get('user-200000')).toBe(0);
    const shards = (table as unknown as { shards: { size: number }[] }).shards.map((shard) => shard.size);
    expect(Math.max(...shards)).toBeLessThan(2 * (users / shards.length));
  });

  it('refuses a state it cannot keep', () => {
    const table = new ExposureTable();
    expect(() => table.set('u', 0)).toThrow(/1\.\.255/);
    expect(() => table.set('u', 256)).toThrow(/1\.\.255/);
    expect(table.size).toBe(0);
  });
});

describe('Experiments at scale', () => {
  it('counts each of 100k users once and each conversion once per user', () => {
    const experiments = new Experiments([{ id: 'big', variants: [{ name: 'a', share: 1 }, { name: 'b', share: 1 }] }]);
    const users = 100_000;
    for (let round = 0; round < 2; round++) {
      for (let u = 0; u < users; u++) experiments.expose('big', `user-${u}`, { ts: round });
    }
    for (let u = 0; u < users; u += 10) {
      for (const type of ['purchase', 'purchase'] as const) experiments.observe({ id: `e${u}-${type}`, type, userId: `user-${u}`, itemId: 'i', ts: 3 });
    }
    const report = experiments.report('big')!;
    expect(report.totalUsers).toBe(users);
    expect(report.variants.reduce((sum, v) => sum + v.exposures, 0)).toBe(2 * users);
    expect(report.variants.reduce((sum, v) => sum + v.convertedUsers, 0)).toBe(users / 10);
    expect(report.variants.reduce((sum, v) => sum + v.conversions, 0)).toBe(2 * (users / 10));
    for (const variant of report.variants) {
      const assigned = Array.from({ length: users }, (_, u) => `user-${u}`).filter((id) => experiments.assign('big', id).variant === variant.name).length;
      expect(variant.users).toBe(assigned);
    }
    expect(report.srm.mismatch).toBe(false);
  });
});
