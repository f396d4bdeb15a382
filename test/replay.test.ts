import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { MemoryFeatureStore } from '../connectors/memory-store.js';
import { parseReplayArgs, ReplayArgsError, runReplayCommand } from '../pipelines/replay-command.js';
import { replay } from '../pipelines/replay.js';
import type { InputEvent } from '../schema/events.js';

function sessionEvents(): InputEvent[] {
  const events: InputEvent[] = [];
  for (const id of ['a', 'b', 'c']) events.push({ type: 'item', itemId: id, ts: 0, fields: Object.assign(Object.create(null), { genres: ['Drama'] }) });
  let ts = 1_000;
  for (let u = 0; u < 10; u++) {
    for (const id of ['a', 'b', 'c']) events.push({ id: `u${u}-${id}`, type: 'click', userId: `u${u}`, itemId: id, ts: (ts += 60_000) });
  }
  events.push({ type: 'user', userId: 'u0', ts: (ts += 1), fields: Object.assign(Object.create(null), { country: 'NZ' }) });
  return events;
}

describe('replay', () => {
  it('runs every event through the features and recall pipelines and snapshots the store', async () => {
    const snapshotDir = mkdtempSync(join(tmpdir(), 'eddy-replay-'));
    const events = sessionEvents();
    const progress: number[] = [];
    const { summary, store, stack } = await replay({ events, batchSize: 7, snapshotDir, onProgress: (p) => progress.push(p.appended) });
    expect(summary).toMatchObject({ events: events.length, behaviourEvents: 30, itemEvents: 3, userEvents: 1, deadLetters: 0 });
    expect(summary.processed.features).toBe(events.length);
    expect(summary.processed.recall).toBe(events.length - 1);
    expect(progress.at(-1)).toBe(events.length);
    expect(store.cache.recentItems('u3')).toEqual(['c', 'b', 'a']);
    expect(stack.covisitation.neighbours('a', 5, events.at(-1)!.ts).map((n) => n.itemId).sort()).toEqual(['b', 'c']);
    expect(readdirSync(snapshotDir).length).toBe(1);
    const restored = new MemoryFeatureStore({ snapshotDir });
    await restored.restore();
    expect(restored.cache.recentItems('u3')).toEqual(['c', 'b', 'a']);
  });

  it('paces the stream at the requested speed, shortening long gaps', async () => {
    const events = sessionEvents();
    const slept: number[] = [];
    const { summary } = await replay({
      events,
      speed: 60,
      batchSize: 1,
      maxGapMs: 30_000,
      sleep: async (ms) => {
        slept.push(ms);
      },
    });
    expect(summary.events).toBe(events.length);
    // Every 60 s of event time is shortened to 30 s, then played 60 times faster: about 0.5 s of wall time each.
    expect(slept.length).toBeGreaterThan(20);
    expect(Math.max(...slept)).toBeLessThanOrEqual(30 * 30_000 / 60);
    expect(Math.max(...slept)).toBeGreaterThan(400);
  });

  it('dead-letters what does not parse instead of failing', async () => {
    const events = sessionEvents();
    const bad = { id: 'x', type: 'click', userId: '', itemId: 'a', ts: 5 } as unknown as InputEvent;
    const { summary } = await replay({ events: [...events, bad] });
    expect(summary.deadLetters).toBe(2);
    expect(summary.processed.features).toBe(events.length + 1);
  });
});

describe('eddy replay', () => {
  it('replays a JSONL file and prints its summary as JSON', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'eddy-replay-cmd-'));
    const path = join(dir, 'events.jsonl');
    writeFileSync(path, `${sessionEvents().map((e) => JSON.stringify(e)).join('\r\n')}\r\nnot json\r\n`);
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    let out = '';
    let err = '';
    stdout.on('data', (c: Buffer) => (out += c.toString()));
    stderr.on('data', (c: Buffer) => (err += c.toString()));
    const snapshot = join(dir, 'snap');
    const code = await runReplayCommand(['--dataset', 'jsonl', '--events', path, '--json', '--snapshot', snapshot], { stdout, stderr });
    expect(code).toBe(0);
    const summary = JSON.parse(out.trim().split('\n').at(-1)!);
    expect(summary).toMatchObject({ events: 34, behaviourEvents: 30, badRows: 1, snapshotDir: snapshot });
    expect(err).toContain('events.jsonl:35');
    expect(existsSync(snapshot)).toBe(true);
  });

  it('replays a MovieLens slice through the pipelines', { timeout: 60_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'eddy-replay-ml-'));
    const data = join(import.meta.dirname, '../../shared/data/movielens-small');
    const ratings = join(dir, 'ratings.csv');
    writeFileSync(ratings, `${readFileSync(join(data, 'ratings.csv'), 'utf8').split('\n').slice(0, 801).join('\n')}\n`);
    const stdout = new PassThrough();
    let out = '';
    stdout.on('data', (c: Buffer) => (out += c.toString()));
    const code = await runReplayCommand(['--ratings', ratings, '--movies', join(data, 'movies.csv'), '--json', '--no-progress'], { stdout, stderr: new PassThrough() });
    expect(code).toBe(0);
    const summary = JSON.parse(out.trim().split('\n').at(-1)!);
    expect(summary.behaviourEvents).toBe(800);
    expect(summary.processed.features).toBe(summary.events);
    expect(summary.features.users).toBeGreaterThan(1);
    expect(summary.recall.covisitedItems).toBeGreaterThan(100);
  });

  it('explains bad arguments', async () => {
    expect(() => parseReplayArgs(['--dataset', 'movielens', '--movies', 'm.csv'])).toThrow(ReplayArgsError);
    expect(() => parseReplayArgs(['--dataset', 'jsonl', '--events', 'e', '--speed', 'fast'])).toThrow(/--speed/);
    expect(parseReplayArgs(['--dataset=jsonl', '--events', 'e', '--speed', '60'])).toMatchObject({ speed: 60, dataset: 'jsonl' });
    const stderr = new PassThrough();
    let err = '';
    stderr.on('data', (c: Buffer) => (err += c.toString()));
    expect(await runReplayCommand(['--bogus'], { stderr })).toBe(2);
    expect(err).toContain('unknown option --bogus');
  });
});
