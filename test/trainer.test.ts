import { afterEach, describe, expect, it } from 'vitest';
import { EmbeddedLog } from '../connectors/embedded-log.js';
import { DeferredJson } from '../connectors/log.js';
import { decodeModelVersion, type ModelVersion, type Predictor, type SparseFeatures } from '../models/learner.js';
import { predictorFor } from '../models/learners/index.js';
import { FtrlLearner } from '../models/learners/ftrl.js';
import { rocAuc } from '../models/metrics.js';
import { mulberry32 } from '../models/random.js';
import { RowEncoder } from '../models/row-features.js';
import { readTopic } from '../pipelines/samples.js';
import { latestPublishedVersion, runTrainer, trainerPipeline, type RunTrainerOptions, type TrainerJob } from '../pipelines/trainer.js';
import { ModelRegistry } from '../models/registry.js';
import type { LabelledSample } from '../schema/samples.js';

const NAMES = ['user.age', 'item.good', 'noise'];
const BITS = 16;

/** Clicks depend on `item.good` only: 0.8 when it is 1, 0.1 when it is 0. */
function synthetic(count: number, seed: number, offset = 0): LabelledSample[] {
  const rnd = mulberry32(seed);
  return Array.from({ length: count }, (_, k) => {
    const i = k + offset;
    const good = rnd() < 0.5 ? 1 : 0;
    const label = rnd() < (good ? 0.8 : 0.1) ? 1 : 0;
    return {
      id: `r${i}:0`,
      requestId: `r${i}`,
      userId: `u${i % 50}`,
      itemId: `i${Math.floor(rnd() * 20)}`,
      position: 0,
      ts: 1_700_000_000_000 + i,
      label,
      converted: 0,
      outcomes: label ? ['click'] : [],
      featuresTs: 1_700_000_000_000 + i,
      names: NAMES,
      values: [20 + (i % 30), good, rnd()],
    };
  });
}

async function appendSamples(log: EmbeddedLog, samples: readonly LabelledSample[]): Promise<void> {
  await log.append('samples', samples.map((s) => ({ key: s.userId, value: JSON.stringify(s) })));
}

function aucOf(version: ModelVersion, holdout: readonly LabelledSample[]): number {
  const predictor = predictorFor(version) as Predictor<SparseFeatures>;
  const encoder = new RowEncoder({ bits: BITS });
  const scores = holdout.map((s) => predictor.predict(encoder.encode(s.names, s.values, s.itemId)));
  return rocAuc(scores, holdout.map((s) => s.label));
}

async function until(condition: () => boolean | Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}

async function versionsOn(log: EmbeddedLog): Promise<ModelVersion[]> {
  return (await readTopic(log, 'models')).map((r) => decodeModelVersion(r.value));
}

const jobs: TrainerJob[] = [];
afterEach(async () => {
  await Promise.all(jobs.splice(0).map((j) => j.stop()));
});

async function start(log: EmbeddedLog, options: Partial<RunTrainerOptions> = {}): Promise<TrainerJob> {
  const job = await runTrainer({ log, ftrl: { bits: BITS }, publishEverySamples: 1000, publishIntervalMs: 60_000, commitIntervalMs: 0, ...options });
  jobs.push(job);
  return job;
}

async function newLog(): Promise<EmbeddedLog> {
  const log = new EmbeddedLog();
  await log.ensureTopic('samples', { partitions: 2 });
  await log.ensureTopic('models', { partitions: 1, compacted: true });
  return log;
}

describe('trainer pipeline', () => {
  it('learns a synthetic signal, publishes versions to the models topic and dead-letters bad samples', async () => {
    const log = await newLog();
    const swapped: string[] = [];
    const job = await start(log, { maxBatchRecords: 500, onVersion: (v) => swapped.push(v.version) });
    await appendSamples(log, synthetic(4000, 1));
    await log.append('samples', [
      { key: 'u1', value: '{"broken' },
      { key: 'u1', value: JSON.stringify({ ...synthetic(1, 9)[0], label: 2 }) },
      { key: 'u1', value: JSON.stringify({ ...synthetic(1, 9)[0], values: [1] }) },
    ]);
    await until(() => job.stats.received === 4003 && job.runner.stats.commits > 0 && job.stats.learned === 4000);
    expect(job.stats.learned + job.stats.deadLettered).toBe(job.stats.received);
    expect(job.stats.deadLettered).toBe(3);
    await until(async () => (await readTopic(log, 'dead-letters')).length === 3);
    const reasons = (await readTopic(log, 'dead-letters')).map((r) => (JSON.parse(r.value) as { reason: string }).reason).join('\n');
    expect(reasons).toMatch(/malformed JSON/);
    expect(reasons).toMatch(/^label/m);
    expect(reasons).toMatch(/names and values/);

    await until(async () => (await versionsOn(log)).length >= 3);
    const versions = await versionsOn(log);
    expect(versions.every((v) => v.model === 'ftrl' && v.kind === 'ftrl')).toBe(true);
    expect(swapped).toEqual(expect.arrayContaining(versions.map((v) => v.version)));
    const latest = versions[versions.length - 1]!;
    expect(latest.samplesSeen).toBe(4000);
    const auc = aucOf(latest, synthetic(2000, 77, 10_000));
    // The Bayes-optimal AUC of this problem is 0.85; a model that ignored item.good would sit at 0.5.
    expect(auc).toBeGreaterThan(0.8);
    // Progressive validation recorded rolling metrics for the versions that served while samples came in.
    const judged = job.registry.list('ftrl').filter((e) => (e.metrics.samples ?? 0) > 0);
    expect(judged.length).toBeGreaterThan(0);
    expect(judged[0]!.metrics.auc).toBeGreaterThan(0.75);
  });

  it('learns samples handed over as objects as it learns their text, and dead-letters a bad object with its JSON', async () => {
    const bad = { ...synthetic(1, 9)[0]!, label: 2 };
    const learnedFrom = async (value: (sample: object) => string | DeferredJson) => {
      const log = new EmbeddedLog();
      // One partition, so both trainers see one order.
      await log.ensureTopic('samples', { partitions: 1 });
      await log.ensureTopic('models', { partitions: 1, compacted: true });
      const job = await start(log, { maxBatchRecords: 500 });
      await log.append('samples', [...synthetic(3000, 1), bad].map((s) => ({ key: s.userId, value: value(s) })));
      await until(async () => (await versionsOn(log)).some((v) => v.samplesSeen === 3000) && (await readTopic(log, 'dead-letters')).length === 1);
      expect(job.stats.learned).toBe(3000);
      const [letter] = (await readTopic(log, 'dead-letters')).map((r) => JSON.parse(r.value) as { reason: string; raw: string });
      const latest = (await versionsOn(log)).find((v) => v.samplesSeen === 3000)!;
      const predictor = predictorFor(latest) as Predictor<SparseFeatures>;
      const encoder = new RowEncoder({ bits: BITS });
      return { letter, predictions: synthetic(200, 77, 10_000).map((s) => predictor.predict(encoder.encode(s.names, s.values, s.itemId))) };
    };
    const fromText = await learnedFrom((s) => JSON.stringify(s));
    const fromObjects = await learnedFrom((s) => new DeferredJson(s, 300));
    expect(fromObjects.predictions).toEqual(fromText.predictions);
    expect(fromObjects.letter!.reason).toMatch(/^label/);
    expect(fromObjects.letter).toEqual(fromText.letter);
    expect(JSON.parse(fromObjects.letter!.raw)).toEqual(bad);
  });

  it('runs an online factorization machine instead of FTRL when asked, with the same loop', async () => {
    const log = await newLog();
    const job = await start(log, { learner: 'fm', model: 'fm', maxBatchRecords: 500 });
    await appendSamples(log, synthetic(4000, 1));
    await until(() => job.stats.learned === 4000 && job.runner.stats.commits > 0);
    await until(async () => (await versionsOn(log)).length >= 1);
    const latest = (await versionsOn(log)).at(-1)!;
    expect(latest.kind).toBe(job.learner.kind);
    expect(latest.kind).not.toBe('ftrl');
    expect(aucOf(latest, synthetic(2000, 77, 10_000))).toBeGreaterThan(0.8);
  });

  it('resumes from the newest version on the models topic after a restart', async () => {
    const log = await newLog();
    const first = await start(log);
    await appendSamples(log, synthetic(2500, 2));
    await until(() => first.stats.learned === 2500);
    await first.stop();
    const published = await latestPublishedVersion(log, 'ftrl');
    // The stop's checkpoint publishes what the last 500 samples taught, so committed offsets and model agree.
    expect(published?.samplesSeen).toBe(2500);

    const restored: string[] = [];
    const second = await start(log, { onVersion: (v) => restored.push(v.version) });
    expect(second.resumedFrom).toBe(published!.version);
    expect(restored[0]).toBe(published!.version);
    expect(second.learner.samplesSeen).toBe(2500);
    expect(second.registry.serving('ftrl')?.version).toBe(published!.version);
    await appendSamples(log, synthetic(1000, 3, 5000));
    await until(() => second.stats.learned === 1000);
    // Committed samples are not learned again.
    expect(second.learner.samplesSeen).toBe(3500);
    await until(async () => (await latestPublishedVersion(log, 'ftrl'))?.samplesSeen === 3500);
    // The first version learned after the restart descends from the one resumed.
    expect(restored.length).toBeGreaterThan(1);
    expect(second.registry.get('ftrl', restored[1]!)?.payload.parent).toBe(published!.version);
  });

  it('rolls an injected bad version back to its parent and restores the learner', async () => {
    const log = await newLog();
    const swapped: string[] = [];
    const job = await start(log, {
      publishEverySamples: 1_000_000,
      // No commit (and so no checkpoint publish) during the test: the bad version is judged before any successor.
      commitIntervalMs: 600_000,
      guardrails: { window: 1000, minSamples: 500 },
      onVersion: (v) => swapped.push(v.version),
    });
    await appendSamples(log, synthetic(2000, 4));
    await until(() => job.stats.learned === 2000);
    const good = await job.publisher.publishNow();
    const weights = good.payload.tensors.weightValues as Float32Array;
    const bad: ModelVersion = {
      ...good.payload,
      version: 'bad',
      parent: good.version,
      tensors: { ...good.payload.tensors, weightValues: weights.map((w) => -3 * w) },
    };
    job.registry.register(bad);
    expect(job.registry.serving('ftrl')?.version).toBe('bad');

    await appendSamples(log, synthetic(1000, 5, 3000));
    await until(() => job.stats.rollbacks.length === 1);
    expect(job.stats.rollbacks[0]).toMatchObject({ rolledBack: 'bad', restored: good.version });
    expect(job.registry.get('ftrl', 'bad')?.status).toBe('rolled-back');
    expect(job.registry.serving('ftrl')?.version).toBe(good.version);
    // The learner went back to the good version's state at the rollback and learned only the samples after it.
    await until(() => job.stats.learned === 3000);
    expect(job.learner.samplesSeen).toBe(good.samplesSeen + 1000 - job.stats.rollbacks[0]!.samples);
    // Serving and the topic followed the rollback.
    expect(swapped.slice(-2)).toEqual(['bad', good.version]);
    await until(async () => (await latestPublishedVersion(log, 'ftrl'))?.version === good.version);
  });

  it('describes itself', () => {
    const pipeline = trainerPipeline({
      learner: new FtrlLearner({ bits: 8 }),
      encoder: new RowEncoder({ bits: 8 }),
      registry: new ModelRegistry(),
      deadLetters: { push: () => undefined },
    });
    const ids = pipeline.describe().nodes.map((n) => n.id);
    expect(ids).toEqual(['source:topic:samples', '1:parse-samples', 'sink:topic:dead-letters', '2:encode-rows', '3:learn', 'sink:topic:models']);
  });
});
