import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CsvParser, parseCsv } from '../pipelines/datasets/csv.js';
import { loadJsonl } from '../pipelines/datasets/jsonl.js';
import { isPositive, loadMovieLens, loadMovieLensSplit, parseTitle, ratingEventId } from '../pipelines/datasets/movielens.js';
import { isBehaviourEvent, parseInputEvent, type BehaviourEvent, type ItemEvent } from '../schema/events.js';

const SHARED = resolve(import.meta.dirname, '..', '..', 'shared', 'data', 'movielens-small');

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'eddy-datasets-'));
}

function write(dir: string, name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

describe('CSV parser', () => {
  it('reads quoted fields with commas, doubled quotes and line breaks, with CRLF or LF', () => {
    const text = 'a,b,c\r\n1,"Heat, The (1995)","say ""hi"""\r\n2,"two\r\nlines",x\n3,,\n';
    const records = parseCsv(text);
    expect(records).toEqual([
      { ok: true, line: 1, fields: ['a', 'b', 'c'] },
      { ok: true, line: 2, fields: ['1', 'Heat, The (1995)', 'say "hi"'] },
      { ok: true, line: 3, fields: ['2', 'two\nlines', 'x'] },
      { ok: true, line: 5, fields: ['3', '', ''] },
    ]);
  });

  it('reports malformed records with their line and goes on', () => {
    const records = parseCsv('a,b\n1,x"y\n2,"ok"z\n3,"fine"\n4,"open');
    expect(records).toEqual([
      { ok: true, line: 1, fields: ['a', 'b'] },
      { ok: false, line: 2, reason: 'a quote inside an unquoted field' },
      { ok: false, line: 3, reason: 'text after a closing quote' },
      { ok: true, line: 4, fields: ['3', 'fine'] },
      { ok: false, line: 5, reason: 'unterminated quoted field at end of input' },
    ]);
  });

  it('gives the same records however the input is chunked', () => {
    const field = fc.oneof(fc.string({ unit: fc.constantFrom('a', ',', '"', '\n', '\r', ' ', 'é') }), fc.constant(''));
    const rows = fc.array(fc.array(field, { minLength: 1, maxLength: 4 }), { minLength: 1, maxLength: 6 });
    fc.assert(
      fc.property(rows, fc.constantFrom('\n', '\r\n'), fc.array(fc.nat(), { maxLength: 8 }), (table, eol, cuts) => {
        const quote = (f: string) => (/[",\r\n]/.test(f) || f === '' ? `"${f.replace(/"/g, '""')}"` : f);
        const text = table.map((row) => row.map(quote).join(',')).join(eol) + eol;
        const points = [...new Set(cuts.map((c) => c % (text.length + 1)))].sort((a, b) => a - b);
        const parser = new CsvParser();
        const out = [];
        let from = 0;
        for (const at of [...points, text.length]) {
          out.push(...parser.push(text.slice(from, at)));
          from = at;
        }
        out.push(...parser.end());
        const expected = table.map((row) => row.map((f) => f.replace(/\r\n|\r/g, '\n')));
        // A row holding one empty field is written as `""`, which reads back as a blank line: no record.
        const kept = expected.filter((row) => !(row.length === 1 && row[0] === ''));
        expect(out.filter((r) => r.ok).map((r) => (r.ok ? r.fields : []))).toEqual(kept);
        expect(out.every((r) => r.ok)).toBe(true);
      }),
      { numRuns: 300 },
    );
  });
});

describe('MovieLens adapter', () => {
  const movies = 'movieId,title,genres\r\n1,Toy Story (1995),Adventure|Animation|Children\r\n2,"American President, The (1995)",Comedy|Drama|Romance\r\n3,Untitled,(no genres listed)\r\n4,"Broken ""quote"" film (2001)",Drama\r\n';

  it('turns ratings into time-ordered rating events and movies and tags into item metadata', async () => {
    const dir = tempDir();
    const ratings = write(dir, 'ratings.csv', 'userId,movieId,rating,timestamp\n7,2,4.5,1000\n7,1,3.0,900\n8,2,2.0,1100\n');
    const moviesPath = write(dir, 'movies.csv', movies);
    const tags = write(dir, 'tags.csv', 'userId,movieId,tag,timestamp\n7,2,politics,500\n8,2,"funny, sweet",1200\n8,2,Politics,1300\n');
    const { events, report } = await loadMovieLens({ ratingsPath: ratings, moviesPath, tagsPath: tags });
    expect(report.badCount).toBe(0);
    expect(events.map((e) => e.ts)).toEqual([...events.map((e) => e.ts)].sort((a, b) => a - b));
    for (const event of events) expect(parseInputEvent(event).ok).toBe(true);

    const ratingsOut = events.filter(isBehaviourEvent);
    expect(ratingsOut).toEqual([
      { id: ratingEventId('7', '1', 900), type: 'rating', userId: '7', itemId: '1', ts: 900_000, value: 3 },
      { id: ratingEventId('7', '2', 1000), type: 'rating', userId: '7', itemId: '2', ts: 1_000_000, value: 4.5 },
      { id: ratingEventId('8', '2', 1100), type: 'rating', userId: '8', itemId: '2', ts: 1_100_000, value: 2 },
    ]);
    expect(ratingsOut.map(isPositive)).toEqual([false, true, false]);

    const items = events.filter((e): e is ItemEvent => e.type === 'item');
    const president = items.filter((e) => e.itemId === '2');
    // First at its first rating with the tag applied before it, then again when a new tag arrives; "Politics"
    // repeats "politics" and brings no update.
    expect(president.map((e) => [e.ts, { ...e.fields }])).toEqual([
      [1_000_000, { title: 'American President, The', year: 1995, genres: ['Comedy', 'Drama', 'Romance'], tags: ['politics'] }],
      [1_200_000, { title: 'American President, The', year: 1995, genres: ['Comedy', 'Drama', 'Romance'], tags: ['politics', 'funny, sweet'] }],
    ]);
    // Never rated: present from time 0.
    expect(items.find((e) => e.itemId === '3')).toMatchObject({ ts: 0, fields: { title: 'Untitled', genres: [], tags: [] } });
    expect(items.find((e) => e.itemId === '4')?.fields.title).toBe('Broken "quote" film');
    // Metadata comes before the rating at the same time.
    const firstRatingOf2 = events.findIndex((e) => isBehaviourEvent(e) && e.itemId === '2');
    expect(events.findIndex((e) => e.type === 'item' && e.itemId === '2')).toBeLessThan(firstRatingOf2);
  });

  it('reports bad rows with their line numbers and keeps the good ones', async () => {
    const dir = tempDir();
    const ratings = write(
      dir,
      'ratings.csv',
      'userId,movieId,rating,timestamp\r\n1,1,4.0,10\r\n1,2,nine,11\r\n1,3,4.0\r\n,1,3.0,12\r\n1,4,5.5,13\r\n2,1,5.0,-1\r\n1,"5,4.0,14\r\n',
    );
    const moviesPath = write(dir, 'movies.csv', movies);
    const { events, report } = await loadMovieLens({ ratingsPath: ratings, moviesPath });
    expect(events.filter(isBehaviourEvent).map((e) => e.id)).toEqual([ratingEventId('1', '1', 10)]);
    expect(report.bad.map((b) => `${b.file}:${b.line}`)).toEqual([3, 4, 5, 6, 7, 8].map((line) => `ratings.csv:${line}`));
    expect(report.badCount).toBe(6);
    expect(report.bad.find((b) => b.line === 3)?.reason).toMatch(/rating "nine"/);
    expect(report.bad.find((b) => b.line === 4)?.reason).toMatch(/expected 4 fields, got 3/);
    expect(report.bad.find((b) => b.line === 7)?.reason).toMatch(/timestamp "-1"/);
    expect(report.bad.find((b) => b.line === 8)?.reason).toMatch(/unterminated/);
  });

  it('refuses a file with the wrong header, naming the file', async () => {
    const dir = tempDir();
    const ratings = write(dir, 'ratings.csv', 'movieId,title,genres\n1,x,y\n');
    const moviesPath = write(dir, 'movies.csv', movies);
    await expect(loadMovieLens({ ratingsPath: ratings, moviesPath })).rejects.toThrow(/ratings\.csv: expected the header "userId,movieId,rating,timestamp"/);
  });

  it('splits metadata between train and test by time', async () => {
    const dir = tempDir();
    const train = write(dir, 'train.csv', 'userId,movieId,rating,timestamp\n1,1,4,100\n');
    const test = write(dir, 'test.csv', 'userId,movieId,rating,timestamp\n1,2,4,200\n');
    const moviesPath = write(dir, 'movies.csv', movies);
    const split = await loadMovieLensSplit({ trainPath: train, testPath: test, moviesPath });
    expect(split.train.map((e) => `${e.type}:${'itemId' in e ? e.itemId : ''}@${e.ts}`)).toEqual(['item:3@0', 'item:4@0', 'item:1@100000', 'rating:1@100000']);
    expect(split.test.map((e) => `${e.type}:${'itemId' in e ? e.itemId : ''}@${e.ts}`)).toEqual(['item:2@200000', 'rating:2@200000']);
  });

  it('parses titles with and without a year', () => {
    expect(parseTitle('Heat (1995)')).toEqual({ title: 'Heat', year: 1995 });
    expect(parseTitle('Babylon 5')).toEqual({ title: 'Babylon 5' });
    expect(parseTitle('Cosmos (1980-1981) ')).toEqual({ title: 'Cosmos', year: 1980 });
  });

  it('reads a slice of the real ml-latest-small files', async () => {
    const dir = tempDir();
    // The first 2000 ratings, CRLF line ends as shipped.
    const { readFileSync } = await import('node:fs');
    const head = readFileSync(join(SHARED, 'ratings.csv'), 'utf8').split('\r\n').slice(0, 2001).join('\r\n') + '\r\n';
    const ratings = write(dir, 'ratings.csv', head);
    const { events, report } = await loadMovieLens({ ratingsPath: ratings, moviesPath: join(SHARED, 'movies.csv'), tagsPath: join(SHARED, 'tags.csv') });
    expect(report.badCount).toBe(0);
    const behaviour = events.filter(isBehaviourEvent) as BehaviourEvent[];
    expect(behaviour).toHaveLength(2000);
    expect(new Set(behaviour.map((e) => e.id)).size).toBe(2000);
    const items = events.filter((e): e is ItemEvent => e.type === 'item');
    expect(new Set(items.map((e) => e.itemId)).size).toBe(9742);
    const toyStory = items.find((e) => e.itemId === '1')!;
    expect(toyStory.fields.genres).toEqual(['Adventure', 'Animation', 'Children', 'Comedy', 'Fantasy']);
    for (const event of events.slice(0, 3000)) expect(parseInputEvent(event).ok).toBe(true);
  });
});

describe('JSONL adapter', () => {
  it('validates each line, reports bad ones by line number, and orders by time with metadata first', async () => {
    const dir = tempDir();
    const lines = [
      JSON.stringify({ id: 'e1', type: 'click', userId: 'u', itemId: 'a', ts: 20 }),
      '',
      '{not json',
      JSON.stringify({ type: 'item', itemId: 'a', ts: 20, fields: { title: 'A' } }),
      JSON.stringify({ id: 'e2', type: 'teleport', userId: 'u', itemId: 'a', ts: 5 }),
      JSON.stringify({ id: 'e3', type: 'view', userId: 'u', itemId: 'b', ts: 10 }),
    ];
    const path = write(dir, 'events.jsonl', lines.join('\r\n') + '\r\n');
    const { events, report } = await loadJsonl(path);
    expect(events.map((e) => ('id' in e ? e.id : `item:${e.type === 'item' ? e.itemId : ''}`))).toEqual(['e3', 'item:a', 'e1']);
    expect(report.rows).toBe(5);
    expect(report.bad.map((b) => b.line)).toEqual([3, 5]);
    expect(report.bad[0]!.reason).toMatch(/malformed JSON/);
    expect(report.bad[1]!.reason).toMatch(/^type: /);
  });
});
