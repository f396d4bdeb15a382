import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import type { Recommender } from '../models/evaluation/recommender.js';
import { EvalArgsError, parseEvalArgs, runEvalCommand } from '../pipelines/report/eval-command.js';
import { runEvaluation, summarise } from '../pipelines/report/evaluate.js';
import type { InputEvent } from '../schema/events.js';

function fixture() {
  const dir = mkdtempSync(join(tmpdir(), 'eddy-eval-'));
  const write = (name: string, text: string) => {
    const path = join(dir, name);
    writeFileSync(path, text);
    return path;
  };
  const movies = write('movies.csv', 'movieId,title,genres\r\n1,"Heat, The (1995)",Action\r\n2,B (2000),Drama\r\n3,C (2001),Drama\r\n');
  const rows = ['1,1,5.0,10', '2,1,4.0,20', '2,2,4.5,30', '3,1,5.0,40', '3,2,4.0,50', '1,2,5.0,60', '1,3,1.0,70', 'oops,row', '4,3,4.0,80'];
  const ratings = write('ratings.csv', `userId,movieId,rating,timestamp\r\n${rows.join('\r\n')}\r\n`);
  const train = write('train.csv', `userId,movieId,rating,timestamp\n${rows.slice(0, 4).join('\n')}\n`);
  const test = write('test.csv', `userId,movieId,rating,timestamp\n${rows.slice(4).join('\n')}\n`);
  return { dir, movies, ratings, train, test, write };
}

class Recorder implements Recommender {
  readonly seen: string[] = [];
  constructor(readonly name: string) {}
  recommend(): string[] {
    return ['1', '2'];
  }
  learn(event: InputEvent): void {
    this.seen.push(`${event.type}@${event.ts}`);
  }
}

describe('runEvaluation', () => {
  it('replays a MovieLens dataset through every model and reports bad rows', async () => {
    const { movies, ratings } = fixture();
    const a = new Recorder('a');
    const result = await runEvaluation({ ratingsPath: ratings, moviesPath: movies, k: 2, models: [a] });
    expect(result.events).toBe(8);
    // Positive ratings of items new to the user: all but "1,3,1.0".
    expect(result.evaluated).toBe(7);
    expect(result.dataset.badRows).toBe(1);
    expect(result.dataset.bad[0]).toMatchObject({ file: 'ratings.csv', line: 9 });
    expect(a.seen.filter((s) => s.startsWith('rating'))).toHaveLength(8);
    expect(a.seen.filter((s) => s.startsWith('item'))).toHaveLength(3);
    expect(summarise(result)).toEqual({
      protocol: 'prequential',
      events: 8,
      evaluated: 7,
      k: 2,
      models: { a: { hr: result.models.a!.hr, ndcg: result.models.a!.ndcg, mrr: result.models.a!.mrr, coverage: result.models.a!.coverage, novelty: result.models.a!.novelty } },
    });
  });

  it('learns the train file first and scores only the test file', async () => {
    const { movies, train, test } = fixture();
    const result = await runEvaluation({ trainPath: train, testPath: test, moviesPath: movies, k: 2 });
    expect(result.trainEvents).toBe(4);
    expect(result.events).toBe(4);
    expect(result.evaluated).toBe(3);
    expect(Object.keys(result.models)).toEqual(['popularity', 'itemknn']);
  });

  it('reads JSONL events too', async () => {
    const { write } = fixture();
    const events = write('events.jsonl', [
      JSON.stringify({ id: '1', type: 'click', userId: 'u', itemId: 'a', ts: 1 }),
      JSON.stringify({ id: '2', type: 'click', userId: 'v', itemId: 'a', ts: 2 }),
    ].join('\n'));
    const result = await runEvaluation({ dataset: 'jsonl', ratingsPath: events, k: 5 });
    expect(result.evaluated).toBe(2);
    expect(result.models.popularity!.hr).toBe(0.5); // v gets a, learned from u
  });

  it('fails clearly on inconsistent inputs', async () => {
    const { movies, ratings, train } = fixture();
    await expect(runEvaluation({ trainPath: train, moviesPath: movies })).rejects.toThrow(/give both or neither/);
    await expect(runEvaluation({ ratingsPath: ratings })).rejects.toThrow(/movies file is required/);
    await expect(runEvaluation({ ratingsPath: join(movies, 'missing.csv'), moviesPath: movies })).rejects.toThrow(/cannot read/);
  });
});

describe('eddy eval arguments', () => {
  it('parses both flag styles with defaults', () => {
    expect(parseEvalArgs(['--dataset', 'movielens', '--ratings', 'r.csv', '--movies=m.csv', '--k', '20', '--json'])).toEqual({
      help: false,
      dataset: 'movielens',
      ratingsPath: 'r.csv',
      moviesPath: 'm.csv',
      k: 20,
      buckets: 40,
      json: true,
      progress: true,
    });
    expect(parseEvalArgs(['--train', 'a', '--test', 'b', '--movies', 'm', '--tags', 't', '--no-progress'])).toMatchObject({ trainPath: 'a', testPath: 'b', tagsPath: 't', k: 10, progress: false, json: false });
  });

  it.each([
    [['--ratings', 'r'], /--movies FILE is required/],
    [['--movies', 'm'], /--ratings FILE \(or --train FILE --test FILE\) is required/],
    [['--ratings', 'r', '--movies', 'm', '--k', '0'], /--k must be a positive whole number, got "0"/],
    [['--ratings', 'r', '--movies', 'm', '--k', 'ten'], /--k must be a positive whole number/],
    [['--ratings', 'r', '--movies', 'm', '--train', 't'], /--test is missing/],
    [['--ratings', 'r', '--movies', 'm', '--train', 't', '--test', 'u'], /not both/],
    [['--ratings', '--movies', 'm'], /--ratings needs a value/],
    [['--ratings', 'r', '--movies', 'm', '--colour'], /unknown option --colour/],
    [['--dataset', 'netflix'], /--dataset must be movielens or jsonl/],
    [['--dataset', 'jsonl', '--ratings', 'r'], /--ratings does not apply to --dataset jsonl; use --events/],
    [['ratings.csv'], /unexpected argument "ratings.csv"/],
    [['--ratings', 'r', '--ratings', 's', '--movies', 'm'], /--ratings is given twice/],
  ])('rejects %j', (argv, message) => {
    expect(() => parseEvalArgs(argv)).toThrow(EvalArgsError);
    expect(() => parseEvalArgs(argv)).toThrow(message);
  });

  it('runs, writes its reports and prints the summary as the last stdout line', async () => {
    const { dir, movies, ratings } = fixture();
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    let out = '';
    let err = '';
    stdout.on('data', (chunk) => (out += chunk));
    stderr.on('data', (chunk) => (err += chunk));
    const code = await runEvalCommand(
      ['--dataset', 'movielens', '--ratings', ratings, '--movies', movies, '--k', '10', '--json', '--no-progress', '--report', join(dir, 'r.json'), '--html', join(dir, 'r.html')],
      { stdout, stderr },
    );
    expect(code).toBe(0);
    const last = JSON.parse(out.trim().split('\n').at(-1)!);
    expect(last).toMatchObject({ protocol: 'prequential', events: 8, evaluated: 7, k: 10 });
    expect(Object.keys(last.models)).toEqual(['popularity', 'itemknn']);
    expect(Object.keys(last.models.itemknn)).toEqual(['hr', 'ndcg', 'mrr', 'coverage', 'novelty']);
    expect(err).toContain('bad row ratings.csv:9');
    expect(JSON.parse(readFileSync(join(dir, 'r.json'), 'utf8')).overTime.series.length).toBeGreaterThan(0);
    expect(readFileSync(join(dir, 'r.html'), 'utf8')).toContain('chart-latency');
  });

  it('answers bad arguments with exit code 2 and the usage', async () => {
    const stderr = new PassThrough();
    let err = '';
    stderr.on('data', (chunk) => (err += chunk));
    expect(await runEvalCommand(['--k', '3'], { stderr, stdout: new PassThrough() })).toBe(2);
    expect(err).toMatch(/^eddy eval: --ratings FILE/);
    expect(err).toContain('usage: eddy eval');
  });
});
