/**
 * `learn` suite: FTRL learning throughput and the pause a model swap causes to concurrent scoring.
 *
 * ftrlSamplesPerSec: FTRL-Proximal (2^20 coordinates, intercept, L1 and L2) learning pre-hashed samples of
 * `featuresPerSample` one-hot features on one core, after a warm-up pass; the best of three timed rounds, since the
 * machine may be shared. `ftrlWithHashingSamplesPerSec` also hashes each sample's named features (murmur3 of
 * `name=value`) on every learn.
 *
 * swapP99Us: the main thread scores requests back to back (each `candidates` candidates through the FtrlPredictor of
 * the current version), yielding to the event loop between requests as a server does. A worker thread stands in for
 * the models-topic consumer: every `swapIntervalMs` it decodes an encoded version (the bytes a real export gives, from
 * the model trained here) into dense weights in a free slot of three shared buffers. The main thread's message
 * handler wraps that slot in a predictor, swaps one reference and records the served slot in a shared integer; the
 * worker writes only once its last version is served, and only to a slot not served. The gap between the end of one
 * request and the start of the next is recorded; gaps during which a swap happened are the swap pauses, and
 * swapP99Us is their p99.
 *
 * For reading it on a shared machine: `idleGapP99Us` is the same gap with no swap (the event-loop turn itself).
 * Between swaps the worker sends controls (the same decoding work and a message, but no swap); `controlGapP99Us` is
 * the gap those cause, so the swap's own cost is swapP99Us against controlGapP99Us, not against the idle gap.
 * `swapHandlerP99Us` is the time inside the swap handler. `inlineSwapP99Us` is the pause when the scoring thread
 * decodes the version itself, which is why decoding belongs off the scoring thread. Buffer reuse matters too:
 * transferring a fresh 4 MiB buffer per version made the scoring thread's collector pause scoring (`gcP99Us` is the
 * collector's p99 pause during the swaps).
 *
 * The online head (EDDY_ONLINE_LEARNER=head), on the serving DeepFM (the 40 default features plus the item, dimension
 * 8, MLP 256-128): `headSamplesPerSec` is the trainer's per-sample work, the TypeScript forward pass to the
 * penultimate activations plus hashing the row plus one AdaGrad step; `headSwapP99Us` is what a head swap costs the
 * serving thread (decoding a published version and building its predictor); `headScoreUsPer100` is the head's share
 * of scoring 100 candidates once onnxruntime has returned their activations.
 */
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { PerformanceObserver } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';
import { FeatureHasher } from '../models/hashing.js';
import { decodeModelVersion, encodeModelVersion, type Sample } from '../models/learner.js';
import { FtrlLearner, FtrlPredictor, ftrlDenseWeights, ftrlPredictor } from '../models/learners/ftrl.js';
import { OnlineHeadLearner, OnlineHeadPredictor } from '../models/learners/online-head.js';
import { mulberry32, sampleNormal } from '../models/random.js';
import { Ranker } from '../models/rankers/ranker.js';
import { RowEncoder } from '../models/row-features.js';
import { DEFAULT_FEATURE_NAMES } from '../operators/features/config.js';

interface Options {
  args: Record<string, string>;
  log: (line: string) => void;
}

function percentile(values: number[], q: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!;
}

const maxOf = (values: number[]) => values.reduce((a, b) => Math.max(a, b), 0);

const round = (x: number, digits = 1) => Math.round(x * 10 ** digits) / 10 ** digits;

function namedSamples(count: number, featuresPerSample: number, seed: number) {
  const random = mulberry32(seed);
  return Array.from({ length: count }, () => {
    const fields: Record<string, string> = {};
    let signal = 0;
    for (let f = 0; f < featuresPerSample; f++) {
      // Zipf-ish vocabularies: a few values are common, most are rare, as with item and user ids.
      const value = Math.floor(Math.pow(random(), 3) * (f < 2 ? 100_000 : 1000));
      fields[`f${f}`] = String(value);
      signal += value % 7 === 0 ? 0.8 : value % 5 === 0 ? -0.6 : 0;
    }
    const label: 0 | 1 = random() < 1 / (1 + Math.exp(-(signal - 1))) ? 1 : 0;
    return { fields, label };
  });
}

function measureHead(log: (line: string) => void): { headSamplesPerSec: number; headSwapP99Us: number; headScoreUsPer100: number } {
  const items = 10_000;
  const deep = new Ranker({ kind: 'deepfm', denseFeatures: DEFAULT_FEATURE_NAMES, categoricalFields: [{ name: 'item', vocabularySize: items }], embeddingDim: 8, hidden: [256, 128] });
  const last = deep.finalLayer();
  const bits = 18;
  const head = new OnlineHeadLearner({ inputSize: last.weights.length, initialWeights: last.weights, initialBias: last.bias, bits, base: 'bench' });
  const encoder = new RowEncoder({ bits });
  const random = mulberry32(11);
  const names = DEFAULT_FEATURE_NAMES;
  const samples = Array.from({ length: 3000 }, () => ({
    values: Array.from(names, () => Math.fround(Math.abs(sampleNormal(random)))),
    item: Math.floor(random() * items),
    label: (random() < 0.1 ? 1 : 0) as 0 | 1,
  }));
  const dense = new Float64Array(names.length);
  const categorical = new Int32Array(1);
  const learnAll = () => {
    for (const s of samples) {
      dense.set(s.values);
      categorical[0] = s.item;
      head.learn({ features: { dense: deep.penultimate({ dense, categorical }), sparse: encoder.encode(names, s.values, `item-${s.item}`) }, label: s.label });
    }
  };
  learnAll();
  let best = 0;
  for (let round = 0; round < 3; round++) {
    const start = performance.now();
    learnAll();
    best = Math.max(best, samples.length / ((performance.now() - start) / 1000));
  }
  const encoded = encodeModelVersion(head.export({ model: 'bench', version: 'h1', parent: null }));
  const swapUs: number[] = [];
  let predictor = new OnlineHeadPredictor(decodeModelVersion(encoded));
  for (let i = 0; i < 50; i++) {
    const start = performance.now();
    predictor = new OnlineHeadPredictor(decodeModelVersion(encoded));
    swapUs.push((performance.now() - start) * 1000);
  }
  const h = new Float32Array(100 * last.weights.length);
  for (let i = 0; i < h.length; i++) h[i] = Math.abs(sampleNormal(random));
  const width = last.weights.length;
  const scoreUs: number[] = [];
  let checksum = 0;
  for (let r = 0; r < 300; r++) {
    const start = performance.now();
    for (let i = 0; i < 100; i++) {
      const s = samples[(r * 100 + i) % samples.length]!;
      checksum += predictor.logitAt(h, i * width, encoder.encode(names, s.values, `item-${s.item}`));
    }
    scoreUs.push((performance.now() - start) * 1000);
  }
  if (!Number.isFinite(checksum)) throw new Error('head scores are not finite');
  const result = { headSamplesPerSec: Math.round(best), headSwapP99Us: round(percentile(swapUs, 0.99)), headScoreUsPer100: round(percentile(scoreUs, 0.5)) };
  log(`online head on a DeepFM 40+item, 256-128: ${result.headSamplesPerSec.toLocaleString()} samples/s learned (forward pass + hashing + step); ` +
      `swap p99 ${result.headSwapP99Us} us (${(encoded.length / 1024).toFixed(0)} KiB version); head scoring of 100 candidates p50 ${result.headScoreUsPer100} us`);
  return result;
}

async function measureSwaps(
  encoded: string,
  bits: number,
  candidates: readonly Sample['features'][],
  swaps: number,
  swapIntervalMs: number,
): Promise<{
  swapGaps: number[];
  idleGaps: number[];
  controlGaps: number[];
  requests: number;
  gcPauses: number[];
  handlerUs: number[];
}> {
  const slots = Array.from({ length: 3 }, () => new SharedArrayBuffer(4 * (2 ** bits + 1)));
  const views = slots.map((buffer) => new Float32Array(buffer));
  const serving = new SharedArrayBuffer(4);
  const servingSlot = new Int32Array(serving);
  let predictor = new FtrlPredictor(ftrlDenseWeights(decodeModelVersion(encoded), views[0]), bits);
  let swappedSinceLastRequest = false;
  let received = 0;
  // The worker registers tsx's loader itself: Node 20 neither passes the main thread's loader hooks to workers nor
  // honours `--import tsx` in a worker's execArgv.
  const entry = fileURLToPath(new URL('./_learn-swap-worker.ts', import.meta.url));
  const tsxApi = createRequire(import.meta.url).resolve('tsx/cjs/api');
  const worker = new Worker(`require(${JSON.stringify(tsxApi)}).register(); require(${JSON.stringify(entry)});`, {
    eval: true,
    workerData: { encoded, intervalMs: swapIntervalMs, swaps, slots, serving, startDelayMs: 500 },
  });
  const handlerUs: number[] = [];
  let controlSinceLastRequest = false;
  worker.on('message', (message: { slot: number }) => {
    if (message.slot < 0) {
      controlSinceLastRequest = true;
      return;
    }
    const handlerStart = performance.now();
    // The swap: one reference. Scoring is synchronous per request, so no request still reads the previous slot,
    // and the worker may reuse it as soon as the serving slot says so.
    predictor = new FtrlPredictor(views[message.slot]!, bits);
    Atomics.store(servingSlot, 0, message.slot);
    swappedSinceLastRequest = true;
    received++;
    handlerUs.push((performance.now() - handlerStart) * 1000);
  });
  const gcPauses: number[] = [];
  const gcObserver = new PerformanceObserver((list) => {
    if (received > 0) {
      for (const entry of list.getEntries()) {
        gcPauses.push(entry.duration * 1000);
      }
    }
  });
  gcObserver.observe({ entryTypes: ['gc'] });
  const swapGaps: number[] = [];
  const controlGaps: number[] = [];
  // Preallocated, so recording half a million idle gaps does not itself make garbage for the collector.
  const idle = new Float64Array(4_000_000);
  let idleCount = 0;
  let requests = 0;
  let checksum = 0;
  let lastEnd = performance.now();
  // A callback loop rather than `await` per request: one Immediate per request and no promises, as little
  // allocation on the scoring thread as the scoring itself needs.
  await new Promise<void>((resolve, reject) => {
    worker.once('error', (e) => reject(new Error('swap worker failed', { cause: e })));
    const request = () => {
      const start = performance.now();
      const gapUs = (start - lastEnd) * 1000;
      if (swappedSinceLastRequest) swapGaps.push(gapUs);
      else if (controlSinceLastRequest) controlGaps.push(gapUs);
      else if (idleCount < idle.length) idle[idleCount++] = gapUs;
      swappedSinceLastRequest = false;
      controlSinceLastRequest = false;
      const current = predictor;
      // A local sum: adding to the captured `checksum` per candidate would box a heap number each time.
      let sum = 0;
      for (let c = 0; c < candidates.length; c++) sum += current.predict(candidates[c]!);
      checksum += sum;
      requests++;
      lastEnd = performance.now();
      if (received < swaps) setImmediate(request);
      else resolve();
    };
    setImmediate(request);
  });
  const idleGaps = Array.from(idle.subarray(0, idleCount));
  await worker.terminate();
  gcObserver.disconnect();
  if (!Number.isFinite(checksum)) throw new Error('scores were not finite');
  return { swapGaps, idleGaps, controlGaps, requests, gcPauses, handlerUs };
}

export async function run({ args, log }: Options): Promise<Record<string, unknown>> {
  const featuresPerSample = Number(args.features ?? 20);
  const sampleCount = Number(args.samples ?? 200_000);
  const passes = Number(args.passes ?? 10);
  const bits = 20;
  const swaps = Number(args.swaps ?? 200);
  const swapIntervalMs = Number(args.swapIntervalMs ?? 20);
  const candidateCount = Number(args.candidates ?? 100);

  const hasher = new FeatureHasher({ bits });
  const samples: Sample[] = [];
  // One buffer for every sample's indices keeps the heap to a few objects per sample.
  const allIndices = new Uint32Array(sampleCount * featuresPerSample);
  const scratchValues = new Float32Array(featuresPerSample);
  let hashingSeconds = 0;
  const hashedLearner = new FtrlLearner({ bits, alpha: 0.1, beta: 1, l1: 1, l2: 1 });
  // Named samples are made in blocks so the heap stays small for the swap measurement later.
  for (let block = 0; block < sampleCount / 10_000; block++) {
    const named = namedSamples(10_000, featuresPerSample, block + 1);
    const start = performance.now();
    for (const { fields, label } of named) {
      const at = samples.length * featuresPerSample;
      // Hashing straight into the sample store: no arrays allocated per sample. Every field here is categorical, so
      // every value is 1 and the sample needs only its indices.
      const count = hasher.hashInto(fields, allIndices.subarray(at, at + featuresPerSample), scratchValues);
      const indices = allIndices.subarray(at, at + count);
      hashedLearner.learn({ features: { indices }, label });
      samples.push({ features: { indices }, label });
    }
    // The first block warms the JIT up and is not timed.
    if (block > 0) hashingSeconds += (performance.now() - start) / 1000;
  }
  const withHashing = (samples.length - 10_000) / hashingSeconds;
  log(`ftrl with hashing: ${Math.round(withHashing).toLocaleString()} samples/s`);

  const learner = new FtrlLearner({ bits, alpha: 0.1, beta: 1, l1: 1, l2: 1 });
  for (const sample of samples) learner.learn(sample);
  let best = 0;
  for (let round = 0; round < 3; round++) {
    const start = performance.now();
    for (let pass = 0; pass < passes; pass++) for (const sample of samples) learner.learn(sample);
    const rate = (passes * samples.length) / ((performance.now() - start) / 1000);
    log(`ftrl: ${Math.round(rate).toLocaleString()} samples/s (${passes} x ${samples.length} pre-hashed samples)`);
    best = Math.max(best, rate);
  }

  const version = learner.export({ model: 'bench', version: 'v1', parent: null });
  const encoded = encodeModelVersion(version);
  log(`model: ${version.tensors.weightIndices!.length} non-zero weights, ${(encoded.length / 1024).toFixed(0)} KiB encoded`);

  const candidates = samples.slice(0, candidateCount).map((s) => ({ indices: Uint32Array.from(s.features.indices) }));
  // What the scoring thread holds while versions swap: the candidates and one model, not the training set.
  samples.length = 0;
  const { swapGaps, idleGaps, controlGaps, requests, gcPauses, handlerUs } = await measureSwaps(encoded, bits, candidates, swaps, swapIntervalMs);
  log(`gc during swaps: ${gcPauses.length} pauses, p99 ${round(percentile(gcPauses, 0.99))} us, max ${round(maxOf(gcPauses))} us`);
  const longShare = (gaps: number[]) => gaps.filter((g) => g > 1000).length / gaps.length;
  log(`control (same worker work, no swap): gap p50 ${round(percentile(controlGaps, 0.5))} us, p99 ${round(percentile(controlGaps, 0.99))} us`);
  log(`gaps over 1 ms: ${(100 * longShare(swapGaps)).toFixed(2)}% of swap gaps, ${(100 * longShare(controlGaps)).toFixed(2)}% of control gaps, ${(100 * longShare(idleGaps)).toFixed(3)}% of idle gaps (idle max ${round(maxOf(idleGaps))} us); swap handler p99 ${round(percentile(handlerUs, 0.99))} us`);
  log(`swaps: ${swapGaps.length} during ${requests} requests; swap gap p50 ${round(percentile(swapGaps, 0.5))} us, p99 ${round(percentile(swapGaps, 0.99))} us, max ${round(maxOf(swapGaps))} us; idle gap p99 ${round(percentile(idleGaps, 0.99))} us`);

  const inlineGaps: number[] = [];
  let inlinePredictor = ftrlPredictor(version);
  for (let i = 0; i < 50; i++) {
    const start = performance.now();
    inlinePredictor = ftrlPredictor(decodeModelVersion(encoded));
    inlineGaps.push((performance.now() - start) * 1000);
  }
  if (!(inlinePredictor.predict(candidates[0]!) > 0)) throw new Error('inline predictor gave no score');
  log(`inline decode + swap: p99 ${round(percentile(inlineGaps, 0.99))} us`);

  const headFigures = measureHead(log);

  return {
    suite: 'learn',
    ftrlSamplesPerSec: Math.round(best),
    featuresPerSample,
    swapP99Us: round(percentile(swapGaps, 0.99)),
    ftrlWithHashingSamplesPerSec: Math.round(withHashing),
    swapMaxUs: round(maxOf(swapGaps)),
    swaps: swapGaps.length,
    idleGapP99Us: round(percentile(idleGaps, 0.99)),
    idleGapMaxUs: round(maxOf(idleGaps)),
    controlGapP99Us: round(percentile(controlGaps, 0.99)),
    swapHandlerP99Us: round(percentile(handlerUs, 0.99)),
    inlineSwapP99Us: round(percentile(inlineGaps, 0.99)),
    gcP99Us: round(percentile(gcPauses, 0.99)),
    candidatesPerRequest: candidateCount,
    modelNonZeroWeights: version.tensors.weightIndices!.length,
    modelEncodedBytes: encoded.length,
    ...headFigures,
  };
}
