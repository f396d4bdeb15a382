import { concatMap, map } from 'rxjs';
import { describe, expect, it } from 'vitest';
import { EmbeddedLog } from '../connectors/embedded-log.js';
import type { LogRecord } from '../connectors/log.js';
import { withItems, type SourcePosition } from '../operators/batch.js';
import { DeadLetterBuffer, parseRecords } from '../operators/dead-letters.js';
import { defineOperator, type Operator } from '../operators/operator.js';
import { formatTopology, Pipeline } from '../operators/pipeline.js';
import { PipelineRunner } from '../operators/runtime.js';
import { parseInputEvent, type InputEvent } from '../schema/events.js';

const click = (i: number) =>
  JSON.stringify({ id: `e${i}`, type: 'click', userId: `u${i % 7}`, itemId: `i${i % 11}`, ts: 1_700_000_000_000 + i });

/** An operator whose work finishes later, as a store write would. */
function slow<T>(delayMs: number, onItems?: (n: number) => void): Operator<T, T> {
  return defineOperator({ name: 'slow', kind: 'test' }, (source$) =>
    source$.pipe(
      concatMap(async (batch) => {
        await new Promise((resolve) => setTimeout(resolve, delayMs));
        onItems?.(batch.items.length);
        return batch;
      }),
    ),
  );
}

function counter<T>(counts: { processed: number }): Operator<T, T> {
  return defineOperator({ name: 'count', kind: 'test' }, (source$) =>
    source$.pipe(
      map((batch) => {
        counts.processed += batch.items.length;
        return batch;
      }),
    ),
  );
}

async function waitFor(condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('timed out waiting for condition');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

describe('PipelineRunner', () => {
  it('accounts for every record: processed plus dead-lettered equals received', async () => {
    const log = new EmbeddedLog();
    await log.ensureTopic('events', { partitions: 3 });
    const bad = ['{not json', '{"type":"click"}', JSON.stringify({ __proto__: 1 }), '[]', 'null', '"x"'.repeat(30_000)];
    const good = Array.from({ length: 500 }, (_, i) => click(i));
    const all = [...good.slice(0, 250), ...bad, ...good.slice(250)];
    await log.append('events', all.map((value, i) => ({ key: `u${i % 7}`, value })));

    const deadLetters = new DeadLetterBuffer();
    const counts = { processed: 0 };
    const pipeline = Pipeline.from<LogRecord>('test', { name: 'events', kind: 'topic' })
      .pipe(parseRecords<InputEvent>(parseInputEvent, deadLetters))
      .pipe(counter(counts));
    const runner = new PipelineRunner(pipeline, {
      log,
      group: 'g',
      topics: ['events'],
      checkpoint: () => deadLetters.flush(log, 'dead-letters'),
    }).start();
    await waitFor(() => runner.stats.records === all.length);
    await runner.stop();

    expect(counts.processed).toBe(good.length);
    expect(deadLetters.total).toBe(bad.length);
    expect(counts.processed + deadLetters.total).toBe(runner.stats.records);
    const letters = (await drainTopic(log, 'dead-letters')).map((r) => JSON.parse(r.value));
    expect(letters).toHaveLength(bad.length);
    expect(letters.map((l) => l.raw).sort()).toEqual([...bad].sort());
    for (const letter of letters) {
      expect(letter.reason).toEqual(expect.any(String));
      expect(letter.source.topic).toBe('events');
      expect(letter.source.offset).toEqual(expect.any(Number));
    }
  });

  it('commits only after the checkpoint made the work durable, and only finished batches', async () => {
    const log = new EmbeddedLog();
    await log.ensureTopic('t', { partitions: 1 });
    await log.append('t', Array.from({ length: 100 }, (_, i) => ({ key: null, value: String(i) })));
    const order: string[] = [];
    let processed = 0;
    const pipeline = Pipeline.from<LogRecord>('test').pipe(slow(2, (n) => (processed += n)));
    const consumer = log.consumer({ group: 'probe', topics: [] });
    const runner = new PipelineRunner(pipeline, {
      log,
      group: 'g',
      topics: ['t'],
      maxBatchRecords: 10,
      checkpoint: async (positions: readonly SourcePosition[]) => {
        const [committed] = await consumer.committed([{ topic: 't', partition: 0 }]);
        // Work up to the position is done before the checkpoint, and nothing newer has been committed yet.
        expect(processed).toBeGreaterThanOrEqual(positions[0]!.offset);
        expect(committed ?? 0).toBeLessThan(positions[0]!.offset);
        order.push(`checkpoint ${positions[0]!.offset}`);
      },
    }).start();
    await waitFor(() => processed === 100);
    await runner.stop();
    await consumer.close();
    expect(order.at(-1)).toBe('checkpoint 100');
    const probe = log.consumer({ group: 'g', topics: ['t'] });
    expect(await probe.committed([{ topic: 't', partition: 0 }])).toEqual([100]);
    await probe.close();
  });

  it('does not commit a batch whose processing failed, so it is read again', async () => {
    const log = new EmbeddedLog();
    await log.ensureTopic('t', { partitions: 1 });
    await log.append('t', Array.from({ length: 30 }, (_, i) => ({ key: null, value: String(i) })));
    const failing = defineOperator<LogRecord, LogRecord>({ name: 'fail', kind: 'test' }, (source$) =>
      source$.pipe(
        map((batch) => {
          if (batch.items.some((r) => r.value === '25')) throw new Error('store unavailable');
          return batch;
        }),
      ),
    );
    const runner = new PipelineRunner(Pipeline.from<LogRecord>('test').pipe(failing), {
      log,
      group: 'g',
      topics: ['t'],
      maxBatchRecords: 10,
      maxInFlight: 1,
    }).start();
    await expect(runner.done).rejects.toThrow('store unavailable');
    const probe = log.consumer({ group: 'g', topics: ['t'] });
    expect(await probe.committed([{ topic: 't', partition: 0 }])).toEqual([20]);
    await probe.close();
  });

  it('keeps memory bounded with a fast source and a slow sink', async () => {
    const log = new EmbeddedLog({ retentionRecords: 2_000_000 });
    await log.ensureTopic('t', { partitions: 4 });
    const total = 200_000;
    for (let i = 0; i < total; i += 10_000) {
      await log.append('t', Array.from({ length: 10_000 }, (_, j) => ({ key: `k${(i + j) % 1000}`, value: 'x' })));
    }
    const maxInFlight = 2;
    const maxBatchRecords = 500;
    let done = 0;
    let maxUnfinished = 0;
    const runner = new PipelineRunner(
      Pipeline.from<LogRecord>('test').pipe(
        slow(1, (n) => {
          done += n;
        }),
      ),
      { log, group: 'g', topics: ['t'], maxInFlight, maxBatchRecords },
    );
    const watch = setInterval(() => {
      maxUnfinished = Math.max(maxUnfinished, runner.stats.records - done);
    }, 1);
    runner.start();
    await waitFor(() => done >= 20_000, 30_000);
    await runner.stop();
    clearInterval(watch);
    // The source stopped fetching at the in-flight bound instead of buffering the 200k records it could have read.
    expect(maxUnfinished).toBeLessThanOrEqual(maxInFlight * maxBatchRecords);
    expect(runner.stats.records).toBeLessThan(total);
  });

  it('lets the event loop turn between batches, so a backlog does not starve the rest of the process', async () => {
    const log = new EmbeddedLog();
    await log.ensureTopic('t', { partitions: 1 });
    const total = 5000;
    await log.append('t', Array.from({ length: total }, () => ({ key: null, value: 'x' })));
    const counts = { processed: 0 };
    const runner = new PipelineRunner(Pipeline.from<LogRecord>('test').pipe(counter(counts)), { log, group: 'g', topics: ['t'], maxBatchRecords: 100 });
    // What another task in the process sees of the progress, once per turn of the event loop.
    const seen: number[] = [];
    const watch = () => {
      seen.push(counts.processed);
      if (counts.processed < total) setImmediate(watch);
    };
    runner.start();
    setImmediate(watch);
    await waitFor(() => counts.processed === total);
    await runner.stop();
    // 50 batches of 100: with the loop turning between batches, the watcher sees the count rise in many steps.
    expect(new Set(seen).size).toBeGreaterThanOrEqual(25);
  });

  it('drains in-flight batches and commits before a rebalance takes partitions away', async () => {
    const log = new EmbeddedLog();
    await log.ensureTopic('t', { partitions: 2 });
    await log.append('t', Array.from({ length: 400 }, (_, i) => ({ key: `k${i}`, value: String(i) })));
    const seen: string[] = [];
    const record = (name: string) =>
      defineOperator<LogRecord, LogRecord>({ name: 'record', kind: 'test' }, (source$) =>
        source$.pipe(
          concatMap(async (batch) => {
            await new Promise((resolve) => setTimeout(resolve, 3));
            for (const r of batch.items) seen.push(`${r.partition}:${r.offset}`);
            return withItems(batch, batch.items);
          }),
        ),
      );
    const first = new PipelineRunner(Pipeline.from<LogRecord>('a').pipe(record('a')), {
      log,
      group: 'g',
      topics: ['t'],
      maxBatchRecords: 20,
    }).start();
    await waitFor(() => seen.length >= 100);
    const second = new PipelineRunner(Pipeline.from<LogRecord>('b').pipe(record('b')), {
      log,
      group: 'g',
      topics: ['t'],
      maxBatchRecords: 20,
    }).start();
    await waitFor(() => seen.length >= 400);
    await Promise.all([first.stop(), second.stop()]);
    // Every record processed exactly once across the hand-over.
    expect(new Set(seen).size).toBe(400);
    expect(seen).toHaveLength(400);
  });
});

describe('Pipeline.describe', () => {
  it('prints sources, operators, side outputs and sinks', () => {
    const pipeline = Pipeline.from<LogRecord>('features', { name: 'events', kind: 'topic' })
      .pipe(parseRecords(parseInputEvent, new DeadLetterBuffer()))
      .routeSide('dead-letters', { name: 'dead-letters', kind: 'topic' })
      .to({ name: 'feature-store', kind: 'store' });
    const topology = pipeline.describe();
    expect(topology.nodes.map((n) => n.id)).toEqual([
      'source:topic:events',
      '1:parse',
      'sink:topic:dead-letters',
      'sink:store:feature-store',
    ]);
    expect(topology.edges).toContainEqual({ from: '1:parse', to: 'sink:topic:dead-letters', output: 'dead-letters' });
    expect(formatTopology(topology)).toContain('--[dead-letters]--> sink:topic:dead-letters');
  });
});

async function drainTopic(log: EmbeddedLog, topic: string): Promise<LogRecord[]> {
  const consumer = log.consumer({ group: `drain-${topic}-${Math.random()}`, topics: [topic], pollTimeoutMs: 20 });
  const records: LogRecord[] = [];
  for (;;) {
    const batch = await consumer.next();
    if (!batch) break;
    records.push(...batch.records);
  }
  await consumer.close();
  return records;
}
