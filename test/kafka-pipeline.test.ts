/**
 * PipelineRunner end to end over each log: events topic -> parse (poison to the dead-letter topic) -> a retried
 * effect that publishes to the recommendations topic; offsets committed only after the dead letters are durable.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { LogRecord } from '../connectors/log.js';
import { partitionForKey } from '../connectors/partitioner.js';
import { DeadLetterBuffer, parseRecords, type DeadLetter } from '../operators/dead-letters.js';
import { Pipeline } from '../operators/pipeline.js';
import { retrying } from '../operators/retry.js';
import { PipelineRunner } from '../operators/runtime.js';
import { parseBehaviourEvent, type BehaviourEvent } from '../schema/events.js';
import { LOG_KINDS, logUnderTest, readUntil, waitFor, type LogUnderTest } from './kafka/harness.js';

function event(userId: string, n: number): string {
  return JSON.stringify({ id: `${userId}-${n}`, type: 'click', userId, itemId: `item-${n % 5}`, ts: 1_700_000_000_000 + n });
}

describe.each(LOG_KINDS)('PipelineRunner over %s', (kind) => {
  let subject: LogUnderTest | undefined;
  afterEach(async () => {
    await subject?.close();
    subject = undefined;
  });

  it('dead-letters a poison message with provenance, keeps its partition moving, and retries a transient failure', async () => {
    subject = await logUnderTest(kind, { events: 3, 'dead-letters': 1, recommendations: 3 });
    const { log } = subject;
    const users = Array.from({ length: 30 }, (_, i) => `user-${i}`);
    const batch = (from: number) => users.flatMap((u) => [from, from + 1].map((n) => ({ key: u, value: event(u, n) })));
    await log.append('events', batch(0));
    const poison = '{"id": "broken", "type": "click", "userId": ';
    const [poisonAt] = await log.append('events', [{ key: 'user-0', value: poison }]);
    await log.append('events', batch(2));
    const received = users.length * 4 + 1;

    const deadLetters = new DeadLetterBuffer();
    const counts = new Map<string, number>();
    let transientFailures = 2;
    const retried: unknown[] = [];
    const pipeline = Pipeline.from<LogRecord>('user-counts', { name: 'events', kind: 'topic' })
      .pipe(parseRecords(parseBehaviourEvent, deadLetters))
      .pipe(
        retrying(
          'publish',
          async (events: readonly BehaviourEvent[]) => {
            if (events.length > 0 && transientFailures > 0) {
              transientFailures--;
              throw new Error('recommendations topic briefly unavailable');
            }
            const next = new Map<string, number>();
            for (const e of events) next.set(e.userId, (next.get(e.userId) ?? counts.get(e.userId) ?? 0) + 1);
            await log.append(
              'recommendations',
              [...next].map(([userId, count]) => ({ key: userId, value: JSON.stringify({ userId, count }) })),
            );
            for (const [userId, count] of next) counts.set(userId, count);
            return events;
          },
          { attempts: 4, initialBackoffMs: 10, onRetry: (error) => retried.push(error) },
        ),
      )
      .routeSide('dead-letters', { name: 'dead-letters', kind: 'topic' });

    const runner = new PipelineRunner(pipeline, {
      log,
      group: 'user-counts',
      topics: ['events'],
      maxBatchRecords: 16,
      checkpoint: () => deadLetters.flush(log, 'dead-letters'),
    }).start();
    const total = () => [...counts.values()].reduce((a, b) => a + b, 0);
    await waitFor(() => total() === users.length * 4, 30_000, 'every valid event counted');
    await runner.stop();

    expect(retried).toHaveLength(2);
    expect(runner.stats.records).toBe(received);
    expect(deadLetters.total).toBe(1);
    for (const u of users) expect(counts.get(u)).toBe(4);

    const reader = log.consumer({ group: 'dlq-reader', topics: ['dead-letters'], pollTimeoutMs: 50 });
    const letters = (await readUntil(reader, (rs) => rs.length >= 1)).map((r) => JSON.parse(r.value) as DeadLetter);
    await reader.close();
    expect(letters).toHaveLength(1);
    expect(letters[0]!.raw).toBe(poison);
    expect(letters[0]!.reason).toMatch(/malformed JSON/);
    expect(letters[0]!.source).toEqual({ topic: 'events', partition: partitionForKey('user-0', 3), offset: poisonAt!.offset });

    const published = (await log.offsets('recommendations')).reduce((n, o) => n + o.high, 0);
    expect(published).toBeGreaterThanOrEqual(users.length);
    const ends = await log.offsets('events');
    const check = log.consumer({ group: 'user-counts', topics: ['events'], pollTimeoutMs: 50 });
    const committed = await check.committed(ends.map((o) => ({ topic: 'events', partition: o.partition })));
    await check.close();
    expect(committed).toEqual(ends.map((o) => o.high));
  }, 60_000);

  it('fails the run, committing nothing of the batch, when a step keeps failing', async () => {
    subject = await logUnderTest(kind, { failing: 1 });
    const { log } = subject;
    await log.append('failing', Array.from({ length: 5 }, (_, n) => ({ key: 'u', value: event('u', n) })));
    const attempts: number[] = [];
    const pipeline = Pipeline.from<LogRecord>('always-failing').pipe(
      retrying(
        'store',
        async () => {
          throw new Error('store down');
        },
        { attempts: 3, initialBackoffMs: 5, onRetry: (_, attempt) => attempts.push(attempt) },
      ),
    );
    const runner = new PipelineRunner(pipeline, { log, group: 'always-failing', topics: ['failing'] }).start();
    await expect(runner.done).rejects.toThrow('store failed after 3 attempts');
    expect(attempts).toEqual([1, 2]);
    const check = log.consumer({ group: 'always-failing', topics: ['failing'], pollTimeoutMs: 50 });
    expect(await check.committed([{ topic: 'failing', partition: 0 }])).toEqual([undefined]);
    await check.close();
  }, 60_000);
});
