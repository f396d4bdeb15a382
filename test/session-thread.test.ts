import * as ort from 'onnxruntime-node';
import { afterEach, describe, expect, it } from 'vitest';
import { sigmoid } from '../models/learner.js';
import { exportOnnx } from '../models/rankers/export.js';
import type { Ranker } from '../models/rankers/ranker.js';
import { Scorer } from '../models/scorer.js';
import { createScoringSession } from '../models/session-thread.js';
import { LAYOUT, rankerOf as rankerOfKind, rowsOf } from './support/rankers.js';

const rankerOf = (seed: number, denseFeatures?: string[]) => rankerOfKind('deepfm', seed, denseFeatures);

const open: Scorer[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((s) => s.close()));
});

async function workerScorer(bytes: Uint8Array): Promise<Scorer> {
  const scorer = await Scorer.create(bytes, { layout: LAYOUT, thread: 'worker' });
  open.push(scorer);
  return scorer;
}

describe('scoring on a worker thread', () => {
  it('scores exactly as the same model on the main thread, for many requests at once', async () => {
    const ranker = rankerOf(1);
    const bytes = exportOnnx(ranker);
    const onWorker = await workerScorer(bytes);
    const onMain = await Scorer.create(bytes, { layout: LAYOUT, thread: 'main' });
    open.push(onMain);
    const requests = Array.from({ length: 20 }, (_, r) => rowsOf(1 + r * 3, 100 + r));
    const fromWorker = await Promise.all(requests.map((rows) => onWorker.score(rows)));
    for (const [r, rows] of requests.entries()) {
      expect(fromWorker[r]).toEqual(await onMain.score(rows));
      rows.forEach((row, i) => expect(fromWorker[r]![i]).toBeCloseTo(sigmoid(ranker.logit(row)), 5));
    }
  });

  it('swaps versions while requests run, losing none, and keeps serving when a bad version is refused', async () => {
    const first = rankerOf(1);
    const second = rankerOf(2);
    const scorer = await workerScorer(exportOnnx(first));
    const rows = rowsOf(16, 7);
    const results: { version: string; scores: Float32Array }[] = [];
    let running = true;
    const load = (async () => {
      while (running) {
        const version = scorer.model.version;
        results.push({ version, scores: await scorer.score(rows) });
      }
    })();
    await scorer.swap(exportOnnx(second), '2');
    await expect(scorer.swap(exportOnnx(rankerOf(3, ['price', 'age_days'])), '3')).rejects.toThrow(/contract|feature/i);
    await new Promise((resolve) => setTimeout(resolve, 20));
    running = false;
    await load;
    expect(scorer.model.version).toBe('2');
    expect(results.some((r) => r.version === '1')).toBe(true);
    expect(results.some((r) => r.version === '2')).toBe(true);
    const expectedOf = (ranker: Ranker) => rows.map((row) => sigmoid(ranker.logit(row)));
    const fromSecond = await scorer.score(rows);
    fromSecond.forEach((score, i) => expect(score).toBeCloseTo(expectedOf(second)[i]!, 5));
    // Every request was answered, by one of the two models.
    for (const { scores } of results) {
      const matchesFirst = [...scores].every((score, i) => Math.abs(score - expectedOf(first)[i]!) < 1e-5);
      const matchesSecond = [...scores].every((score, i) => Math.abs(score - expectedOf(second)[i]!) < 1e-5);
      expect(matchesFirst || matchesSecond).toBe(true);
    }
  });

  it('keeps serving one version when another on the same thread is released, and starts the thread again after the last', async () => {
    const first = rankerOf(1);
    const second = rankerOf(2);
    const rows = rowsOf(5, 9);
    const a = await workerScorer(exportOnnx(first));
    const b = await workerScorer(exportOnnx(second));
    await a.close();
    (await b.score(rows)).forEach((score, i) => expect(score).toBeCloseTo(sigmoid(second.logit(rows[i]!)), 5));
    await b.close();
    const again = await workerScorer(exportOnnx(first));
    (await again.score(rows)).forEach((score, i) => expect(score).toBeCloseTo(sigmoid(first.logit(rows[i]!)), 5));
  });

  it('answers each run of one turn on its own: a run onnxruntime refuses fails alone', async () => {
    const ranker = rankerOf(1);
    const session = await createScoringSession(exportOnnx(ranker), {}, 'worker');
    const rows = rowsOf(4, 3);
    const feeds = (n: number, denseWidth = LAYOUT.denseFeatures.length) => ({
      dense: new ort.Tensor('float32', Float32Array.from(rows.slice(0, n).flatMap((row) => Array.from(row.dense).slice(0, denseWidth))), [n, denseWidth]),
      categorical: new ort.Tensor('int32', Int32Array.from(rows.slice(0, n).flatMap((row) => Array.from(row.categorical))), [n, LAYOUT.categoricalFields.length]),
    });
    // Asked for in the same turn, so they cross to the thread together; the middle one has a dense feature too few.
    const [first, bad, last] = await Promise.allSettled([session.run(feeds(4)), session.run(feeds(2, LAYOUT.denseFeatures.length - 1)), session.run(feeds(2))]);
    expect(bad.status).toBe('rejected');
    const error = (bad as PromiseRejectedResult).reason as Error;
    expect(error.message).toMatch(/onnxruntime run failed/);
    expect((error.cause as Error).message.length).toBeGreaterThan(0);
    for (const [result, n] of [[first, 4], [last, 2]] as const) {
      expect(result.status).toBe('fulfilled');
      const logits = (result as PromiseFulfilledResult<Record<string, ort.Tensor>>).value.logit!.data as Float32Array;
      expect(logits.length).toBe(n);
      logits.forEach((logit, i) => expect(logit).toBeCloseTo(ranker.logit(rows[i]!), 4));
    }
    await session.release();
  });

  it('reports a model onnxruntime cannot load with its error as the cause, and refuses runs once released', async () => {
    const bytes = exportOnnx(rankerOf(1));
    await expect(createScoringSession(new Uint8Array([1, 2, 3, 4]), {}, 'worker')).rejects.toThrow();
    const session = await createScoringSession(bytes, {}, 'worker');
    expect(session.inputMetadata.map((m) => m.name).length).toBe(2);
    await session.release();
    await expect(session.run({})).rejects.toThrow(/released/);
  });
});
