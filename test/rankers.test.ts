import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { sigmoid } from '../models/learner.js';
import { rocAuc as auc } from '../models/metrics.js';
import { mulberry32 as seededRandom, sampleNormal as gaussian } from '../models/random.js';
import { exportOnnx } from '../models/rankers/export.js';
import {
  Ranker,
  type Example,
  type FeatureRow,
  type RankerKind,
  type RankerSpec,
} from '../models/rankers/ranker.js';
import { train } from '../models/rankers/trainer.js';

const KINDS: RankerKind[] = ['logistic-regression', 'factorization-machine', 'deepfm', 'embedding-mlp'];

function specOf(kind: RankerKind, nDense: number, vocabularies: number[], embeddingDim: number, hidden: number[]): RankerSpec {
  return {
    kind,
    denseFeatures: Array.from({ length: nDense }, (_, j) => `d${j}`),
    categoricalFields: vocabularies.map((vocabularySize, f) => ({ name: `c${f}`, vocabularySize })),
    embeddingDim,
    hidden,
  };
}

function randomRows(ranker: Ranker, n: number, random: () => number): FeatureRow[] {
  return Array.from({ length: n }, () => ({
    dense: Float32Array.from({ length: ranker.nDense }, () => gaussian(random)),
    categorical: Int32Array.from(ranker.categoricalFields, (f) => Math.floor(random() * f.vocabularySize)),
  }));
}

function randomizeParams(ranker: Ranker, random: () => number, scale: number): void {
  for (let i = 0; i < ranker.params.length; i++) ranker.params[i] = scale * gaussian(random);
}

describe('ranker gradients', () => {
  for (const kind of KINDS) {
    it(`${kind}: analytic gradient matches central differences`, () => {
      const random = seededRandom(7);
      const ranker = new Ranker(specOf(kind, 3, [4, 5], 3, [5, 4]));
      randomizeParams(ranker, random, 0.5);
      const examples: Example[] = randomRows(ranker, 6, random).map((row, i) => ({ ...row, label: i % 2 }));
      const grad = new Float64Array(ranker.params.length);
      ranker.lossAndGradient(examples, grad);
      const eps = 1e-6;
      let checked = 0;
      for (let i = 0; i < ranker.params.length; i++) {
        const saved = ranker.params[i]!;
        ranker.params[i] = saved + eps;
        const up = ranker.loss(examples);
        ranker.params[i] = saved - eps;
        const down = ranker.loss(examples);
        ranker.params[i] = saved;
        const numeric = (up - down) / (2 * eps);
        expect(Math.abs(numeric - grad[i]!), `param ${i}`).toBeLessThanOrEqual(1e-6 + 1e-4 * Math.abs(numeric));
        if (grad[i] !== 0) checked++;
      }
      // Most parameters are touched by six rows over tiny vocabularies, so the check is not vacuous.
      expect(checked).toBeGreaterThan(ranker.params.length / 2);
    });
  }
});

describe('ONNX export parity', () => {
  for (const kind of KINDS) {
    it(`${kind}: onnxruntime output matches the TypeScript forward pass within 1e-5`, async () => {
      const random = seededRandom(11);
      const ranker = new Ranker(specOf(kind, 10, [50, 7, 30, 3, 100], 8, [64, 32]), { seed: 3 });
      // Trained-looking weights: non-zero linear terms and embeddings large enough for the FM term to matter.
      randomizeParams(ranker, random, 0.1);
      const rows = randomRows(ranker, 64, random);
      const session = await ort.InferenceSession.create(exportOnnx(ranker));
      try {
        const dense = new Float32Array(rows.length * ranker.nDense);
        const categorical = new Int32Array(rows.length * ranker.nFields);
        rows.forEach((row, i) => {
          dense.set(row.dense, i * ranker.nDense);
          categorical.set(row.categorical, i * ranker.nFields);
        });
        const out = await session.run({
          dense: new ort.Tensor('float32', dense, [rows.length, ranker.nDense]),
          categorical: new ort.Tensor('int32', categorical, [rows.length, ranker.nFields]),
        });
        const logits = out.logit!.data as Float32Array;
        expect(out.logit!.dims).toEqual([rows.length, 1]);
        let maxDiff = 0;
        let maxLogit = 0;
        rows.forEach((row, i) => {
          const expected = ranker.logit(row);
          maxDiff = Math.max(maxDiff, Math.abs(expected - logits[i]!));
          maxLogit = Math.max(maxLogit, Math.abs(expected));
        });
        expect(maxLogit).toBeGreaterThan(0.1);
        expect(maxDiff).toBeLessThanOrEqual(1e-5);
      } finally {
        await session.release();
      }
    });
  }
});

describe('offline training', () => {
  // Labels drawn from a known logistic model over dense and categorical features: its true logits give the best AUC
  // any scorer can reach on the held-out set.
  function syntheticProblem(n: number, seed: number) {
    const random = seededRandom(seed);
    const nDense = 4;
    const vocabularies = [8, 5, 12];
    const wDense = [1.2, -0.8, 0.5, 0];
    const fieldEffects = vocabularies.map((v) => Array.from({ length: v }, () => gaussian(random)));
    const make = (count: number) => {
      const examples: Example[] = [];
      const trueLogits: number[] = [];
      for (let i = 0; i < count; i++) {
        const dense = Float32Array.from({ length: nDense }, () => gaussian(random));
        const categorical = Int32Array.from(vocabularies, (v) => Math.floor(random() * v));
        let z = -0.5;
        dense.forEach((x, j) => (z += wDense[j]! * x));
        categorical.forEach((c, f) => (z += fieldEffects[f]![c]!));
        trueLogits.push(z);
        examples.push({ dense, categorical, label: random() < sigmoid(z) ? 1 : 0 });
      }
      return { examples, trueLogits };
    };
    return { nDense, vocabularies, train: make(n), test: make(n / 2) };
  }

  it('logistic regression and DeepFM reach the optimum AUC within 0.01', () => {
    const problem = syntheticProblem(16000, 5);
    const labels = problem.test.examples.map((e) => e.label);
    const optimum = auc(problem.test.trueLogits, labels);
    for (const kind of ['logistic-regression', 'deepfm'] as const) {
      const ranker = new Ranker(specOf(kind, problem.nDense, problem.vocabularies, 4, [16, 8]));
      const report = train(ranker, problem.train.examples, { epochs: 4, batchSize: 128, learningRate: 0.01 });
      expect(report.epochLosses.at(-1)!).toBeLessThan(report.epochLosses[0]!);
      const learned = auc(problem.test.examples.map((e) => ranker.logit(e)), labels);
      expect(optimum - learned, kind).toBeLessThan(0.01);
    }
  });
});
