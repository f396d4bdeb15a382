import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { hitRateAtK, logLoss, meanOver, ndcgAtK, reciprocalRank, RollingMetrics, rocAuc } from '../models/metrics.js';

/** AUC by definition: over all positive-negative pairs, the share where the positive scores higher (ties 1/2). */
function pairwiseAuc(scores: number[], labels: number[]): number {
  let wins = 0;
  let pairs = 0;
  scores.forEach((sp, i) => {
    if (labels[i] !== 1) return;
    scores.forEach((sn, j) => {
      if (labels[j] !== 0) return;
      pairs++;
      wins += sp > sn ? 1 : sp === sn ? 0.5 : 0;
    });
  });
  return pairs === 0 ? NaN : wins / pairs;
}

describe('rocAuc', () => {
  it('equals the pairwise definition, ties included', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.integer({ min: 0, max: 5 }), fc.constantFrom(0, 1)), { minLength: 1, maxLength: 60 }),
        (pairs) => {
          const scores = pairs.map(([s]) => s / 5);
          const labels = pairs.map(([, l]) => l);
          const expected = pairwiseAuc(scores, labels);
          const actual = rocAuc(scores, labels);
          if (Number.isNaN(expected)) expect(actual).toBeNaN();
          else expect(actual).toBeCloseTo(expected, 12);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('gives 1 for a perfect ranking, 0 for a reversed one and 0.5 for all ties', () => {
    expect(rocAuc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1])).toBe(1);
    expect(rocAuc([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1])).toBe(0);
    expect(rocAuc([0.5, 0.5, 0.5], [0, 1, 1])).toBe(0.5);
  });
});

describe('logLoss', () => {
  it('is -log of the probability given to the true label, clipped', () => {
    expect(logLoss(0.8, 1)).toBeCloseTo(-Math.log(0.8), 15);
    expect(logLoss(0.8, 0)).toBeCloseTo(-Math.log(0.2), 15);
    // p = 1 is clipped to 1 - 1e-15 (in float64), so the loss is large but finite.
    expect(logLoss(1, 0)).toBeCloseTo(-Math.log(1 - (1 - 1e-15)), 9);
    expect(logLoss(1, 0)).toBeGreaterThan(34);
    expect(Number.isFinite(logLoss(0, 1))).toBe(true);
  });
});

describe('RollingMetrics', () => {
  it('reports exactly the metrics of the last `window` samples', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.double({ min: 0.01, max: 0.99, noNaN: true }), fc.constantFrom<0 | 1>(0, 1)), { maxLength: 120 }),
        fc.integer({ min: 1, max: 40 }),
        (samples, window) => {
          const rolling = new RollingMetrics(window);
          for (const [p, y] of samples) rolling.add(p, y);
          const last = samples.slice(-window);
          const snapshot = rolling.snapshot();
          expect(snapshot.count).toBe(last.length);
          expect(snapshot.total).toBe(samples.length);
          if (last.length === 0) {
            expect(snapshot.logloss).toBeNaN();
            return;
          }
          const loss = last.reduce((sum, [p, y]) => sum + logLoss(p, y), 0) / last.length;
          expect(snapshot.logloss).toBeCloseTo(loss, 9);
          expect(snapshot.positiveRate).toBeCloseTo(last.filter(([, y]) => y === 1).length / last.length, 12);
          expect(snapshot.meanPrediction).toBeCloseTo(last.reduce((s, [p]) => s + p, 0) / last.length, 9);
          const auc = pairwiseAuc(last.map(([p]) => p), last.map(([, y]) => y));
          if (Number.isNaN(auc)) expect(snapshot.auc).toBeNaN();
          else expect(snapshot.auc).toBeCloseTo(auc, 12);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('starts over on reset', () => {
    const rolling = new RollingMetrics(3);
    rolling.add(0.9, 1);
    rolling.reset();
    expect(rolling.count).toBe(0);
    expect(rolling.total).toBe(0);
    expect(() => new RollingMetrics(0)).toThrow(/window/);
  });
});

describe('ranking metrics', () => {
  const ranked = ['a', 'b', 'c', 'd'];

  it('NDCG@K with binary and graded relevance', () => {
    // Relevant b (rank 2) and d (rank 4): DCG = 1/log2(3) + 1/log2(5); ideal = 1 + 1/log2(3).
    const dcg = 1 / Math.log2(3) + 1 / Math.log2(5);
    expect(ndcgAtK(ranked, new Set(['b', 'd']), 4)).toBeCloseTo(dcg / (1 + 1 / Math.log2(3)), 12);
    // At K=2 only b counts; the ideal still has two relevant items in its top 2.
    expect(ndcgAtK(ranked, new Set(['b', 'd']), 2)).toBeCloseTo(1 / Math.log2(3) / (1 + 1 / Math.log2(3)), 12);
    // Graded: c has gain 2^3 - 1 = 7 at rank 3, a has 2^1 - 1 = 1 at rank 1; ideal puts c first.
    const graded = new Map([['a', 1], ['c', 3]]);
    expect(ndcgAtK(ranked, graded, 4)).toBeCloseTo((1 + 7 / 2) / (7 + 1 / Math.log2(3)), 12);
    expect(ndcgAtK(ranked, new Set(), 4)).toBe(0);
  });

  it('HR@K and MRR', () => {
    expect(hitRateAtK(ranked, new Set(['c']), 2)).toBe(0);
    expect(hitRateAtK(ranked, new Set(['c']), 3)).toBe(1);
    expect(reciprocalRank(ranked, new Set(['c', 'd']))).toBeCloseTo(1 / 3, 15);
    expect(reciprocalRank(ranked, new Set(['z']))).toBe(0);
    const lists = [{ ranked, relevant: new Set(['a']) }, { ranked, relevant: new Set(['b']) }];
    expect(meanOver(lists, (l) => reciprocalRank(l.ranked, l.relevant))).toBeCloseTo(0.75, 15);
    expect(meanOver([], () => 1)).toBeNaN();
  });
});
