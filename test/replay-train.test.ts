import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { mulberry32 } from '../models/random.js';
import { Scorer } from '../models/scorer.js';
import { itemIndex, servingLayout } from '../operators/rank.js';
import { movieLensSamples, parseTrainArgs, runTrainCommand, TrainArgsError } from '../pipelines/train-command.js';

const NAMES = ['item_ctr', 'item_age_h', 'ui_affinity'];

/** Samples whose label follows ui_affinity, with a large-valued, useless age feature beside it. */
function sampleLines(count: number): string[] {
  const random = mulberry32(5);
  return Array.from({ length: count }, (_, i) => {
    const affinity = random();
    const label = random() < (affinity > 0.5 ? 0.9 : 0.1) ? 1 : 0;
    return JSON.stringify({
      id: `r${i}:0`,
      requestId: `r${i}`,
      userId: `u${i % 17}`,
      itemId: `i${i % 23}`,
      position: 0,
      ts: 1_000 + i,
      label,
      converted: 0,
      outcomes: label ? ['click'] : [],
      featuresTs: 1_000 + i,
      names: NAMES,
      values: [random() * 0.1, 5_000 + random() * 50_000, affinity],
    });
  });
}

describe('eddy train', () => {
  it('trains on earlier samples, scores later ones, and writes an ONNX model that takes raw rows', { timeout: 60_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'eddy-train-'));
    const samples = join(dir, 'samples.jsonl');
    writeFileSync(samples, `${sampleLines(3000).join('\n')}\n{"broken": true}\n`);
    const out = join(dir, 'models', 'ranker.onnx');
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    let text = '';
    let errors = '';
    stdout.on('data', (c: Buffer) => (text += c.toString()));
    stderr.on('data', (c: Buffer) => (errors += c.toString()));
    const code = await runTrainCommand(['--samples', samples, '--out', out, '--epochs', '20', '--learning-rate', '0.05', '--items', '64', '--json'], { stdout, stderr });
    expect(code).toBe(0);
    expect(errors).toContain('samples.jsonl:3001');
    const result = JSON.parse(text.trim().split('\n').at(-1)!);
    expect(result).toMatchObject({ samples: 3000, train: 2400, test: 600, splitTs: 3_400 });
    for (const kind of ['logistic-regression', 'factorization-machine']) {
      expect(result.rankers[kind].auc).toBeGreaterThan(0.75);
      expect(result.rankers[kind].logLoss).toBeLessThan(0.6);
    }
    const figures = JSON.parse(readFileSync(`${out}.json`, 'utf8'));
    expect(figures.contract.dense.features).toEqual(NAMES);

    const scorer = await Scorer.create(readFileSync(out), { layout: servingLayout(NAMES) });
    try {
      const item = itemIndex('i3', 64);
      const [low, high] = await scorer.score([
        { dense: Float32Array.of(0.05, 30_000, 0.05), categorical: Int32Array.of(item) },
        { dense: Float32Array.of(0.05, 30_000, 0.95), categorical: Int32Array.of(item) },
      ]);
      expect(high!).toBeGreaterThan(low! + 0.3);
    } finally {
      await scorer.close();
    }
  });

  it('builds samples from a MovieLens replay: each positive with negatives recalled for the same request', { timeout: 60_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'eddy-train-ml-'));
    const data = join(import.meta.dirname, '../../shared/data/movielens-small');
    const ratings = join(dir, 'ratings.csv');
    writeFileSync(ratings, `${readFileSync(join(data, 'ratings.csv'), 'utf8').split('\n').slice(0, 1501).join('\n')}\n`);
    const samples = await movieLensSamples({ ratings, movies: join(data, 'movies.csv') });
    const positives = samples.filter((s) => s.label === 1);
    expect(positives.length).toBeGreaterThan(20);
    expect(samples.length).toBeGreaterThan(3 * positives.length);
    expect(new Set(samples.map((s) => s.names)).size).toBe(1);
    expect(samples[0]!.names).toContain('ui_affinity');
    for (let i = 1; i < samples.length; i++) expect(samples[i]!.ts).toBeGreaterThanOrEqual(samples[i - 1]!.ts);
  });

  it('explains bad arguments', () => {
    expect(() => parseTrainArgs(['--out', 'm.onnx'])).toThrow(TrainArgsError);
    expect(() => parseTrainArgs(['--samples', 's', '--out', 'm', '--rankers', 'forest'])).toThrow(/forest/);
    expect(() => parseTrainArgs(['--samples', 's', '--out', 'm', '--test-share', '1'])).toThrow(/test-share/);
    expect(() => parseTrainArgs(['--dataset', 'movielens', '--ratings', 'r', '--out', 'm'])).toThrow(/--movies/);
  });
});
