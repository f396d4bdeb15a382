import { lastValueFrom, of, toArray } from 'rxjs';
import { afterEach, describe, expect, it } from 'vitest';
import { batchOf } from '../operators/batch.js';
import type { DeadLetter } from '../operators/dead-letters.js';
import { scoreCandidates } from '../operators/score.js';
import { rankWithExploration } from '../models/exploration.js';
import { sigmoid } from '../models/learner.js';
import { ContractError, CONTRACT_KEY } from '../models/onnx/contract.js';
import { encodeModel, floatTensor, node, valueInfo } from '../models/onnx/proto.js';
import { contractOf, exportOnnx } from '../models/rankers/export.js';
import { Ranker, type FeatureRow } from '../models/rankers/ranker.js';
import { mulberry32 } from '../models/random.js';
import { Scorer } from '../models/scorer.js';
import { DENSE, FIELDS, LAYOUT, rankerOf, rowsOf } from './support/rankers.js';

function expectScores(actual: Float32Array, ranker: Ranker, rows: readonly FeatureRow[], wide?: ArrayLike<number>) {
  expect(actual.length).toBe(rows.length);
  rows.forEach((row, i) => expect(actual[i]).toBeCloseTo(sigmoid(ranker.logit(row) + (wide?.[i] ?? 0)), 5));
}

const open: Scorer[] = [];
async function scorerOf(bytes: Uint8Array, options: Partial<Parameters<typeof Scorer.create>[1]> = {}): Promise<Scorer> {
  const scorer = await Scorer.create(bytes, { layout: LAYOUT, maxCandidates: 64, ...options });
  open.push(scorer);
  return scorer;
}
afterEach(async () => {
  await Promise.all(open.splice(0).map((s) => s.close()));
});

describe('Scorer', () => {
  it('scores all candidates of a request like the TypeScript model, for int32 and int64 index inputs', async () => {
    const ranker = rankerOf('deepfm', 1);
    const rows = rowsOf(40, 2);
    const scorer = await scorerOf(exportOnnx(ranker), { session: { intraOpNumThreads: 1, allowSpinning: false } });
    expectScores(await scorer.score(rows), ranker, rows);
    expect(scorer.model.contract.modelKind).toBe('deepfm');

    const scorer64 = await scorerOf(exportOnnx(ranker, { categoricalDtype: 'int64' }));
    expect(scorer64.model.contract.categorical.dtype).toBe('int64');
    expectScores(await scorer64.score(rows), ranker, rows);
    // More candidates than the pooled buffers hold still score in one run.
    const many = rowsOf(200, 3);
    expectScores(await scorer.score(many), ranker, many);
  });

  it('adds the online wide logit to the deep logit', async () => {
    const ranker = rankerOf('factorization-machine', 3);
    const rows = rowsOf(10, 4);
    const wide = Float32Array.from(rows, (_, i) => (i - 5) / 2);
    const scorer = await scorerOf(exportOnnx(ranker), { wideLogit: () => wide });
    expectScores(await scorer.score(rows), ranker, rows, wide);
  });

  it('returns the final layer input when the model exports it, for an online head to fine-tune', async () => {
    const ranker = rankerOf('embedding-mlp', 6);
    const rows = rowsOf(12, 9);
    const scorer = await scorerOf(exportOnnx(ranker, { penultimateOutput: true }));
    const { penultimate, logits } = await scorer.scoreWith(rows.length, (dense, categorical) =>
      rows.forEach((row, i) => {
        dense.set(row.dense, i * DENSE.length);
        categorical.set(row.categorical, i * FIELDS.length);
      }),
    );
    const { weights, bias } = ranker.finalLayer();
    expect(penultimate).toHaveLength(rows.length * weights.length);
    rows.forEach((row, i) => {
      const h = ranker.penultimate(row);
      h.forEach((v, j) => expect(penultimate![i * weights.length + j]).toBeCloseTo(v, 5));
      // For an embedding MLP the final layer is the whole logit: b + w . h.
      expect(logits[i]).toBeCloseTo(h.reduce((sum, v, j) => sum + v * weights[j]!, bias), 5);
    });
    expect(() => exportOnnx(rankerOf('factorization-machine', 1), { penultimateOutput: true })).toThrow(/needs an MLP kind/);
  });

  it('scores an index outside a field vocabulary as the unknown index 0', async () => {
    const ranker = rankerOf('logistic-regression', 5);
    const scorer = await scorerOf(exportOnnx(ranker));
    const row = rowsOf(1, 6)[0]!;
    const outOfRange = { dense: row.dense, categorical: Int32Array.from([99, -3, 2]) };
    const asUnknown = { dense: row.dense, categorical: Int32Array.from([0, 0, 2]) };
    expectScores(await scorer.score([outOfRange]), ranker, [asUnknown]);

    // Fields of one shared size take another path through the check.
    const shared = FIELDS.map((f) => ({ ...f, vocabularySize: 20 }));
    const sameSized = new Ranker({ kind: 'deepfm', denseFeatures: DENSE, categoricalFields: shared, embeddingDim: 4, hidden: [8] }, { seed: 3 });
    const sameSizedScorer = await scorerOf(exportOnnx(sameSized));
    const beyond = { dense: row.dense, categorical: Int32Array.from([20, -1, 19]) };
    expectScores(await sameSizedScorer.score([beyond]), sameSized, [{ dense: row.dense, categorical: Int32Array.from([0, 0, 19]) }]);
  });

  it('skips its index check only for a fill that vouches for its indices', async () => {
    const ranker = rankerOf('deepfm', 4);
    const scorer = await scorerOf(exportOnnx(ranker));
    const rows = rowsOf(8, 5);
    const fill = (dense: Float32Array, categorical: Int32Array) =>
      rows.forEach((row, i) => {
        dense.set(row.dense, i * DENSE.length);
        categorical.set(row.categorical, i * FIELDS.length);
      });
    const vouched = await scorer.scoreWith(rows.length, fill, { indicesInRange: true });
    expectScores(vouched.scores, ranker, rows);
    // Proof that nothing checked: an index beyond the vocabulary reaches onnxruntime, which refuses the run.
    const beyond = (dense: Float32Array, categorical: Int32Array) => {
      fill(dense, categorical);
      categorical[1] = 99;
    };
    await expect(scorer.scoreWith(rows.length, beyond, { indicesInRange: true })).rejects.toThrow();
    expect((await scorer.scoreWith(rows.length, beyond)).scores).toHaveLength(rows.length);
  });

  it('refuses a model whose contract does not match the rows, naming the feature', async () => {
    const swapped = rankerOf('deepfm', 1, ['price', 'ctr_7d', 'age_days']);
    const error = await Scorer.create(exportOnnx(swapped), { layout: LAYOUT }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ContractError);
    expect((error as Error).message).toMatch(/dense feature 1: the model expects "ctr_7d" but the rows carry "age_days"/);
  });

  it('refuses a model without a declared contract', async () => {
    const bare = encodeModel({
      graphName: 'bare',
      nodes: [node('MatMul', ['dense', 'w'], ['logit'])],
      initializers: [floatTensor('w', [3, 1], [1, 2, 3])],
      inputs: [valueInfo('dense', 'float32', ['batch', 3])],
      outputs: [valueInfo('logit', 'float32', ['batch', 1])],
      metadata: {},
    });
    await expect(Scorer.create(bare, { layout: LAYOUT })).rejects.toThrow(`metadata_props has no "${CONTRACT_KEY}" entry`);
  });

  it('refuses a model whose graph disagrees with its own contract', async () => {
    // Declares the contract of a 3-feature model but takes 4 dense values.
    const ranker = rankerOf('logistic-regression', 1);
    const contract = contractOf(ranker);
    const lying = encodeModel({
      graphName: 'lying',
      nodes: [node('MatMul', ['dense', 'w'], ['logit']), node('Identity', ['categorical'], ['unused'])],
      initializers: [floatTensor('w', [4, 1], [1, 2, 3, 4])],
      inputs: [valueInfo('dense', 'float32', ['batch', 4]), valueInfo('categorical', 'int32', ['batch', 3])],
      outputs: [valueInfo('logit', 'float32', ['batch', 1]), valueInfo('unused', 'int32', ['batch', 3])],
      metadata: { [CONTRACT_KEY]: JSON.stringify(contract) },
    });
    await expect(Scorer.create(lying, { layout: LAYOUT })).rejects.toThrow(/input "dense" has shape \[batch, 4\].*\[batch, 3\]/);
  });

  it('keeps serving the old model when a swap brings a contract mismatch', async () => {
    const ranker = rankerOf('deepfm', 1);
    const rows = rowsOf(20, 7);
    const scorer = await scorerOf(exportOnnx(ranker), { version: 'v1' });
    const mismatched = new Ranker({
      kind: 'deepfm',
      denseFeatures: DENSE,
      categoricalFields: [...FIELDS, { name: 'hour', vocabularySize: 24 }],
    });
    await expect(scorer.swap(exportOnnx(mismatched), 'v2')).rejects.toThrow(
      /categorical field 3: the model expects "hour" but the rows carry nothing/,
    );
    await expect(scorer.swap(new Uint8Array([1, 2, 3, 4, 5]), 'v3')).rejects.toThrow();
    expect(scorer.model.version).toBe('v1');
    expectScores(await scorer.score(rows), ranker, rows);
  });

  it('finishes a request started before a swap on the version it started with', async () => {
    const before = rankerOf('deepfm', 21);
    const after = rankerOf('deepfm', 22);
    const rows = rowsOf(25, 12);
    const scorer = await scorerOf(exportOnnx(before), { version: 'before' });
    const inFlight = scorer.score(rows);
    const swapped = scorer.swap(exportOnnx(after), 'after');
    expect(scorer.model.version).toBe('before');
    expectScores(await inFlight, before, rows);
    expect((await swapped).version).toBe('after');
    expectScores(await scorer.score(rows), after, rows);
  });

  it('hot-swaps versions under concurrent scoring without losing or mis-scoring a request', async () => {
    const versions = new Map<string, Ranker>(
      ['a', 'b', 'c', 'd'].map((v, i) => [v, rankerOf(i % 2 ? 'deepfm' : 'embedding-mlp', 10 + i)]),
    );
    const bytes = new Map([...versions].map(([v, r]) => [v, exportOnnx(r)]));
    const scorer = await scorerOf(bytes.get('a')!, { version: 'a' });
    const rows = rowsOf(30, 8);
    const expected = new Map([...versions].map(([v, r]) => [v, rows.map((row) => sigmoid(r.logit(row)))]));

    const requests: Promise<{ scores: Float32Array; version: string }>[] = [];
    const fill = (dense: Float32Array, categorical: Int32Array) =>
      rows.forEach((row, i) => {
        dense.set(row.dense, i * DENSE.length);
        categorical.set(row.categorical, i * FIELDS.length);
      });
    const swaps: Promise<unknown>[] = [];
    const swapAt = new Map([[5, 'b'], [15, 'c'], [25, 'd'], [35, 'a'], [36, 'd']]);
    for (let wave = 0; wave < 40; wave++) {
      for (let r = 0; r < 10; r++) requests.push(scorer.scoreWith(rows.length, fill));
      const next = swapAt.get(wave);
      if (next) swaps.push(scorer.swap(bytes.get(next)!, next));
      await new Promise((resolve) => setImmediate(resolve));
    }
    const settled = await Promise.allSettled(requests);
    await Promise.all(swaps);
    expect(settled.filter((s) => s.status === 'rejected')).toEqual([]);
    const servedBy = new Set<string>();
    for (const result of settled) {
      const { scores, version } = (result as PromiseFulfilledResult<{ scores: Float32Array; version: string }>).value;
      servedBy.add(version);
      expected.get(version)!.forEach((p, i) => expect(scores[i]).toBeCloseTo(p, 5));
    }
    expect(settled).toHaveLength(400);
    expect(servedBy.size).toBeGreaterThanOrEqual(3);
    expect(scorer.model.version).toBe('d');
  });
});

describe('rankWithExploration', () => {
  const scores = Float32Array.from({ length: 50 }, (_, i) => (i * 37) % 50 / 50);

  it('ranks purely by score with no exploration share', () => {
    const { order, explored } = rankWithExploration(scores, { share: 0, strategy: 'epsilon-greedy' }, 10);
    expect(explored.every((e) => !e)).toBe(true);
    const sorted = Array.from(scores.keys()).sort((a, b) => scores[b]! - scores[a]!).slice(0, 10);
    expect(order).toEqual(sorted);
  });

  for (const strategy of ['epsilon-greedy', 'thompson'] as const) {
    it(`${strategy}: explores the configured share of slots and keeps the rest in score order`, () => {
      const random = mulberry32(9);
      let explorationPickedOutsideTop = 0;
      for (let trial = 0; trial < 50; trial++) {
        const { order, explored } = rankWithExploration(scores, { share: 0.3, strategy, random }, 10);
        expect(order).toHaveLength(10);
        expect(new Set(order).size).toBe(10);
        expect(explored.filter(Boolean)).toHaveLength(3);
        const exploited = order.filter((_, slot) => !explored[slot]);
        const exploitedScores = exploited.map((i) => scores[i]!);
        expect(exploitedScores).toEqual([...exploitedScores].sort((a, b) => b - a));
        const top10 = new Set(Array.from(scores.keys()).sort((a, b) => scores[b]! - scores[a]!).slice(0, 10));
        explorationPickedOutsideTop += order.filter((i, slot) => explored[slot] && !top10.has(i)).length;
      }
      expect(explorationPickedOutsideTop).toBeGreaterThan(0);
    });
  }

  it('thompson follows the given posteriors', () => {
    // Candidate 7 has a posterior far above the rest, so an exploration slot almost surely takes it.
    const posterior = (i: number) => (i === 7 ? { alpha: 500, beta: 1 } : { alpha: 1, beta: 500 });
    const flat = new Float32Array(20).fill(0.5);
    const { order, explored } = rankWithExploration(flat, { share: 1, strategy: 'thompson', posterior, random: mulberry32(3) }, 5);
    expect(explored.every(Boolean)).toBe(true);
    expect(order[0]).toBe(7);
  });
});

describe('scoreCandidates operator', () => {
  it('ranks each request in one batch out per batch in, and dead-letters requests that fail', async () => {
    const ranker = rankerOf('deepfm', 4);
    const scorer = await scorerOf(exportOnnx(ranker), { version: 'v7' });
    const catalogue = rowsOf(12, 11);
    type Request = { user: string; items: number[] };
    const letters: DeadLetter[] = [];
    const operator = scoreCandidates<Request, number>({
      scorer,
      assemble: (request) => {
        if (request.items.some((i) => !catalogue[i])) throw new Error(`unknown item in ${request.items.join(',')}`);
        return {
          candidates: request.items,
          fill: (dense, categorical) =>
            request.items.forEach((item, i) => {
              dense.set(catalogue[item]!.dense, i * DENSE.length);
              categorical.set(catalogue[item]!.categorical, i * FIELDS.length);
            }),
        };
      },
      slots: () => 3,
      deadLetters: { push: (letter) => letters.push(letter) },
      deadLetterOf: (request, reason) => ({ reason, raw: JSON.stringify(request), source: { topic: 'requests', partition: 0, offset: 0 } }),
    });
    const batches = [
      batchOf<Request>([{ user: 'u1', items: [0, 1, 2, 3, 4] }, { user: 'u2', items: [5, 99] }]),
      batchOf<Request>([]),
      batchOf<Request>([{ user: 'u3', items: [6, 7, 8, 9] }]),
    ];
    const out = await lastValueFrom(of(...batches).pipe(operator, toArray()));
    expect(out.map((b) => b.ticket)).toEqual(batches.map((b) => b.ticket));
    expect(out.map((b) => b.items.map((r) => r.request.user))).toEqual([['u1'], [], ['u3']]);
    expect(letters).toHaveLength(1);
    expect(letters[0]!.reason).toMatch(/scoring failed: unknown item/);
    const first = out[0]!.items[0]!;
    expect(first.modelVersion).toBe('v7');
    const best = [0, 1, 2, 3, 4].sort((a, b) => ranker.logit(catalogue[b]!) - ranker.logit(catalogue[a]!)).slice(0, 3);
    expect(first.ranked.map((r) => r.candidate)).toEqual(best);
    expect(first.ranked[0]!.score).toBeCloseTo(sigmoid(ranker.logit(catalogue[best[0]!]!)), 5);
    expect(operator.info.kind).toBe('score');

    const exploring = scoreCandidates<Request, number>({
      scorer,
      assemble: (request) => ({
        candidates: request.items,
        fill: (dense, categorical) =>
          request.items.forEach((item, i) => {
            dense.set(catalogue[item]!.dense, i * DENSE.length);
            categorical.set(catalogue[item]!.categorical, i * FIELDS.length);
          }),
      }),
      slots: () => 4,
      exploration: { share: 0.5, strategy: 'epsilon-greedy', random: mulberry32(5) },
      deadLetters: { push: (letter) => letters.push(letter) },
      deadLetterOf: (request, reason) => ({ reason, raw: JSON.stringify(request), source: { topic: 'requests', partition: 0, offset: 0 } }),
    });
    const [explored] = await lastValueFrom(
      of(batchOf<Request>([{ user: 'u4', items: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11] }])).pipe(exploring, toArray()),
    );
    const ranked = explored!.items[0]!.ranked;
    expect(ranked).toHaveLength(4);
    expect(ranked.filter((r) => r.explored)).toHaveLength(2);
    expect(exploring.info.params).toEqual({ exploration: 'epsilon-greedy@0.5' });
  });
});
