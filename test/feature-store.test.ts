import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { EmbeddedLog } from '../connectors/embedded-log.js';
import { MemoryFeatureStore } from '../connectors/memory-store.js';
import type { DeadLetter } from '../operators/dead-letters.js';
import { formatTopology } from '../operators/pipeline.js';
import { featuresPipeline, runFeatures } from '../pipelines/features.js';
import type { BehaviourType } from '../schema/events.js';

const T0 = Date.UTC(2026, 0, 5, 10);
const HOUR = 3_600_000;
const dirs: string[] = [];
afterEach(async () => {
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});

function behaviour(n: number, type: BehaviourType = 'click') {
  return { key: `u${n % 7}`, value: JSON.stringify({ id: `e${n}`, type, userId: `u${n % 7}`, itemId: `i${n % 11}`, ts: T0 + n * 60_000 }) };
}

async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('features pipeline on the embedded log', () => {
  it('describes its graph', () => {
    const store = new MemoryFeatureStore();
    const text = formatTopology(featuresPipeline({ store, deadLetters: { push: () => undefined } }).describe());
    expect(text).toContain('source:topic:events');
    expect(text).toContain('source:topic:items');
    expect(text).toContain('feature-updates');
    expect(text).toContain('--[dead-letters]--> sink:topic:dead-letters');
  });

  it('turns events and metadata into features and dead-letters bad input, every record accounted for', async () => {
    const log = new EmbeddedLog();
    await log.ensureTopic('events', { partitions: 3 });
    const good = Array.from({ length: 200 }, (_, n) => behaviour(n, n % 3 === 0 ? 'impression' : 'click'));
    const bad = [
      { key: 'x', value: '{not json' },
      { key: 'x', value: JSON.stringify({ id: 'b', type: 'click', userId: 'u', itemId: 'i', ts: 'yesterday' }) },
      { key: 'x', value: '{"id":"b","type":"click","userId":"u","itemId":"i","ts":1,"context":{"__proto__":{"polluted":1}}}' },
    ];
    await log.append('events', [...good.slice(0, 100), ...bad, ...good.slice(100)]);
    await log.append('items', [{ key: 'i1', value: JSON.stringify({ type: 'item', itemId: 'i1', ts: T0, fields: { genre: 'rock' } }) }]);
    await log.append('users', [{ key: 'u1', value: JSON.stringify({ type: 'user', userId: 'u1', ts: T0, fields: { country: 'de' } }) }]);
    const store = new MemoryFeatureStore();
    const { runner, deadLetters } = await runFeatures({ log, store, maxBatchRecords: 16 });
    await waitFor(() => runner.stats.records === 205);
    await runner.stop();
    expect(deadLetters.total).toBe(3);
    const letters = (await readTopic(log, 'dead-letters')).map((v) => JSON.parse(v) as DeadLetter);
    expect(letters.map((l) => l.reason).sort()).toEqual([expect.stringMatching(/__proto__/), expect.stringMatching(/malformed JSON/), expect.stringMatching(/^ts: /)]);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    const clicksOfU0 = good.filter((_, n) => n % 7 === 0 && n % 3 !== 0).length;
    const rows = await store.lookup('u0', ['i1'], { ts: T0 + 200 * 60_000 });
    expect(rows.get(0, 'user_click_decayed_30d')).toBeGreaterThan(clicksOfU0 * 0.99);
    expect(rows.get(0, 'user_click_decayed_30d')).toBeLessThanOrEqual(clicksOfU0 + 1e-3);
    const impressionsOfI1 = good.filter((_, n) => n % 11 === 1 && n % 3 === 0).length;
    expect(rows.get(0, 'item_impression_7d')).toBe(impressionsOfI1);
    expect(store.positions().find((p) => p.topic === 'events')).toBeDefined();
    const total = store.positions().filter((p) => p.topic === 'events').reduce((s, p) => s + p.offset, 0);
    expect(total).toBe(203);
    await log.close();
  });

  it('refuses a snapshot written under another feature config, naming the file', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'eddy-features-'));
    dirs.push(dir);
    const written = new MemoryFeatureStore({ snapshotDir: dir, snapshotIntervalMs: 0 });
    await written.update([{ id: 'e1', type: 'click', userId: 'u1', itemId: 'i1', ts: T0 }]);
    await written.close();
    const other = new MemoryFeatureStore({ snapshotDir: dir, features: { user: { histories: [{ name: 'recent', types: ['click'], length: 5 }] } } });
    const error = await other.restore().catch((e: unknown) => e as Error);
    expect(error).toBeInstanceOf(Error);
    expect((error as Error).message).toContain(join(dir, 'features.snapshot'));
    expect(((error as Error).cause as Error).message).toMatch(/another feature config/);
  });

  it('snapshots to a directory and resumes from the stored positions after a restart', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'eddy-features-'));
    dirs.push(dir);
    const log = new EmbeddedLog();
    await log.ensureTopic('events', { partitions: 2 });
    await log.append('events', Array.from({ length: 100 }, (_, n) => behaviour(n)));
    await log.append('items', [{ key: 'i3', value: JSON.stringify({ type: 'item', itemId: 'i3', ts: T0, fields: { genre: ['rock', 'pop'], publishedAt: T0 - HOUR } }) }]);

    const first = new MemoryFeatureStore({ snapshotDir: dir, snapshotIntervalMs: 0 });
    const run1 = await runFeatures({ log, store: first, group: 'g1', maxBatchRecords: 10 });
    await waitFor(() => run1.runner.stats.records === 101);
    await run1.runner.stop();
    await first.close();

    // More input arrives while no worker runs; a new group must not matter: positions come from the snapshot.
    await log.append('events', Array.from({ length: 50 }, (_, n) => behaviour(100 + n)));
    const second = new MemoryFeatureStore({ snapshotDir: dir, snapshotIntervalMs: 0 });
    const run2 = await runFeatures({ log, store: second, group: 'another-group', maxBatchRecords: 10 });
    await waitFor(() => run2.runner.stats.records === 50);
    await run2.runner.stop();

    const reference = new MemoryFeatureStore();
    const run3 = await runFeatures({ log, store: reference, group: 'reference', maxBatchRecords: 10 });
    await waitFor(() => run3.runner.stats.records === 151);
    await run3.runner.stop();

    const context = { ts: T0 + 200 * 60_000, fields: { device: 'mobile' } };
    for (const user of ['u0', 'u3', 'u6']) {
      const got = await second.lookup(user, ['i0', 'i3', 'i5', 'nope'], context);
      const want = await reference.lookup(user, ['i0', 'i3', 'i5', 'nope'], context);
      for (let i = 0; i < want.values.length; i++) expect(got.values[i]).toBeCloseTo(want.values[i]!, 4);
    }
    expect(second.cache.recentItems('u3')).toEqual(reference.cache.recentItems('u3'));
    await log.close();
  });
});

async function readTopic(log: EmbeddedLog, topic: string): Promise<string[]> {
  const out: string[] = [];
  const consumer = log.consumer({ group: `read-${topic}`, topics: [topic], pollTimeoutMs: 10 });
  let batch;
  while ((batch = await consumer.next())) out.push(...batch.records.map((r) => r.value));
  await consumer.close();
  return out;
}
