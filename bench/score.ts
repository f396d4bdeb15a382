/**
 * `score`: a DeepFM-size ranker (30 categorical fields, embedding dimension 8, MLP 256-128, the 40 default dense
 * features) on 100, 300 and 1000 candidates. Each timed request assembles its rows the way serving does: the real
 * FeatureCache (populated with item metadata and a stream of behaviour events) looks up the user's and every
 * candidate's 40 features straight into the Scorer's preallocated dense input, and the categorical fields (user
 * fields plus per-item fields from an item table) are written next to them; then the model runs once. Interleaved
 * with it, a bare `session.run` on already prepared tensors of the same size gives the onnxruntime floor.
 */
import * as ort from 'onnxruntime-node';
import type { BenchSuite } from './run.js';
import { exportOnnx } from '../models/rankers/export.js';
import { Ranker } from '../models/rankers/ranker.js';
import { mulberry32 } from '../models/random.js';
import { Scorer, sessionOptionsOf, type ScorerSessionOptions } from '../models/scorer.js';
import { FeatureCache } from '../operators/features/cache.js';
import { FeatureRows } from '../operators/features/rows.js';
import type { BehaviourType } from '../schema/events.js';

const USER_FIELDS = 6;
const ITEM_FIELDS = 24;
const VOCABULARY = 1000;
const GENRES = ['drama', 'comedy', 'news', 'sport', 'music', 'science', 'travel', 'food'];
const HOUR = 3_600_000;

function percentile(sorted: Float64Array, q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

async function timeUs(work: () => Promise<unknown>): Promise<number> {
  const start = process.hrtime.bigint();
  await work();
  return Number(process.hrtime.bigint() - start) / 1e3;
}

/**
 * A cache that has seen `items` items and `events` behaviour events of `users` users over the week up to `now`, the
 * newest at `now` itself: like a live cache, it has followed the stream up to the moment it is asked.
 */
function populatedCache(items: number, users: number, events: number, now: number, random: () => number): FeatureCache {
  const cache = new FeatureCache({ item: { attributeFields: ['genre'] } });
  for (let item = 0; item < items; item++) {
    cache.update({ type: 'item', itemId: `item-${item}`, ts: now - 7 * 24 * HOUR + item, fields: { genre: GENRES[item % GENRES.length]! } });
  }
  const types: BehaviourType[] = ['impression', 'impression', 'impression', 'click', 'view', 'purchase'];
  for (let e = 0; e < events; e++) {
    const ts = now - 7 * 24 * HOUR + Math.ceil(((e + 1) / events) * 7 * 24 * HOUR);
    // Skewed popularity, as in real catalogues, so window counts and co-visitation are not uniform noise.
    const item = Math.floor(items * random() ** 3);
    cache.update({
      id: `e${e}`,
      type: types[Math.floor(random() * types.length)]!,
      userId: `user-${Math.floor(random() * users)}`,
      itemId: `item-${item}`,
      ts,
    });
  }
  return cache;
}

export const run: BenchSuite['run'] = async ({ args, log }) => {
  const candidateCounts = (args.candidates ?? '100,300,1000').split(',').map(Number);
  const iterations = Number(args.iterations ?? 2000);
  const items = Number(args.items ?? 20000);
  const users = Number(args.users ?? 2000);
  const events = Number(args.events ?? 200000);
  const session: ScorerSessionOptions = {
    intraOpNumThreads: Number(args.threads ?? 1),
    allowSpinning: args.spinning === 'true',
  };
  const random = mulberry32(42);
  const now = Date.UTC(2026, 0, 15, 12);

  const cache = populatedCache(items, users, events, now, random);
  const denseFeatures = [...cache.names];
  const categoricalFields = [
    ...Array.from({ length: USER_FIELDS }, (_, f) => ({ name: `user_field_${f}`, vocabularySize: VOCABULARY })),
    ...Array.from({ length: ITEM_FIELDS }, (_, f) => ({ name: `item_field_${f}`, vocabularySize: VOCABULARY })),
  ];
  const ranker = new Ranker({ kind: 'deepfm', denseFeatures, categoricalFields, embeddingDim: 8, hidden: [256, 128] });
  const bytes = exportOnnx(ranker);
  const nDense = denseFeatures.length;
  const nFields = categoricalFields.length;
  log(
    `model: deepfm, ${nDense} dense (FeatureCache defaults), ${nFields} fields x ${VOCABULARY}, dim 8, MLP 256-128, ` +
      `${(bytes.length / 1e6).toFixed(1)} MB; cache: ${items} items, ${users} users, ${events} events`,
  );

  // Categorical fields per item, one contiguous record each so an item's indices share cache lines, in 16 bits as the
  // feature cache keeps categorical metadata: 48 bytes an item.
  const itemCategorical = Uint16Array.from({ length: items * ITEM_FIELDS }, () => Math.floor(random() * VOCABULARY));
  const userCategorical = Int32Array.from({ length: USER_FIELDS }, () => Math.floor(random() * VOCABULARY));
  // The cache writes straight into the Scorer's dense buffer through this view: no copy between lookup and run.
  const rowsView = new FeatureRows(cache.names, 0);

  const layout = { denseFeatures, categoricalFields: categoricalFields.map((f) => f.name) };
  const scorer = await Scorer.create(bytes, {
    layout,
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
  /** Time of the row assembly alone (cache lookup plus categorical fields) inside the timed requests. */
  const assemblyP50Us: number[] = [];
  /** p50 of each request's time without its row assembly, over bare onnxruntime: the Scorer's own overhead. */
  const scorerOverheadRatio: number[] = [];
  for (const count of candidateCounts) {
    const candidateSets = Array.from({ length: 64 }, () => {
      const numbers = Int32Array.from({ length: count }, () => Math.floor(random() * items));
      return { numbers, ids: Array.from(numbers, (n) => `item-${n}`), userId: `user-${Math.floor(random() * users)}` };
    });
    let candidates = candidateSets[0]!;
    let assemblyUs = 0;
    const fill = (dense: Float32Array, categorical: Int32Array) => {
      const started = process.hrtime.bigint();
      rowsView.values = dense;
      const rows = cache.lookup(candidates.userId, candidates.ids, { ts: now, fields: { device: 'mobile' } }, rowsView);
      if (rows !== rowsView) throw new Error('the feature cache did not write into the scorer buffer');
      // As in the cache's lookup, first a pass with no iteration waiting for another: each candidate's first and last
      // field, which brings in the lines of its record with all candidates' misses in flight together.
      for (let i = 0, at = USER_FIELDS; i < count; i++, at += nFields) {
        const from = candidates.numbers[i]! * ITEM_FIELDS;
        categorical[at] = itemCategorical[from]!;
        categorical[at + ITEM_FIELDS - 1] = itemCategorical[from + ITEM_FIELDS - 1]!;
      }
      // Element loops rather than subarray().set(): rows are short, and a subarray allocates.
      for (let i = 0, at = 0; i < count; i++) {
        for (let f = 0; f < USER_FIELDS; f++) categorical[at++] = userCategorical[f]!;
        for (let f = 0, from = candidates.numbers[i]! * ITEM_FIELDS; f < ITEM_FIELDS; f++) categorical[at++] = itemCategorical[from + f]!;
      }
      assemblyUs = Number(process.hrtime.bigint() - started) / 1e3;
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
    const assembly = new Float64Array(rounds);
    const withoutAssembly = new Float64Array(rounds);
    for (let r = -warmup; r < rounds; r++) {
      const set = (r + warmup) % candidateSets.length;
      candidates = candidateSets[set]!;
      // Alternate which goes first so neither always finds the caches warmed by the other.
      const scorerFirst = r % 2 === 0;
      if (!scorerFirst) raw[Math.max(r, 0)] = await timeUs(() => bare.run(preparedFeeds[set]!));
      // The fill's indices are in range by construction, as serving's hashed item indices are.
      const scoredUs = await timeUs(() => scorer.scoreWith(count, fill, { indicesInRange: true }));
      if (scorerFirst) raw[Math.max(r, 0)] = await timeUs(() => bare.run(preparedFeeds[set]!));
      if (r >= 0) {
        scored[r] = scoredUs;
        assembly[r] = assemblyUs;
        withoutAssembly[r] = scoredUs - assemblyUs;
      }
    }
    scored.sort();
    raw.sort();
    assembly.sort();
    withoutAssembly.sort();
    const p50 = percentile(scored, 0.5);
    const rawP50 = percentile(raw, 0.5);
    p50Us.push(Math.round(p50));
    p99Us.push(Math.round(percentile(scored, 0.99)));
    p95Us.push(Math.round(percentile(scored, 0.95)));
    rawOrtP50Us.push(Math.round(rawP50));
    rawOrtP99Us.push(Math.round(percentile(raw, 0.99)));
    overheadRatio.push(Number((p50 / rawP50).toFixed(3)));
    assemblyP50Us.push(Math.round(percentile(assembly, 0.5)));
    scorerOverheadRatio.push(Number((percentile(withoutAssembly, 0.5) / rawP50).toFixed(3)));
    log(
      `${count} candidates: scorer p50 ${p50Us.at(-1)} us p95 ${p95Us.at(-1)} us p99 ${p99Us.at(-1)} us; bare session.run p50 ${rawOrtP50Us.at(-1)} us ` +
        `p99 ${rawOrtP99Us.at(-1)} us; overhead x${overheadRatio.at(-1)}; row assembly p50 ${assemblyP50Us.at(-1)} us, ` +
        `without it x${scorerOverheadRatio.at(-1)} (${rounds} requests)`,
    );
  }
  // onnxruntime-node builds a session synchronously on the thread that loads it: on the main thread a swap stalls the
  // event loop once (off any request's path, not off the thread); on a scoring thread it should not.
  const nextVersion = exportOnnx(new Ranker(ranker, { seed: 2 }));
  const longestStallWhile = async (work: () => Promise<unknown>): Promise<number> => {
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
    await work();
    ticking = false;
    await ticker;
    return Math.round(longestStallUs);
  };
  const swapStallUs = await longestStallWhile(() => scorer.swap(nextVersion, 'swapped'));
  await scorer.close();
  const threaded = await Scorer.create(bytes, { layout, session, thread: 'worker' });
  const swapStarted = performance.now();
  const workerSwapStallUs = await longestStallWhile(() => threaded.swap(nextVersion, 'swapped'));
  const swapMs = performance.now() - swapStarted;
  await threaded.close();
  // On a shared machine the loop also stalls when the OS runs something else: the same wait without a swap.
  const idleStallUs = await longestStallWhile(() => new Promise((resolve) => setTimeout(resolve, swapMs)));
  log(
    `swap of a ${(bytes.length / 1e6).toFixed(1)} MB model: longest event-loop stall ${swapStallUs} us on the main thread, ` +
      `${workerSwapStallUs} us with a scoring thread (${Math.round(swapMs)} ms to load; ${idleStallUs} us idle over as long)`,
  );
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
    assemblyP50Us,
    scorerOverheadRatio,
    swapStallUs,
    workerSwapStallUs,
    idleStallUs,
    intraOpNumThreads: session.intraOpNumThreads,
    featureSource: `FeatureCache.lookup of ${nDense} features (${items} items, ${users} users, ${events} events) plus ${nFields} categorical fields`,
  };
};
