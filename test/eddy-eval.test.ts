import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { EddyRecommender } from '../pipelines/eddy-recommender.js';
import { runEvalCommand } from '../pipelines/report/eval-command.js';
import { baselines, runEvaluation } from '../pipelines/report/evaluate.js';
import { main as evalEddy } from '../pipelines/eval-eddy-command.js';
import type { BehaviourEvent, ItemEvent } from '../schema/events.js';

const MOVIELENS = join(import.meta.dirname, '../../shared/data/movielens-small');

/** The first `rows` ratings (whole users, as the file is sorted by user): a slice small enough for a test, real enough to have sessions. */
function movieLensSlice(rows: number): { ratings: string; movies: string } {
  const dir = mkdtempSync(join(tmpdir(), 'eddy-eval-slice-'));
  const lines = readFileSync(join(MOVIELENS, 'ratings.csv'), 'utf8').split('\n');
  const ratings = join(dir, 'ratings.csv');
  writeFileSync(ratings, `${lines.slice(0, rows + 1).join('\n')}\n`);
  return { ratings, movies: join(MOVIELENS, 'movies.csv') };
}

const rating = (userId: string, itemId: string, ts: number, value = 5): BehaviourEvent => ({ id: `${userId}-${itemId}-${ts}`, type: 'rating', userId, itemId, ts, value });
const item = (itemId: string, genre: string): ItemEvent => ({ type: 'item', itemId, ts: 0, fields: Object.assign(Object.create(null), { genres: [genre] }) });

describe('EddyRecommender', () => {
  it('recommends through the serving pipeline, never an excluded item, and learns its ranker from positives', async () => {
    const eddy = new EddyRecommender();
    for (const id of ['a', 'b', 'c', 'd', 'e']) await eddy.learn(item(id, id < 'c' ? 'Drama' : 'Comedy'));
    // Users who rate a then b then c in one session make b and c neighbours of a.
    let ts = 1_000;
    for (let u = 0; u < 20; u++) for (const id of ['a', 'b', 'c']) await eddy.learn(rating(`u${u}`, id, (ts += 60_000)));
    await eddy.learn(rating('x', 'a', (ts += 60_000)));
    const list = await eddy.recommend('x', 3, ts + 1, new Set(['a', 'c']));
    expect(list).not.toContain('a');
    expect(list).not.toContain('c');
    expect(list[0]).toBe('b');

    expect(eddy.samples).toBe(0);
    const next = ts + 30_000;
    await eddy.recommend('x', 3, next, new Set(['a']));
    await eddy.learn(rating('x', 'b', next));
    expect(eddy.samples).toBeGreaterThan(1);
    // A low rating is not a positive: no sample.
    const samples = eddy.samples;
    await eddy.recommend('x', 3, next + 1, new Set(['a', 'b']));
    await eddy.learn(rating('x', 'd', next + 1, 2));
    expect(eddy.samples).toBe(samples);
  });

  it('gives the ranker what recall and the catalogue know: release years, popularity and genres next to the recent items', async () => {
    const eddy = new EddyRecommender();
    const YEAR = 365 * 24 * 3_600_000;
    const movie = (itemId: string, genre: string, year: number): ItemEvent => ({ type: 'item', itemId, ts: 0, fields: Object.assign(Object.create(null), { genres: [genre], year }) });
    for (const event of [movie('old', 'Drama', 1995), movie('older', 'Drama', 1993), movie('new', 'Comedy', 2015)]) await eddy.learn(event);
    const now = Date.UTC(2016, 5, 1);
    let ts = now - YEAR;
    for (let u = 0; u < 5; u++) for (const id of ['old', 'older', 'new']) await eddy.learn(rating(`u${u}`, id, (ts += 60_000)));
    await eddy.learn(rating('x', 'old', now - 1000));
    await eddy.recommend('x', 2, now, new Set(['old']));
    const rows = eddy.ranker.extend(await eddy.store.lookup('x', ['older', 'new'], { ts: now }), ['older', 'new']);
    expect(rows.get(0, 'item_year_gap_to_recent')).toBe(1995 - 1993 + 1);
    expect(rows.get(1, 'item_year_gap_to_recent')).toBe(2015 - 1995 + 1);
    expect(rows.get(0, 'item_year_gap_to_recent_below4')).toBe(1);
    expect(rows.get(1, 'item_year_gap_to_recent_below16')).toBe(0);
    expect(rows.get(1, 'item_years_since_release')).toBe(2016 - 2015 + 1);
    expect(rows.get(0, 'item_attribute_share_in_recent')).toBe(1);
    expect(rows.get(1, 'item_attribute_share_in_recent')).toBe(0);
    expect(rows.get(0, 'item_popularity')).toBeGreaterThan(0);
    // Co-visitation found both after 'old'; its first pick is marked as such.
    const firsts = [0, 1].map((i) => rows.get(i, 'recall_covisit_top1'));
    expect(firsts.sort()).toEqual([0, 1]);
  });

  it('beats popularity and item-kNN on a MovieLens slice', { timeout: 120_000 }, async () => {
    const { ratings, movies } = movieLensSlice(12000);
    const result = await runEvaluation({ ratingsPath: ratings, moviesPath: movies, models: [new EddyRecommender(), ...baselines()] });
    const { eddy, popularity, itemknn } = result.models;
    expect(result.evaluated).toBeGreaterThan(1000);
    expect(eddy!.invalidItems).toBe(0);
    expect(eddy!.ndcg).toBeGreaterThan(popularity!.ndcg * 1.5);
    expect(eddy!.ndcg).toBeGreaterThan(itemknn!.ndcg);
  });
});

describe('eddy eval with Eddy', () => {
  it('prints the figures of eddy, popularity and itemknn as JSON on its last line', { timeout: 60_000 }, async () => {
    const { ratings, movies } = movieLensSlice(1500);
    const stdout = new PassThrough();
    let out = '';
    stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    const report = join(mkdtempSync(join(tmpdir(), 'eddy-eval-report-')), 'report.json');
    const code = await runEvalCommand(['--dataset', 'movielens', '--ratings', ratings, '--movies', movies, '--k', '10', '--json', '--no-progress', '--report', report], {
      models: [new EddyRecommender(), ...baselines()],
      stdout,
      stderr: new PassThrough(),
    });
    expect(code).toBe(0);
    const last = JSON.parse(out.trim().split('\n').at(-1)!);
    expect(last).toMatchObject({ protocol: 'prequential', k: 10 });
    expect(Object.keys(last.models).sort()).toEqual(['eddy', 'itemknn', 'popularity']);
    for (const model of Object.values(last.models) as { hr: number; ndcg: number; mrr: number; coverage: number }[]) {
      for (const value of [model.hr, model.ndcg, model.mrr, model.coverage]) expect(value).toBeGreaterThanOrEqual(0);
    }
    expect(last.models.eddy.hr).toBeGreaterThan(0);
    expect(existsSync(report)).toBe(true);
  });

  it('is a command module that rejects bad arguments with exit code 2', async () => {
    const stderr = process.stderr.write;
    let written = '';
    process.stderr.write = ((chunk: string) => ((written += chunk), true)) as typeof process.stderr.write;
    try {
      expect(await evalEddy(['--k', 'zero'])).toBe(2);
    } finally {
      process.stderr.write = stderr;
    }
    expect(written).toContain('--k');
  });
});
