import { afterEach, describe, expect, it } from 'vitest';
import { EmbeddedLog } from '../connectors/embedded-log.js';
import type { ModelVersion } from '../models/learner.js';
import { headBaseOf, ONLINE_HEAD_KIND } from '../models/learners/online-head.js';
import { logLoss, rocAuc } from '../models/metrics.js';
import { mulberry32, sampleNormal } from '../models/random.js';
import { exportOnnx } from '../models/rankers/export.js';
import { onnxDigest } from '../models/rankers/import.js';
import { Ranker, type Example } from '../models/rankers/ranker.js';
import { train } from '../models/rankers/trainer.js';
import { RowEncoder } from '../models/row-features.js';
import { FeatureRows } from '../operators/features/rows.js';
import { HeadRanker, itemIndex, servingLayout } from '../operators/rank.js';
import { loadConfig } from '../pipelines/config.js';
import { runTrainer, type RunTrainerOptions, type TrainerJob } from '../pipelines/trainer.js';
import type { LabelledSample } from '../schema/samples.js';

const NAMES = ['f0', 'f1', 'f2', 'f3'];
const VOCABULARY = 256;
const BITS = 12;
const ITEMS = 30;

/** Yesterday's world, which the deep model was trained on: clicks follow two row features and no item matters. */
const yesterdayLogit = (f: readonly number[]) => 2 * f[0]! - f[1]! - 1;
/** Today's world: items 0-9 turned bad and 10-19 good, which the frozen deep model cannot know. */
const itemEffect = (item: number) => (item < 10 ? -3 : item < 20 ? 2 : 0);

interface Draw {
  readonly values: number[];
  readonly item: number;
  readonly label: 0 | 1;
}

function draws(count: number, seed: number, world: 'yesterday' | 'today'): Draw[] {
  const random = mulberry32(seed);
  return Array.from({ length: count }, () => {
    const values = NAMES.map(() => Math.fround(sampleNormal(random)));
    const item = Math.floor(random() * ITEMS);
    const logit = yesterdayLogit(values) + (world === 'today' ? itemEffect(item) : 0);
    return { values, item, label: random() < 1 / (1 + Math.exp(-logit)) ? 1 : 0 };
  });
}

function deepModel(): { ranker: Ranker; bytes: Uint8Array } {
  const ranker = new Ranker({ kind: 'embedding-mlp', denseFeatures: NAMES, categoricalFields: [{ name: 'item', vocabularySize: VOCABULARY }], embeddingDim: 4, hidden: [16, 8] }, { seed: 3 });
  const examples: Example[] = draws(6000, 1, 'yesterday').map((d) => ({ dense: d.values, categorical: [itemIndex(`item-${d.item}`, VOCABULARY)], label: d.label }));
  train(ranker, examples, { epochs: 4, learningRate: 0.01, batchSize: 64 });
  return { ranker, bytes: exportOnnx(ranker) };
}

function samples(list: readonly Draw[], offset = 0): LabelledSample[] {
  return list.map((d, k) => ({
    id: `r${k + offset}:0`,
    requestId: `r${k + offset}`,
    userId: `u${k % 40}`,
    itemId: `item-${d.item}`,
    position: 0,
    ts: 1_700_000_000_000 + k + offset,
    label: d.label,
    converted: 0,
    outcomes: d.label ? ['click'] : [],
    featuresTs: 1_700_000_000_000 + k + offset,
    names: NAMES,
    values: d.values,
  }));
}

function rowsOf(list: readonly Draw[]): { rows: FeatureRows; itemIds: string[] } {
  const rows = new FeatureRows(NAMES, list.length);
  list.forEach((d, i) => rows.values.set(d.values, i * NAMES.length));
  return { rows, itemIds: list.map((d) => `item-${d.item}`) };
}

function quality(scores: Float32Array, list: readonly Draw[]): { auc: number; logloss: number } {
  const labels = list.map((d) => d.label);
  let loss = 0;
  scores.forEach((p, i) => (loss += logLoss(p, labels[i]!)));
  return { auc: rocAuc(Array.from(scores), labels), logloss: loss / list.length };
}

async function until(condition: () => boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

async function startTrainer(log: EmbeddedLog, bytes: Uint8Array, options: Partial<RunTrainerOptions> = {}): Promise<TrainerJob> {
  const job = await runTrainer({
    log,
    learner: 'head',
    deepModel: bytes,
    ftrl: { bits: BITS },
    head: { learningRate: 0.05 },
    publishEverySamples: 2000,
    publishIntervalMs: 60_000,
    commitIntervalMs: 0,
    maxBatchRecords: 500,
    ...options,
  });
  cleanups.push(() => job.stop());
  return job;
}

async function newLog(): Promise<EmbeddedLog> {
  const log = new EmbeddedLog();
  await log.ensureTopic('samples', { partitions: 1 });
  await log.ensureTopic('models', { partitions: 1, compacted: true });
  return log;
}

async function headRanker(bytes: Uint8Array): Promise<HeadRanker> {
  const ranker = await HeadRanker.create(bytes, { layout: servingLayout(NAMES), encoder: new RowEncoder({ bits: BITS }), version: 'deep' });
  cleanups.push(() => ranker.close());
  return ranker;
}

describe('online head: trainer to serving', () => {
  const { ranker: deep, bytes } = deepModel();
  const holdout = draws(3000, 99, 'today');

  it('learns from the samples stream what the frozen deep model gets wrong, and serving scores with it', async () => {
    const log = await newLog();
    const versions: ModelVersion[] = [];
    const job = await startTrainer(log, bytes, { onVersion: (v) => versions.push(v) });
    const stream = samples(draws(8000, 2, 'today'));
    // One sample logged by a serving build without f3: it cannot be scored by this deep model and is dead-lettered.
    const stale = { ...samples(draws(1, 3, 'today'), 9000)[0]!, names: NAMES.slice(0, 3), values: [0.1, 0.2, 0.3] };
    await log.append('samples', [...stream, stale].map((s) => ({ key: s.userId, value: JSON.stringify(s) })));
    await until(() => job.stats.learned === stream.length && job.stats.deadLettered === 1);
    await job.runner.stop();
    expect(job.deadLetters.total).toBe(1);
    expect(job.stats.received).toBe(stream.length + 1);

    // Versions were published by cadence and at the checkpoint, named after the deep model, each the next's parent.
    const base = onnxDigest(bytes);
    expect(versions.length).toBeGreaterThanOrEqual(4);
    for (const v of versions) {
      expect(v.kind).toBe(ONLINE_HEAD_KIND);
      expect(headBaseOf(v)).toBe(base);
    }
    expect(versions.at(-1)!.samplesSeen).toBe(stream.length);
    expect(versions.at(-1)!.parent).toBe(versions.at(-2)!.version);
    // Guardrails judged the versions on the stream (progressive validation) and kept them: they improve.
    expect(job.stats.rollbacks).toEqual([]);
    expect(job.registry.serving('ftrl')?.version).toBe(versions.at(-1)!.version);
    const judged = job.guardrails!.metrics(versions[0]!.version)!;
    expect(judged.total).toBeGreaterThanOrEqual(500);
    expect(judged.auc).toBeGreaterThan(0.8);

    const scorer = await headRanker(bytes);
    const { rows, itemIds } = rowsOf(holdout);
    const before = await scorer.score(rows, itemIds);
    expect(before.version).toBe('deep');
    // Before any head arrives, serving scores with the deep model itself (the ONNX run matches the TypeScript pass).
    holdout.slice(0, 100).forEach((d, i) => {
      expect(Math.abs(before.scores[i]! - deep.predict({ dense: d.values, categorical: [itemIndex(`item-${d.item}`, VOCABULARY)] }))).toBeLessThan(1e-5);
    });

    scorer.swapVersion(versions.at(-1)!);
    const after = await scorer.score(rows, itemIds);
    expect(after.version).toBe(`deep+${versions.at(-1)!.version}`);
    const q0 = quality(before.scores, holdout);
    const q1 = quality(after.scores, holdout);
    expect(q1.auc).toBeGreaterThan(q0.auc + 0.05);
    expect(q1.logloss).toBeLessThan(q0.logloss - 0.05);
    // The first version, learned on fewer samples, sits between the two: learning is continuous.
    scorer.swapVersion(versions[0]!);
    const early = quality((await scorer.score(rows, itemIds)).scores, holdout);
    expect(early.auc).toBeGreaterThan(q0.auc);
    expect(early.auc).toBeLessThanOrEqual(q1.auc + 0.005);
  }, 60_000);

  it('rolls a degraded head version back to its parent and restores the learner', async () => {
    const log = await newLog();
    const versions: string[] = [];
    const job = await startTrainer(log, bytes, {
      publishEverySamples: 1_000_000,
      // No commit (so no checkpoint publish) during the test: the bad version is judged before any successor.
      commitIntervalMs: 600_000,
      guardrails: { window: 1000, minSamples: 500 },
      onVersion: (v) => versions.push(v.version),
    });
    await log.append('samples', samples(draws(2000, 4, 'today')).map((s) => ({ key: s.userId, value: JSON.stringify(s) })));
    await until(() => job.stats.learned === 2000);
    const good = await job.publisher.publishNow();
    const weights = good.payload.tensors.weights as Float64Array;
    const bad: ModelVersion = { ...good.payload, version: 'bad', parent: good.version, tensors: { ...good.payload.tensors, weights: weights.map((w) => -3 * w) } };
    job.registry.register(bad);
    expect(job.registry.serving('ftrl')?.version).toBe('bad');

    await log.append('samples', samples(draws(1000, 6, 'today'), 2000).map((s) => ({ key: s.userId, value: JSON.stringify(s) })));
    await until(() => job.stats.rollbacks.length === 1);
    expect(job.stats.rollbacks[0]).toMatchObject({ rolledBack: 'bad', restored: good.version });
    expect(job.registry.serving('ftrl')?.version).toBe(good.version);
    expect(versions.at(-1)).toBe(good.version);
    await until(() => job.stats.learned === 3000);
    expect(job.learner.samplesSeen).toBe(good.samplesSeen + 1000 - job.stats.rollbacks[0]!.samples);
  }, 60_000);

  it('swaps head versions under concurrent scoring without losing a request or mixing versions', async () => {
    const log = await newLog();
    const versions: ModelVersion[] = [];
    const job = await startTrainer(log, bytes, { publishEverySamples: 500, guardrails: false, onVersion: (v) => versions.push(v) });
    await log.append('samples', samples(draws(3000, 5, 'today')).map((s) => ({ key: s.userId, value: JSON.stringify(s) })));
    await until(() => job.stats.learned === 3000);
    await job.runner.stop();
    expect(versions.length).toBeGreaterThanOrEqual(6);

    const scorer = await headRanker(bytes);
    const request = rowsOf(holdout.slice(0, 50));
    const pending: Promise<{ scores: Float32Array; version: string }>[] = [];
    for (let round = 0; round < 4; round++) {
      for (const version of versions) {
        scorer.swapVersion(version);
        for (let r = 0; r < 5; r++) pending.push(Promise.resolve(scorer.score(request.rows, request.itemIds)));
        await new Promise((resolve) => setImmediate(resolve));
      }
    }
    const results = await Promise.all(pending);
    expect(results).toHaveLength(4 * versions.length * 5);
    const seen = new Set(results.map((r) => r.version));
    expect(seen.size).toBe(versions.length);

    // Each response equals what its version gives alone: no request was scored half by one head, half by another.
    const reference = new Map<string, Float32Array>();
    for (const version of versions) {
      scorer.swapVersion(version);
      reference.set(`deep+${version.version}`, (await scorer.score(request.rows, request.itemIds)).scores);
    }
    for (const result of results) {
      expect(result.scores).toHaveLength(50);
      expect(Array.from(result.scores)).toEqual(Array.from(reference.get(result.version)!));
    }
  }, 60_000);

  it('never serves or resumes a head learned on another deep model', async () => {
    const log = await newLog();
    const versions: ModelVersion[] = [];
    const job = await startTrainer(log, bytes, { publishEverySamples: 1000, guardrails: false, onVersion: (v) => versions.push(v) });
    await log.append('samples', samples(draws(1000, 7, 'today')).map((s) => ({ key: s.userId, value: JSON.stringify(s) })));
    await until(() => job.stats.learned === 1000 && versions.length > 0);
    await job.stop();

    const other = new Ranker(deep, { seed: 9 });
    const otherBytes = exportOnnx(other);
    const scorer = await headRanker(otherBytes);
    expect(() => scorer.swapVersion(versions.at(-1)!)).toThrow(/was not learned on deep model/);
    expect(scorer.version).toBe('deep');

    // A trainer on the same model (and consumer group) resumes where the first stopped, with nothing left to learn ...
    const same = await startTrainer(log, bytes);
    expect(same.resumedFrom).toBe(versions.at(-1)!.version);
    expect(same.learner.samplesSeen).toBe(1000);
    await same.stop();
    // ... one on the other model starts from that model's last layer instead of resuming the foreign head ...
    const fresh = await startTrainer(log, otherBytes, { group: 'other' });
    expect(fresh.resumedFrom).toBeUndefined();
    await fresh.stop();
    // ... and an FTRL trainer of the same model name (the deployment switched learner) starts over too.
    const ftrl = await startTrainer(log, bytes, { group: 'ftrl', learner: 'ftrl' });
    expect(ftrl.resumedFrom).toBeUndefined();
    expect(ftrl.learner.kind).toBe('ftrl');
  }, 60_000);

  it('is selected by EDDY_ONLINE_LEARNER=head, which needs EDDY_MODEL_FILE', async () => {
    expect(() => loadConfig({ EDDY_ONLINE_LEARNER: 'head' })).toThrow(/set EDDY_MODEL_FILE/);
    expect(loadConfig({ EDDY_ONLINE_LEARNER: 'head', EDDY_MODEL_FILE: '/models/deep.onnx' }).onlineLearner).toBe('head');
    expect(() => loadConfig({ EDDY_ONLINE_LEARNER: 'wide' })).toThrow(/ftrl, fm or head/);
    const log = await newLog();
    await expect(runTrainer({ log, learner: 'head' })).rejects.toThrow(/needs the deep model/);
    const lr = exportOnnx(new Ranker({ kind: 'logistic-regression', denseFeatures: NAMES, categoricalFields: [{ name: 'item', vocabularySize: 8 }] }));
    await expect(runTrainer({ log, learner: 'head', deepModel: lr })).rejects.toThrow(/has none/);
  });
});
