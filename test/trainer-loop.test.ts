import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { EmbeddedLog } from '../connectors/embedded-log.js';
import { TopicFeatureLog } from '../operators/features/feature-log.js';
import type { ModelVersion } from '../models/learner.js';
import { ftrlPredictor } from '../models/learners/ftrl.js';
import { rocAuc } from '../models/metrics.js';
import { RowEncoder } from '../models/row-features.js';
import { FeatureRows } from '../operators/features/rows.js';
import { OnlineRanker } from '../operators/rank.js';
import { exportSamples } from '../pipelines/samples-command.js';
import { readTopic, runSamples } from '../pipelines/samples.js';
import { runTrainer } from '../pipelines/trainer.js';
import { parseLabelledSample } from '../schema/samples.js';

const T = 1_700_000_000_000;
const BITS = 16;
const NAMES = ['item.good', 'user.activity'];
const isGood = (item: number) => (item % 2 === 0 ? 1 : 0);

function random(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 4294967296;
  };
}

async function until(condition: () => boolean | Promise<boolean>, timeoutMs = 8000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('online learning loop on the embedded log', () => {
  it('turns served impressions and clicks into samples, and samples into a model that predicts the clicks', async () => {
    const log = new EmbeddedLog();
    for (const topic of ['events', 'feature-log', 'samples', 'models', 'dead-letters']) await log.ensureTopic(topic, { partitions: 2 });
    const samples = await runSamples({ log, attributionWindowMs: 10_000, maxOutOfOrdernessMs: 1000, idleMs: 1e9, tickIntervalMs: 0, commitIntervalMs: 0 });
    const versions: ModelVersion[] = [];
    const trainer = await runTrainer({ log, ftrl: { bits: BITS }, publishEverySamples: 500, publishIntervalMs: 60_000, onVersion: (v) => versions.push(v) });
    try {
      const rnd = random(7);
      const featureLog = new TopicFeatureLog(log);
      for (let r = 0; r < 800; r++) {
        const userId = `u${r % 40}`;
        const ts = T + r * 100;
        const items = Array.from({ length: 5 }, () => Math.floor(rnd() * 30));
        featureLog.push({ requestId: `r${r}`, userId, ts, names: NAMES, items: items.map((i) => ({ itemId: `i${i}`, values: [isGood(i), r % 7] })) });
        await featureLog.flush();
        const events = items.map((i, position) => ({ id: `r${r}:${position}`, type: 'impression', userId, itemId: `i${i}`, ts, requestId: `r${r}`, position }));
        items.forEach((i, position) => {
          if (rnd() < (isGood(i) ? 0.5 : 0.05)) events.push({ id: `c${r}:${position}`, type: 'click', userId, itemId: `i${i}`, ts: ts + 50, requestId: `r${r}`, position });
        });
        await log.append('events', events.map((e) => ({ key: userId, value: JSON.stringify(e) })));
      }
      // Traffic much later, on every partition, closes the windows of everything above.
      for (let u = 0; u < 40; u++) {
        featureLog.push({ requestId: `late-${u}`, userId: `u${u}`, ts: T + 10_000_000, names: NAMES, items: [{ itemId: 'i0', values: [1, 0] }] });
        await log.append('events', [{ key: `u${u}`, value: JSON.stringify({ id: `late-${u}:0`, type: 'impression', userId: `u${u}`, itemId: 'i0', ts: T + 10_000_000, requestId: `late-${u}`, position: 0 }) }]);
      }
      await featureLog.flush();

      await until(() => samples.stats.samples + samples.stats.skipped === 4000);
      expect(samples.stats.missingFeatures + samples.stats.late + samples.stats.invalid).toBe(0);
      await until(() => trainer.stats.learned === samples.stats.samples);
      await until(() => versions.length >= 3);
      const latest = versions[versions.length - 1]!;
      expect(latest.samplesSeen).toBeGreaterThan(samples.stats.samples - 500);

      // Scored the way serving scores: the online ranker over feature rows, with the published version swapped in.
      const ranker = new OnlineRanker('ftrl', new RowEncoder({ bits: BITS }), ftrlPredictor(versions[0]!), versions[0]!.version);
      ranker.swap(ftrlPredictor(latest), latest.version);
      const holdout = Array.from({ length: 2000 }, () => Math.floor(rnd() * 30));
      const labels = holdout.map((i) => (rnd() < (isGood(i) ? 0.5 : 0.05) ? 1 : 0));
      const rows = new FeatureRows(NAMES, holdout.length);
      holdout.forEach((i, k) => rows.row(k).set([isGood(i), 3]));
      const { scores, version } = await ranker.score(rows, holdout.map((i) => `i${i}`));
      expect(version).toBe(latest.version);
      // The best possible AUC here is about 0.8; ignoring item.good gives 0.5.
      expect(rocAuc(scores, labels)).toBeGreaterThan(0.72);

      const dir = await mkdtemp(join(tmpdir(), 'eddy-samples-'));
      try {
        const file = join(dir, 'samples.jsonl');
        const { written, invalid } = await exportSamples(log, 'samples', file);
        expect(invalid).toBe(0);
        expect(written).toBe((await readTopic(log, 'samples')).length);
        const lines = (await readFile(file, 'utf8')).trimEnd().split('\n');
        expect(lines).toHaveLength(written);
        expect(lines.every((line) => parseLabelledSample(line).ok)).toBe(true);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    } finally {
      await samples.stop();
      await trainer.stop();
    }
  });
});
