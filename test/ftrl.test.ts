import { describe, expect, it } from 'vitest';
import { decodeModelVersion, encodeModelVersion, type Sample } from '../models/learner.js';
import { FtrlLearner, ftrlPredictor } from '../models/learners/ftrl.js';
import { rocAuc } from '../models/metrics.js';
import { mulberry32, sampleNormal } from '../models/random.js';

const sig = (x: number) => 1 / (1 + Math.exp(-x));

describe('FTRL-Proximal', () => {
  it('matches a hand-computed three-step example of McMahan et al. Algorithm 1', () => {
    // alpha = 1, beta = 1, l1 = 0.1, l2 = 1, no intercept.
    // w_i = 0 if |z_i| <= l1, else -(z_i - sign(z_i) l1) / ((beta + sqrt(n_i)) / alpha + l2)
    // g_i = (p - y) x_i; sigma_i = (sqrt(n_i + g_i^2) - sqrt(n_i)) / alpha; z_i += g_i - sigma_i w_i; n_i += g_i^2
    const learner = new FtrlLearner({ bits: 4, alpha: 1, beta: 1, l1: 0.1, l2: 1, bias: false });

    // Step 1: x = {0: 1, 1: 1}, y = 1. All weights are 0, so p = 0.5 and g_0 = g_1 = -0.5.
    // sigma = sqrt(0.25) - 0 = 0.5; z = -0.5 - 0.5 * 0 = -0.5; n = 0.25.
    // w = -(-0.5 + 0.1) / ((1 + 0.5) / 1 + 1) = 0.4 / 2.5 = 0.16 for coordinates 0 and 1.
    expect(learner.learn({ features: { indices: [0, 1], values: [1, 1] }, label: 1 })).toBe(0.5);
    expect(learner.z(0)).toBeCloseTo(-0.5, 15);
    expect(learner.n(1)).toBeCloseTo(0.25, 15);
    expect(learner.weight(0)).toBeCloseTo(0.16, 15);
    expect(learner.weight(1)).toBeCloseTo(0.16, 15);

    // Step 2: x = {1: 2, 2: 1}, y = 0. logit = 0.16 * 2 + 0 * 1 = 0.32; p2 = sigmoid(0.32).
    const p2 = sig(0.32);
    expect(learner.learn({ features: { indices: [1, 2], values: [2, 1] }, label: 0 })).toBeCloseTo(p2, 15);
    // Coordinate 1: g = 2 p2; sigma = sqrt(0.25 + g^2) - 0.5; z = -0.5 + g - sigma * 0.16; n = 0.25 + g^2.
    const g1 = 2 * p2;
    const z1 = -0.5 + g1 - (Math.sqrt(0.25 + g1 * g1) - 0.5) * 0.16;
    const n1 = 0.25 + g1 * g1;
    // Coordinate 2: g = p2; sigma = sqrt(p2^2) - 0 = p2; z = p2 - p2 * 0 = p2; n = p2^2.
    const z2 = p2;
    const n2 = p2 * p2;
    expect(learner.z(1)).toBeCloseTo(z1, 12);
    expect(learner.n(1)).toBeCloseTo(n1, 12);
    expect(learner.z(2)).toBeCloseTo(z2, 12);
    expect(learner.n(2)).toBeCloseTo(n2, 12);
    // z1 = -0.5 + 1.15865 - 0.09376... ~ 0.5649 > l1, so w1 = -(z1 - 0.1) / ((1 + sqrt(n1)) + 1).
    const w1 = -(z1 - 0.1) / (1 + Math.sqrt(n1) + 1);
    const w2 = -(z2 - 0.1) / (1 + Math.sqrt(n2) + 1);
    expect(learner.weight(1)).toBeCloseTo(w1, 12);
    expect(learner.weight(2)).toBeCloseTo(w2, 12);
    expect(learner.weight(0)).toBeCloseTo(0.16, 15);

    // Step 3: x = {0: 1, 2: 1}, y = 1. logit = 0.16 + w2; p3 = sigmoid(logit); g = p3 - 1 for both.
    const p3 = sig(0.16 + w2);
    expect(learner.learn({ features: { indices: [0, 2] }, label: 1 })).toBeCloseTo(p3, 12);
    const g3 = p3 - 1;
    const z0 = -0.5 + g3 - (Math.sqrt(0.25 + g3 * g3) - 0.5) * 0.16;
    const n0 = 0.25 + g3 * g3;
    const z2b = z2 + g3 - (Math.sqrt(n2 + g3 * g3) - Math.sqrt(n2)) * w2;
    const n2b = n2 + g3 * g3;
    expect(learner.z(0)).toBeCloseTo(z0, 12);
    expect(learner.n(0)).toBeCloseTo(n0, 12);
    expect(learner.z(2)).toBeCloseTo(z2b, 12);
    expect(learner.n(2)).toBeCloseTo(n2b, 12);
    const w0 = Math.abs(z0) <= 0.1 ? 0 : -(z0 - Math.sign(z0) * 0.1) / (1 + Math.sqrt(n0) + 1);
    const w2b = Math.abs(z2b) <= 0.1 ? 0 : -(z2b - Math.sign(z2b) * 0.1) / (1 + Math.sqrt(n2b) + 1);
    expect(learner.weight(0)).toBeCloseTo(w0, 12);
    expect(learner.weight(2)).toBeCloseTo(w2b, 12);
    expect(learner.predict({ indices: [0, 1, 2] })).toBeCloseTo(sig(w0 + w1 + w2b), 12);
  });

  it('learns the intercept as a coordinate every sample has', () => {
    const learner = new FtrlLearner({ bits: 2, alpha: 1, beta: 1, l1: 0, l2: 0 });
    // Empty features, y = 1: g = -0.5 on the intercept; z = -0.5, n = 0.25, w = 0.5 / (1 + 0.5) = 1/3.
    learner.learn({ features: { indices: [] }, label: 1 });
    expect(learner.weight(learner.size)).toBeCloseTo(1 / 3, 15);
    expect(learner.predict({ indices: [] })).toBeCloseTo(sig(1 / 3), 15);
  });

  it('reaches the known optimum AUC of a synthetic logistic problem, with sparse weights for noise features', () => {
    const random = mulberry32(7);
    const informative = 20;
    const trueWeights = Array.from({ length: informative }, () => 1.5 * sampleNormal(random));
    const draw = (): { sample: Sample; trueP: number } => {
      const indices: number[] = [];
      let logit = -1;
      for (let f = 0; f < informative; f++) {
        if (random() < 0.25) {
          indices.push(f);
          logit += trueWeights[f]!;
        }
      }
      // Noise features carry no signal; L1 should leave most of their weights at exactly zero.
      for (let k = 0; k < 5; k++) indices.push(1000 + Math.floor(random() * 20_000));
      const trueP = sig(logit);
      return { sample: { features: { indices }, label: random() < trueP ? 1 : 0 }, trueP };
    };
    const learner = new FtrlLearner({ bits: 16, alpha: 0.2, beta: 1, l1: 3, l2: 1 });
    for (let i = 0; i < 60_000; i++) learner.learn(draw().sample);
    const test = Array.from({ length: 20_000 }, draw);
    const labels = test.map((t) => t.sample.label);
    const optimum = rocAuc(test.map((t) => t.trueP), labels);
    const learned = rocAuc(test.map((t) => learner.predict(t.sample.features)), labels);
    expect(optimum).toBeGreaterThan(0.75);
    expect(optimum - learned).toBeLessThan(0.01);
    let noiseNonZero = 0;
    for (let i = 1000; i < 21_000; i++) if (learner.weight(i) !== 0) noiseNonZero++;
    expect(noiseNonZero).toBeLessThan(20_000 * 0.05);
    for (let f = 0; f < informative; f++) {
      if (Math.abs(trueWeights[f]!) > 0.5) expect(Math.sign(learner.weight(f))).toBe(Math.sign(trueWeights[f]!));
    }
  });

  it('exports, encodes, decodes and restores to a learner that predicts and continues identically', () => {
    const random = mulberry32(3);
    const sample = (): Sample => ({
      features: { indices: Array.from({ length: 6 }, () => Math.floor(random() * 4096)), values: Array.from({ length: 6 }, () => random()) },
      label: random() < 0.3 ? 1 : 0,
    });
    const original = new FtrlLearner({ bits: 12, l1: 0.5 });
    for (let i = 0; i < 3000; i++) original.learn(sample());
    const version = decodeModelVersion(encodeModelVersion(original.export({ model: 'ctr', version: 'v1', parent: null, createdAt: 5 })));
    expect(version).toMatchObject({ model: 'ctr', version: 'v1', parent: null, createdAt: 5, kind: 'ftrl', samplesSeen: 3000 });
    const copy = FtrlLearner.fromVersion(version);
    const served = ftrlPredictor(version);
    for (let i = 0; i < 200; i++) {
      const s = sample();
      // The serving form stores weights as float32.
      expect(Math.abs(served.predict(s.features) - original.predict(s.features))).toBeLessThan(1e-6);
    }
    for (let i = 0; i < 200; i++) {
      const s = sample();
      expect(copy.predict(s.features)).toBe(original.predict(s.features));
      expect(copy.learn(s)).toBe(original.learn(s));
    }
    expect(Array.from(copy.state)).toEqual(Array.from(original.state));
  });

  it('refuses to restore a version of another shape or kind', () => {
    const version = new FtrlLearner({ bits: 8 }).export({ model: 'm', version: 'v', parent: null });
    expect(() => new FtrlLearner({ bits: 9 }).restore(version)).toThrow(/8 bits/);
    expect(() => new FtrlLearner({ bits: 8 }).restore({ ...version, kind: 'online-fm' })).toThrow(/online-fm/);
    expect(() => new FtrlLearner({ alpha: 0 })).toThrow(/alpha/);
  });
});
