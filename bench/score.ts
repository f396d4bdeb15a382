/**
 * `score`: a DeepFM-size ranker (30 categorical fields, embedding dimension 8, MLP 256-128, 16 dense features) on
 * 100, 300 and 1000 candidates. Each timed request assembles its rows (user features plus per-item features from an
 * in-memory item table of one Float32/Int32 record per item; the feature cache is built separately) into the Scorer's
 * preallocated inputs and runs the model once. Interleaved with it, a bare `session.run` on already prepared tensors
 * of the same size gives the onnxruntime floor.
 */
import * as ort from 'onnxruntime-node';
import type { BenchSuite } from './run.js';
import { exportOnnx } from '../models/rankers/export.js';
import { Ranker } from '../models/rankers/ranker.js';
import { mulberry32, sampleNormal } from '../models/random.js';
import { Scorer, sessionOptionsOf, type ScorerSessionOptions } from '../models/scorer.js';

const USER_DENSE = 8;
const ITEM_DENSE = 8;
const USER_FIELDS = 6;
const ITEM_FIELDS = 24;
const VOCABULARY = 1000;

function percentile(sorted: Float64Array, q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

async function timeUs(work: () => Promise<unknown>): Promise<number> {
  const start = process.hrtime.bigint();
  await work();
  return Number(process.hrtime.bigint() - start) / 1e3;
}

export const run: BenchSuite['run'] = async ({ args, log }) => {
  const candidateCounts = (args.candidates ?? '100,300,1000').split(',').map(Number);
  const iterations = Number(args.iterations ?? 2000);
  const items = Number(args.items ?? 20000);
  const session: ScorerSessionOptions = {
    intraOpNumThreads: Number(args.threads ?? 1),
    allowSpinning: args.spinning === 'true',
  };
  const random = mulberry32(42);

  const denseFeatures = [
    ...Array.from({ length: USER_DENSE }, (_, j) => `user_dense_${j}`),
    ...Array.from({ length: ITEM_DENSE }, (_, j) => `item_dense_${j}`),
  ];
  const categoricalFields = [
    ...Array.from({ length: USER_FIELDS }, (_, f) => ({ name: `user_field_${f}`, vocabularySize: VOCABULARY })),
    ...Array.from({ length: ITEM_FIELDS }, (_, f) => ({ name: `item_field_${f}`, vocabularySize: VOCABULARY })),
  ];
  const ranker = new Ranker({ kind: 'deepfm', denseFeatures, categoricalFields, embeddingDim: 8, hidden: [256, 128] });
  const bytes = exportOnnx(ranker);
  const nDense = denseFeatures.length;
  const nFields = categoricalFields.length;
  log(`model: deepfm, ${nDense} dense, ${nFields} fields x ${VOCABULARY}, dim 8, MLP 256-128, ${(bytes.length / 1e6).toFixed(1)} MB`);

  // One record per item (dense values, then categorical indices) so an item's features share cache lines.
  const record = ITEM_DENSE + ITEM_FIELDS;
  const itemTable = new ArrayBuffer(items * record * 4);
  const itemDense = new Float32Array(itemTable);
  const itemCategorical = new Int32Array(itemTable);
  for (let item = 0; item < items; item++) {
    for (let j = 0; j < ITEM_DENSE; j++) itemDense[item * record + j] = sampleNormal(random);
    for (let f = 0; f < ITEM_FIELDS; f++) itemCategorical[item * record + ITEM_DENSE + f] = Math.floor(random() * VOCABULARY);
  }
  const userDense = Float32Array.from({ length: USER_DENSE }, () => sampleNormal(random));
  const userCategorical = Int32Array.from({ length: USER_FIELDS }, () => Math.floor(random() * VOCABULARY));

  const scorer = await Scorer.create(bytes, {
    layout: { denseFeatures, categoricalFields: categoricalFields.map((f) => f.name) },
    session,
    maxCandidates: Math.max(...candidateCounts),
  });
  const bare = await ort.InferenceSession.create(bytes, sessionOptionsOf(session));

  const p50Us: number[] = [];
  const p99Us: number[] = [];
  const p95Us: number[] = [];
  const rawOrtP50Us: number[] = [];
  const rawOrtP99Us: number[] = [];
  const overheadRatio: number[] = [];
  for (const count of candidateCounts) {
    const candidateSets = Array.from({ length: 64 }, () => Int32Array.from({ length: count }, () => Math.floor(random() * items)));
    let candidates = candidateSets[0]!;
    const fill = (dense: Float32Array, categorical: Int32Array) => {
      // Element loops rather than subarray().set(): rows are short, and a subarray allocates.
      for (let i = 0; i < count; i++) {
        const item = candidates[i]!;
        let at = i * nDense;
        for (let j = 0; j < USER_DENSE; j++) dense[at++] = userDense[j]!;
        for (let j = 0, from = item * record; j < ITEM_DENSE; j++) dense[at++] = itemDense[from + j]!;
        at = i * nFields;
        for (let f = 0; f < USER_FIELDS; f++) categorical[at++] = userCategorical[f]!;
        for (let f = 0, from = item * record + ITEM_DENSE; f < ITEM_FIELDS; f++) categorical[at++] = itemCategorical[from + f]!;
      }
    };
    // The bare runs see the same candidate sets, prepared ahead, so both touch the same embedding rows.
    const preparedFeeds = candidateSets.map((set) => {
      candidates = set;
      const dense = new Float32Array(count * nDense);
      const categorical = new Int32Array(count * nFields);
      fill(dense, categorical);
      return {
        dense: new ort.Tensor('float32', dense, [count, nDense]),
        categorical: new ort.Tensor('int32', categorical, [count, nFields]),
      };
    });
    const rounds = count >= 1000 ? Math.max(200, iterations / 4) : iterations;
    const warmup = Math.min(200, rounds);
    const scored = new Float64Array(rounds);
    const raw = new Float64Array(rounds);
    for (let r = -warmup; r < rounds; r++) {
      const set = (r + warmup) % candidateSets.length;
      candidates = candidateSets[set]!;
      // Alternate which goes first so neither always finds the caches warmed by the other.
      const scorerFirst = r % 2 === 0;
      if (!scorerFirst) raw[Math.max(r, 0)] = await timeUs(() => bare.run(preparedFeeds[set]!));
      const scoredUs = await timeUs(() => scorer.scoreWith(count, fill));
      if (scorerFirst) raw[Math.max(r, 0)] = await timeUs(() => bare.run(preparedFeeds[set]!));
      if (r >= 0) scored[r] = scoredUs;
    }
    scored.sort();
    raw.sort();
    const p50 = percentile(scored, 0.5);
    const rawP50 = percentile(raw, 0.5);
    p50Us.push(Math.round(p50));
    p99Us.push(Math.round(percentile(scored, 0.99)));
    p95Us.push(Math.round(percentile(scored, 0.95)));
    rawOrtP50Us.push(Math.round(rawP50));
    rawOrtP99Us.push(Math.round(percentile(raw, 0.99)));
    overheadRatio.push(Number((p50 / rawP50).toFixed(3)));
    log(
      `${count} candidates: scorer p50 ${p50Us.at(-1)} us p95 ${p95Us.at(-1)} us p99 ${p99Us.at(-1)} us; bare session.run p50 ${rawOrtP50Us.at(-1)} us ` +
        `p99 ${rawOrtP99Us.at(-1)} us; overhead x${overheadRatio.at(-1)} (${rounds} requests)`,
    );
  }
  // onnxruntime-node builds a session synchronously on the main thread, so a swap stalls the event loop once, off
  // any request's path but not off the thread: measure the longest stall a swap causes.
  const nextVersion = exportOnnx(new Ranker(ranker, { seed: 2 }));
  let longestStallUs = 0;
  let ticking = true;
  const ticker = (async () => {
    let last = process.hrtime.bigint();
    while (ticking) {
      await new Promise((resolve) => setImmediate(resolve));
      const now = process.hrtime.bigint();
      longestStallUs = Math.max(longestStallUs, Number(now - last) / 1e3);
      last = now;
    }
  })();
  await scorer.swap(nextVersion, 'swapped');
  ticking = false;
  await ticker;
  log(`swap of a ${(bytes.length / 1e6).toFixed(1)} MB model: longest event-loop stall ${Math.round(longestStallUs)} us`);
  await scorer.close();
  await bare.release();
  return {
    suite: 'score',
    candidates: candidateCounts,
    p50Us,
    p99Us,
    rawOrtP50Us,
    overheadRatio,
    rawOrtP99Us,
    p95Us,
    swapStallUs: Math.round(longestStallUs),
    intraOpNumThreads: session.intraOpNumThreads,
    featureSource: 'in-memory item table, one Float32/Int32 record per item (stand-in: the feature cache is built separately)',
  };
};
