import { firstValueFrom, from, toArray } from 'rxjs';
import { describe, expect, it } from 'vitest';
import { EmbeddedLog } from '../connectors/embedded-log.js';
import { Guardrails } from '../models/guardrails.js';
import { decodeModelVersion, type ModelVersion, type Sample } from '../models/learner.js';
import { FtrlLearner, ftrlPredictor } from '../models/learners/ftrl.js';
import { mulberry32, sampleNormal } from '../models/random.js';
import { CallbackModelSink, LogModelSink, ModelPublisher } from '../models/publisher.js';
import { ModelRegistry } from '../models/registry.js';
import { batchOf } from '../operators/batch.js';
import { DeadLetterBuffer } from '../operators/dead-letters.js';
import { learnOperator, type LearnReport } from '../operators/learn.js';

/** A stream of samples from a fixed logistic model over 30 hashed features. */
function synthetic(seed: number): () => Sample {
  const random = mulberry32(seed);
  const weights = Array.from({ length: 30 }, () => sampleNormal(random));
  return () => {
    const indices: number[] = [];
    let logit = -0.5;
    for (let f = 0; f < 30; f++) {
      if (random() < 0.3) {
        indices.push(f * 7919);
        logit += weights[f]!;
      }
    }
    return { features: { indices }, label: random() < 1 / (1 + Math.exp(-logit)) ? 1 : 0 };
  };
}

/** The same model with every weight negated: confidently wrong. */
function inverted(version: ModelVersion, name: string): ModelVersion {
  const negate = (a: Float32Array | Float64Array) => a.map((x) => -x);
  const t = version.tensors;
  return {
    ...version,
    version: name,
    tensors: { ...t, weightValues: negate(t.weightValues as Float32Array), z: negate(t.z as Float64Array) },
  };
}

function trained(draw: () => Sample, samples: number): FtrlLearner {
  const learner = new FtrlLearner({ bits: 16, alpha: 0.2, l1: 0.5 });
  for (let i = 0; i < samples; i++) learner.learn(draw());
  return learner;
}

describe('Guardrails', () => {
  it("records the serving version's logloss at every check, and its AUC again once a tenth of a window is scored", () => {
    const draw = synthetic(3);
    const registry = new ModelRegistry();
    const guardrails = new Guardrails(registry, 'ctr', ftrlPredictor, { window: 1000, minSamples: 100 });
    registry.register(trained(draw, 2000).export({ model: 'ctr', version: 'v1', parent: null }));
    const recorded = () => registry.get('ctr', 'v1')!.metrics;
    for (let i = 0; i < 300; i++) guardrails.observe(draw());
    guardrails.check();
    expect(recorded()).toMatchObject({ samples: 300, auc: guardrails.metrics('v1')!.auc, logloss: guardrails.metrics('v1')!.logloss });
    const first = recorded().auc!;
    for (let i = 0; i < 99; i++) guardrails.observe(draw());
    guardrails.check();
    expect(recorded()).toMatchObject({ samples: 399, auc: first, logloss: guardrails.metrics('v1')!.logloss });
    expect(guardrails.metrics('v1')!.auc).not.toBe(first);
    guardrails.observe(draw());
    guardrails.check();
    expect(recorded()).toMatchObject({ samples: 400, auc: guardrails.metrics('v1')!.auc });
    guardrails.close();
  });

  it('rolls back an injected bad version to its parent once it has enough samples', () => {
    const draw = synthetic(1);
    const learner = trained(draw, 5000);
    const registry = new ModelRegistry();
    const guardrails = new Guardrails(registry, 'ctr', ftrlPredictor, { window: 2000, minSamples: 500 });
    registry.register(learner.export({ model: 'ctr', version: 'v1', parent: null }));
    registry.register(inverted(learner.export({ model: 'ctr', version: 'tmp', parent: 'v1' }), 'bad'));
    expect(registry.serving('ctr')?.version).toBe('bad');
    for (let i = 0; i < 499; i++) guardrails.observe(draw());
    expect(guardrails.check()).toBeUndefined();
    guardrails.observe(draw());
    const decision = guardrails.check();
    expect(decision).toMatchObject({ model: 'ctr', rolledBack: 'bad', restored: 'v1', samples: 500 });
    expect(decision!.servingLogloss).toBeGreaterThan(decision!.parentLogloss * 1.1);
    expect(registry.serving('ctr')?.version).toBe('v1');
    expect(registry.get('ctr', 'bad')).toMatchObject({ status: 'rolled-back' });
    expect(registry.get('ctr', 'bad')?.rollbackReason).toMatch(/worse than parent v1/);
    expect(registry.get('ctr', 'bad')?.metrics.samples).toBe(500);
    expect(guardrails.metrics('bad')?.auc).toBeLessThan(0.5);
    guardrails.close();
  });

  it('keeps a version that does as well as its parent, and a pinned bad one', () => {
    const draw = synthetic(2);
    const learner = trained(draw, 5000);
    const registry = new ModelRegistry();
    const guardrails = new Guardrails(registry, 'ctr', ftrlPredictor, { window: 1000, minSamples: 300 });
    registry.register(learner.export({ model: 'ctr', version: 'v1', parent: null }));
    for (let i = 0; i < 2000; i++) learner.learn(draw());
    registry.register(learner.export({ model: 'ctr', version: 'v2', parent: 'v1' }));
    for (let i = 0; i < 1000; i++) guardrails.observe(draw());
    expect(guardrails.check()).toBeUndefined();
    const comparison = guardrails.comparison()!;
    expect(comparison.serving.count).toBe(1000);
    expect(Math.abs(comparison.serving.logloss - comparison.parent.logloss)).toBeLessThan(0.05);

    registry.register(inverted(learner.export({ model: 'ctr', version: 'tmp', parent: 'v2' }), 'bad'));
    registry.pin('ctr', 'bad');
    for (let i = 0; i < 1000; i++) guardrails.observe(draw());
    expect(guardrails.check()).toBeUndefined();
    expect(registry.serving('ctr')?.version).toBe('bad');
  });
});

describe('ModelPublisher', () => {
  it('publishes every N samples or every T ms, whichever comes first, and only after learning', async () => {
    let now = 1000;
    const registry = new ModelRegistry();
    const learner = new FtrlLearner({ bits: 8 });
    const received: string[] = [];
    const publisher = new ModelPublisher({
      model: 'ctr',
      learner,
      registry,
      sinks: [new CallbackModelSink((v) => received.push(`${v.version}<${v.parent ?? '-'}`))],
      everySamples: 100,
      everyMs: 1000,
      clock: () => now,
    });
    publisher.recordLearned(99);
    expect(await publisher.maybePublish()).toBeUndefined();
    publisher.recordLearned(1);
    expect((await publisher.maybePublish())?.version).toBe('v1-1000');
    now += 5000;
    // Idle time alone publishes nothing; the first sample after it is published at once.
    expect(publisher.due()).toBe(false);
    publisher.recordLearned(1);
    expect((await publisher.maybePublish())?.version).toBe('v2-6000');
    publisher.recordLearned(1);
    now += 999;
    expect(publisher.due()).toBe(false);
    now += 1;
    expect((await publisher.maybePublish())?.version).toBe('v3-7000');
    expect(received).toEqual(['v1-1000<-', 'v2-6000<v1-1000', 'v3-7000<v2-6000']);
    expect(publisher.published).toBe(3);
    publisher.close();
  });

  it('writes versions to the models topic keyed by model name, and follows rollbacks', async () => {
    const log = new EmbeddedLog();
    const registry = new ModelRegistry();
    const learner = trained(synthetic(3), 500);
    const local: ModelVersion[] = [];
    const publisher = new ModelPublisher({
      model: 'ctr',
      learner,
      registry,
      sinks: [new LogModelSink(log), new CallbackModelSink((v) => local.push(v))],
    });
    await publisher.publishNow();
    await publisher.publishNow();
    registry.rollback('ctr', { reason: 'test' });
    await publisher.flush();
    const consumer = log.consumer({ group: 'reader', topics: ['models'] });
    const batch = await consumer.next();
    await consumer.close();
    const records = batch!.records;
    expect(records.map((r) => r.key)).toEqual(['ctr', 'ctr', 'ctr']);
    const versions = records.map((r) => decodeModelVersion(r.value));
    expect(versions.map((v) => v.version)).toEqual(local.map((v) => v.version));
    expect(versions[2]!.version).toBe(versions[0]!.version);
    expect(versions[1]!.parent).toBe(versions[0]!.version);
    const features = { indices: [7919, 2 * 7919] };
    expect(ftrlPredictor(versions[2]!).predict(features)).toBe(ftrlPredictor(local[0]!).predict(features));
    publisher.close();
  });

  it('reports a failing sink with its cause on flush', async () => {
    const registry = new ModelRegistry();
    const publisher = new ModelPublisher({
      model: 'ctr',
      learner: new FtrlLearner({ bits: 4 }),
      registry,
      sinks: [{ publish: () => Promise.reject(new Error('broker down')) }],
    });
    const failure = await publisher.publishNow().catch((e: unknown) => e as Error);
    expect(failure).toBeInstanceOf(Error);
    expect((failure as Error).message).toMatch(/model sink failed/);
    expect(((failure as Error).cause as Error).message).toBe('broker down');
    publisher.close();
  });

  it('publishes on its timer when samples stop arriving', async () => {
    const registry = new ModelRegistry();
    const publisher = new ModelPublisher({ model: 'ctr', learner: new FtrlLearner({ bits: 4 }), registry, sinks: [], everyMs: 20 });
    const errors: Error[] = [];
    publisher.start((e) => errors.push(e));
    await new Promise((resolve) => setTimeout(resolve, 80));
    expect(registry.list('ctr')).toHaveLength(0);
    publisher.recordLearned(1);
    await new Promise((resolve) => setTimeout(resolve, 80));
    publisher.close();
    expect(registry.list('ctr')).toHaveLength(1);
    expect(errors).toEqual([]);
  });
});

describe('learnOperator', () => {
  it('validates progressively, learns, publishes, dead-letters bad samples and rolls back an injected bad version', async () => {
    const draw = synthetic(4);
    const learner = new FtrlLearner({ bits: 16, alpha: 0.2, l1: 0.5 });
    const registry = new ModelRegistry();
    const guardrails = new Guardrails(registry, 'ctr', ftrlPredictor, { window: 1000, minSamples: 300 });
    const served: string[] = [];
    const publisher = new ModelPublisher({
      model: 'ctr',
      learner,
      registry,
      sinks: [new CallbackModelSink((v) => served.push(v.version))],
      everySamples: 1000,
      everyMs: 3_600_000,
    });
    const deadLetters = new DeadLetterBuffer();
    const operator = learnOperator({ learner, registry, guardrails, publisher, deadLetters });
    expect(operator.info).toMatchObject({ kind: 'learn', sideOutputs: ['dead-letters'] });

    const batches = Array.from({ length: 50 }, (_, b) => {
      const items: Sample[] = Array.from({ length: 100 }, draw);
      if (b === 3) items.push({ features: { indices: [1] }, label: 7 as 1 }, { features: { indices: [-2] }, label: 0 });
      return batchOf(items);
    });
    let injected = '';
    const reports: LearnReport[] = [];
    const stream = from(batches).pipe(operator);
    await new Promise<void>((resolve, reject) => {
      stream.subscribe({
        next: (batch) => {
          const report = batch.items[0]!;
          reports.push(report);
          // After the third version, slip in a bad one as if a broken trainer had published it.
          if (report.published.length > 0 && registry.list('ctr').length === 3 && !injected) {
            const current = registry.serving('ctr')!;
            injected = 'bad';
            registry.register(inverted({ ...current.payload, parent: current.version }, injected));
          }
        },
        error: reject,
        complete: resolve,
      });
    });

    expect(reports).toHaveLength(50);
    expect(reports.reduce((n, r) => n + r.received, 0)).toBe(5002);
    expect(reports.reduce((n, r) => n + r.learned, 0)).toBe(5000);
    expect(deadLetters.pending.map((d) => d.reason)).toEqual([
      'label must be 0 or 1, got 7',
      'features.indices[0] must be a non-negative integer, got -2',
    ]);
    const rollback = reports.find((r) => r.rollback)?.rollback;
    expect(rollback).toMatchObject({ rolledBack: 'bad' });
    const restored = registry.get('ctr', rollback!.restored)!;
    expect(registry.get('ctr', 'bad')?.status).toBe('rolled-back');
    // The local scorer saw the bad version and then the rollback to its parent.
    expect(served.slice(served.indexOf('bad'), served.indexOf('bad') + 2)).toEqual(['bad', restored.version]);
    // The learner continued from the restored version: the next version descends from it.
    const after = registry.list('ctr').find((e) => e.parent === restored.version && e.version !== 'bad');
    expect(after).toBeDefined();
    expect(registry.serving('ctr')?.status).toBe('serving');
    expect(Number.isFinite(reports[49]!.learnerLogloss)).toBe(true);
    // Restoring started the cadence over: the next version came a full `everySamples` after the rollback.
    const rollbackBatch = reports.findIndex((r) => r.rollback);
    const nextPublish = reports.findIndex((r, i) => i > rollbackBatch && r.published.length > 0);
    expect(nextPublish - rollbackBatch).toBe(10);
    publisher.close();
    guardrails.close();
  });

  it('emits one report per batch, also for empty batches', async () => {
    const operator = learnOperator({ learner: new FtrlLearner({ bits: 4 }), deadLetters: new DeadLetterBuffer() });
    const out = await firstValueFrom(from([batchOf<Sample>([]), batchOf<Sample>([{ features: { indices: [1] }, label: 1 }])]).pipe(operator, toArray()));
    expect(out.map((b) => b.items[0]!.learned)).toEqual([0, 1]);
    expect(out[0]!.items[0]!.learnerLogloss).toBeNaN();
  });
});

describe('Guardrails on a version that cannot be loaded', () => {
  it('rolls it back at the next check, before any sample, while the parent keeps scoring', () => {
    const draw = synthetic(5);
    const learner = trained(draw, 1000);
    const registry = new ModelRegistry();
    const guardrails = new Guardrails(registry, 'ctr', ftrlPredictor, { window: 100, minSamples: 50 });
    const good = learner.export({ model: 'ctr', version: 'v1', parent: null });
    registry.register(good);
    registry.register({ ...good, version: 'broken', parent: 'v1', tensors: { weightIndices: good.tensors.weightIndices! } });
    expect(guardrails.observe(draw())).toBeNaN();
    const decision = guardrails.check();
    expect(decision).toMatchObject({ rolledBack: 'broken', restored: 'v1', samples: 0 });
    expect(decision!.reason).toMatch(/could not be loaded: .*weightValues/);
    expect(registry.serving('ctr')?.version).toBe('v1');
    expect(guardrails.observe(draw())).toBeGreaterThan(0);
  });
});
