import { describe, expect, it } from 'vitest';
import { FeatureHasher, hashFeature, hashPair, hashString, murmur3 } from '../models/hashing.js';
import { decodeModelVersion, encodeModelVersion, sampleProblem, type Sample } from '../models/learner.js';
import { EpsilonGreedy, ThompsonSampling } from '../models/learners/bandits.js';
import { predictorFor } from '../models/learners/index.js';
import { OnlineFmLearner } from '../models/learners/online-fm.js';
import { OnlineHeadLearner, OnlineHeadPredictor, type HeadFeatures } from '../models/learners/online-head.js';
import { rocAuc } from '../models/metrics.js';
import { mulberry32, sampleBeta } from '../models/random.js';

/** Central difference of `loss` with respect to one parameter slot. */
function numericalGradient(params: Float32Array | Float64Array, index: number, loss: () => number, h = 1e-3): number {
  const original = params[index]!;
  params[index] = original + h;
  const up = loss();
  params[index] = original - h;
  const down = loss();
  params[index] = original;
  // Float32 slots round the perturbation; divide by the step actually taken.
  const taken = Math.fround(original + h) - Math.fround(original - h);
  return (up - down) / (params instanceof Float32Array ? taken : 2 * h);
}

describe('feature hashing', () => {
  it('matches published MurmurHash3 x86_32 vectors', () => {
    const bytes = (s: string) => new TextEncoder().encode(s);
    expect(murmur3(bytes(''), 0, 0)).toBe(0);
    expect(murmur3(bytes(''), 0, 1)).toBe(0x514e28b7);
    expect(murmur3(bytes(''), 0, 0xffffffff)).toBe(0x81f16f39);
    expect(hashString('hello')).toBe(0x248bfa47);
    expect(hashString('The quick brown fox jumps over the lazy dog')).toBe(0x2e4ff723);
  });

  it('hashes the UTF-8 bytes of any string, as TextEncoder writes them', () => {
    for (const text of ['abc', 'é', '日本語', '😀x', 'a\ud800b', 'x'.repeat(1000)]) {
      const bytes = new TextEncoder().encode(text);
      expect(hashString(text, 42)).toBe(murmur3(bytes, bytes.length, 42));
    }
  });

  it('maps named features to buckets by the documented rules', () => {
    const hasher = new FeatureHasher({ bits: 10 });
    const { indices, values } = hasher.hash({ country: 'fr', price: 2.5, tags: ['a', 'b'], dense: [0.5, 0.25], mobile: true, bad: NaN });
    expect(Array.from(indices)).toEqual([
      hashFeature('country', 'fr', 10),
      hasher.bucket('price'),
      hashFeature('tags', 'a', 10),
      hashFeature('tags', 'b', 10),
      hasher.bucket('dense[0]'),
      hasher.bucket('dense[1]'),
      hashFeature('mobile', true, 10),
    ]);
    expect(Array.from(values)).toEqual([1, 2.5, 1, 1, 0.5, 0.25, 1]);
    const reusedIndices = new Uint32Array(16);
    const reusedValues = new Float32Array(16);
    const fields = { country: 'fr', price: 2.5, tags: ['a', 'b'], dense: [0.5, 0.25], mobile: true, bad: NaN };
    expect(FeatureHasher.sizeOf(fields)).toBe(8);
    expect(hasher.hashInto(fields, reusedIndices, reusedValues)).toBe(7);
    expect(Array.from(reusedIndices.subarray(0, 7))).toEqual(Array.from(indices));
    expect(() => hasher.hashInto(fields, new Uint32Array(3), new Float32Array(3))).toThrow(/at least 8 entries/);
    for (const i of indices) expect(i).toBeLessThan(1024);
    expect(() => new FeatureHasher({ bits: 0 })).toThrow(/bits/);
  });
});

describe('sample validation', () => {
  it('names what is wrong with a sample', () => {
    expect(sampleProblem({ features: { indices: [1, 2] }, label: 1 })).toBeUndefined();
    expect(sampleProblem({ features: { indices: [1] }, label: 2 as 1 })).toMatch(/label/);
    expect(sampleProblem({ features: { indices: [1, -1] }, label: 0 })).toMatch(/indices\[1\]/);
    expect(sampleProblem({ features: { indices: [1], values: [NaN] }, label: 0 })).toMatch(/values\[0\]/);
    expect(sampleProblem({ features: { indices: [1], values: [] }, label: 0 })).toMatch(/0 entries for 1/);
    expect(sampleProblem({ features: { indices: [1] }, label: 0, weight: -1 })).toMatch(/weight/);
  });
});

describe('online factorization machine', () => {
  const sample: Sample = { features: { indices: [3, 17, 42], values: [1, 0.5, 2] }, label: 1, weight: 1.5 };

  it('has analytic gradients that match central differences', () => {
    const fm = new OnlineFmLearner({ bits: 6, factors: 4, initStd: 0.3, l2: 0.01, l2Factors: 0.02, seed: 5 });
    fm.linear[3] = 0.2;
    fm.linear[42] = -0.4;
    fm.bias[0] = 0.1;
    const loss = () => fm.loss(sample);
    const gradient = fm.gradient(sample);
    expect(gradient.bias).toBeCloseTo(numericalGradient(fm.bias, 0, loss), 5);
    for (const i of [3, 17, 42]) {
      expect(gradient.linear.get(i)!).toBeCloseTo(numericalGradient(fm.linear, i, loss), 3);
      for (let f = 0; f < 4; f++) {
        expect(gradient.factors.get(i)![f]!).toBeCloseTo(numericalGradient(fm.v, i * 4 + f, loss), 3);
      }
    }
  });

  it('takes one AdaGrad step along that gradient per sample', () => {
    const fm = new OnlineFmLearner({ bits: 6, factors: 2, initStd: 0.3, learningRate: 0.1, seed: 9 });
    const gradient = fm.gradient(sample);
    const v17 = fm.v[17 * 2 + 1]!;
    const w42 = fm.linear[42]!;
    fm.learn(sample);
    // First AdaGrad step: theta -= eta g / sqrt(g^2) = eta sign(g).
    expect(fm.bias[0]).toBeCloseTo(-0.1 * Math.sign(gradient.bias), 6);
    expect(fm.linear[42]).toBeCloseTo(w42 - 0.1 * Math.sign(gradient.linear.get(42)!), 6);
    expect(fm.v[17 * 2 + 1]).toBeCloseTo(v17 - 0.1 * Math.sign(gradient.factors.get(17)![1]!), 6);
  });

  it('learns a pure interaction that no linear model can', () => {
    // Label is 1 exactly when a and b agree: each feature alone carries no signal.
    const random = mulberry32(11);
    const draw = (): Sample => {
      const a = random() < 0.5 ? 0 : 1;
      const b = random() < 0.5 ? 0 : 1;
      const p = a === b ? 0.9 : 0.1;
      return { features: { indices: [a, 2 + b] }, label: random() < p ? 1 : 0 };
    };
    const fm = new OnlineFmLearner({ bits: 4, factors: 4, initStd: 0.1, learningRate: 0.05 });
    for (let i = 0; i < 20_000; i++) fm.learn(draw());
    const test = Array.from({ length: 4000 }, draw);
    const auc = rocAuc(test.map((s) => fm.predict(s.features)), test.map((s) => s.label));
    // Bayes-optimal AUC here is 0.9.
    expect(auc).toBeGreaterThan(0.89);
  });

  it('exports and restores exactly, through the wire encoding', () => {
    const random = mulberry32(2);
    const draw = (): Sample => ({ features: { indices: [Math.floor(random() * 64), Math.floor(random() * 64)] }, label: random() < 0.4 ? 1 : 0 });
    const fm = new OnlineFmLearner({ bits: 6, factors: 3 });
    for (let i = 0; i < 500; i++) fm.learn(draw());
    const version = decodeModelVersion(encodeModelVersion(fm.export({ model: 'fm', version: 'a', parent: null })));
    const copy = predictorFor(version) as OnlineFmLearner;
    for (let i = 0; i < 100; i++) {
      const s = draw();
      expect(copy.predict(s.features)).toBe(fm.predict(s.features));
      expect(copy.learn(s)).toBe(fm.learn(s));
    }
    // Restoring an older version undoes what was learned since, untouched factors included.
    fm.restore(version);
    const fresh = OnlineFmLearner.fromVersion(version);
    expect(Array.from(fm.v)).toEqual(Array.from(fresh.v));
  });
});

describe('online head over deep features', () => {
  const features: HeadFeatures = { dense: [0.3, -1.2, 0.8], sparse: { indices: [5, 9], values: [1, 0.5] } };

  it('starts from the deep model\'s last layer', () => {
    const head = new OnlineHeadLearner({ inputSize: 3, initialWeights: [0.5, 0.25, -1], initialBias: 0.2, initStd: 0 });
    const logit = 0.2 + 0.5 * 0.3 + 0.25 * -1.2 + -1 * 0.8;
    expect(head.predict(features)).toBeCloseTo(1 / (1 + Math.exp(-logit)), 12);
    expect(() => head.predict({ dense: [1, 2] })).toThrow(/3 dense inputs/);
  });

  it('has analytic gradients that match central differences', () => {
    const head = new OnlineHeadLearner({ inputSize: 3, bits: 4, embeddingDim: 3, initStd: 0.4, l2: 0.01, seed: 3 });
    const sample: Sample<HeadFeatures> = { features, label: 0, weight: 2 };
    const loss = () => head.loss(sample);
    const gradient = head.gradient(sample);
    expect(gradient.bias).toBeCloseTo(numericalGradient(head.bias, 0, loss), 5);
    for (let d = 0; d < 3; d++) expect(gradient.weights[d]!).toBeCloseTo(numericalGradient(head.weights, d, loss), 5);
    for (let f = 0; f < 3; f++) expect(gradient.readout[f]!).toBeCloseTo(numericalGradient(head.readout, f, loss), 5);
    for (const row of [5, 9]) {
      for (let f = 0; f < 3; f++) {
        expect(gradient.embeddings.get(row)![f]!).toBeCloseTo(numericalGradient(head.embeddings, row * 3 + f, loss), 3);
      }
    }
  });

  it('learns an item effect the frozen deep features miss, and round-trips its state', () => {
    const random = mulberry32(4);
    const draw = (): Sample<HeadFeatures> => {
      const item = Math.floor(random() * 20);
      const dense = [random(), random()];
      const logit = 2 * dense[0]! - 1 + (item < 5 ? 2 : -1);
      return { features: { dense, sparse: { indices: [item] } }, label: random() < 1 / (1 + Math.exp(-logit)) ? 1 : 0 };
    };
    const head = new OnlineHeadLearner({ inputSize: 2, initialWeights: [2, 0], initialBias: -1, bits: 8, embeddingDim: 4, learningRate: 0.05, initStd: 0.1 });
    const test = Array.from({ length: 4000 }, draw);
    const auc = () => rocAuc(test.map((s) => head.predict(s.features)), test.map((s) => s.label));
    const before = auc();
    for (let i = 0; i < 20_000; i++) head.learn(draw());
    expect(auc()).toBeGreaterThan(before + 0.1);
    const copy = predictorFor(decodeModelVersion(encodeModelVersion(head.export({ model: 'h', version: '1', parent: null })))) as OnlineHeadLearner;
    for (const s of test.slice(0, 50)) expect(copy.predict(s.features)).toBe(head.predict(s.features));
  });
});

describe('online head serving form', () => {
  it('predicts bit-identically to the learner, over learned and untouched rows, with or without views', () => {
    const random = mulberry32(8);
    const head = new OnlineHeadLearner({ inputSize: 4, bits: 14, embeddingDim: 3, learningRate: 0.1, initStd: 0.2, base: 'deep-1' });
    const draw = (): Sample<HeadFeatures> => ({
      features: { dense: Array.from({ length: 4 }, () => random()), sparse: { indices: Array.from({ length: 3 }, () => Math.floor(random() * 5000)), values: [1, random(), 0.5] } },
      label: random() < 0.3 ? 1 : 0,
    });
    // Enough distinct rows that the predictor's index of learned rows has collisions to probe through.
    for (let i = 0; i < 3000; i++) head.learn(draw());
    const version = decodeModelVersion(encodeModelVersion(head.export({ model: 'h', version: '2', parent: '1' })));
    expect(version.tensors.embeddingIndices!.length).toBeGreaterThan(500);
    const predictor = predictorFor(version) as OnlineHeadPredictor;
    expect(predictor).toBeInstanceOf(OnlineHeadPredictor);
    expect(predictor.base).toBe('deep-1');
    const batch = Array.from({ length: 200 }, draw);
    const activations = Float32Array.from(batch.flatMap((s) => Array.from(s.features.dense)));
    batch.forEach((s, i) => {
      const dense = activations.subarray(i * 4, i * 4 + 4);
      expect(predictor.predict({ dense, sparse: s.features.sparse })).toBe(head.predict({ dense, sparse: s.features.sparse }));
      expect(predictor.logitAt(activations, i * 4, s.features.sparse)).toBe(predictor.logit({ dense, sparse: s.features.sparse }));
    });
    // A row learning never touched reads the seeded starting table, as the learner does.
    expect(Array.from(version.tensors.embeddingIndices!)).not.toContain(9999);
    expect(predictor.predict({ dense: [0, 0, 0, 0], sparse: { indices: [9999] } })).toBe(head.predict({ dense: [0, 0, 0, 0], sparse: { indices: [9999] } }));
    expect(() => predictor.logitAt(activations, activations.length - 2)).toThrow(RangeError);
    expect(() => new OnlineHeadPredictor({ ...version, kind: 'ftrl' })).toThrow(/as an online head/);
    expect(() => new OnlineHeadLearner({ inputSize: 4, bits: 14, embeddingDim: 3, initStd: 0.2 }).restore(version)).toThrow(/learned on deep model "deep-1"/);
  });
});

describe('bandits', () => {
  it('draws Beta variates with the right mean and variance', () => {
    const random = mulberry32(1);
    const draws = Array.from({ length: 20_000 }, () => sampleBeta(2, 5, random));
    const mean = draws.reduce((a, b) => a + b, 0) / draws.length;
    const variance = draws.reduce((a, b) => a + (b - mean) ** 2, 0) / draws.length;
    expect(mean).toBeCloseTo(2 / 7, 2);
    expect(variance).toBeCloseTo((2 * 5) / (49 * 8), 3);
    const small = Array.from({ length: 20_000 }, () => sampleBeta(0.5, 0.5, random));
    expect(small.reduce((a, b) => a + b, 0) / small.length).toBeCloseTo(0.5, 1);
  });

  it('Thompson sampling concentrates on the best arm and still explores', () => {
    const random = mulberry32(8);
    const rates: Record<string, number> = { a: 0.05, b: 0.1, c: 0.3 };
    const bandit = new ThompsonSampling({ random });
    const arms = Object.keys(rates);
    const picks: Record<string, number> = { a: 0, b: 0, c: 0 };
    for (let t = 0; t < 3000; t++) {
      const arm = bandit.choose(arms);
      picks[arm]!++;
      bandit.update(arm, random() < rates[arm]! ? 1 : 0);
    }
    expect(picks.c! / 3000).toBeGreaterThan(0.85);
    expect(picks.a!).toBeGreaterThan(0);
    expect(bandit.stats('c').pulls).toBe(picks.c);
  });

  it('epsilon-greedy explores an epsilon share uniformly and otherwise exploits', () => {
    const random = mulberry32(12);
    const bandit = new EpsilonGreedy({ epsilon: 0.2, random });
    for (let t = 0; t < 50; t++) {
      bandit.update('good', 1);
      bandit.update('bad', 0);
    }
    const picks = { good: 0, bad: 0 };
    for (let t = 0; t < 10_000; t++) picks[bandit.choose(['good', 'bad']) as 'good' | 'bad']++;
    // Exploration picks each arm half the time: bad is chosen about epsilon / 2 of the time.
    expect(picks.bad / 10_000).toBeGreaterThan(0.08);
    expect(picks.bad / 10_000).toBeLessThan(0.12);
    expect(bandit.choose(['good', 'new'])).toBe('new');
    expect(() => bandit.choose([])).toThrow(/at least one arm/);
    expect(() => bandit.update('good', 2 as 1)).toThrow(/reward/);
  });
});

describe('pair hashing', () => {
  it('hashes name=value without building the string, also across buffer growth', () => {
    for (const [name, value] of [['a', 'b'], ['país', '日本'], ['n'.repeat(300), 'v'.repeat(500)], ['', '']]) {
      expect(hashPair(name!, value!, 9)).toBe(hashString(`${name}=${value}`, 9));
    }
  });
});
