/**
 * The crash loop shared by the per-client test files: a worker counting events per user into Redis is killed with
 * SIGKILL at random points, over and over, while it works through the topic; then a last worker finishes and is
 * stopped with SIGTERM. The counts must equal the exact expected values: nothing lost, nothing counted twice.
 */
import { Redis } from 'ioredis';
import { expect } from 'vitest';
import type { LogKind } from '../../connectors/kafka/config.js';
import { startRedis } from '../support/redis.js';
import { MockBroker } from './broker.js';
import { kafkaLog } from './harness.js';
import { WorkerProcess } from './workers.js';

export interface CrashLoopOptions {
  readonly kills: number;
  readonly events: number;
  readonly users: number;
  readonly partitions: number;
}

export async function crashLoop(client: LogKind, options: CrashLoopOptions): Promise<{ kills: number; totalAtLastKill: number }> {
  const broker = await MockBroker.start({ topics: { events: options.partitions, 'dead-letters': 1 } });
  const server = await startRedis();
  const redis = new Redis(server.url);
  const log = await kafkaLog(client, broker.bootstrap);
  const workers: WorkerProcess[] = [];
  try {
    // Skewed per-user counts, so a record counted twice or lost shows in some user's total.
    const expected = new Map<string, number>();
    const records = Array.from({ length: options.events }, (_, i) => {
      const userId = `user-${(i * i + 7 * i) % options.users}`;
      expected.set(userId, (expected.get(userId) ?? 0) + 1);
      return { key: userId, value: JSON.stringify({ id: `e${i}`, type: 'view', userId, itemId: `item-${i % 97}`, ts: 1_700_000_000_000 + i }) };
    });
    for (let i = 0; i < records.length; i += 1000) await log.append('events', records.slice(i, i + 1000));

    const env = {
      KAFKA_CLIENT: client,
      KAFKA_BROKERS: broker.bootstrap,
      REDIS_URL: server.url,
      GROUP: 'crash-loop',
      TOPIC: 'events',
      BATCH_DELAY_MS: '10',
      MAX_BATCH: '20',
      SESSION_TIMEOUT_MS: '2500',
      REBALANCE_TIMEOUT_MS: '4000',
    };
    const total = async () => Object.values(await redis.hgetall('counts')).reduce((n, v) => n + Number(v), 0);
    const spawn = () => {
      const worker = WorkerProcess.spawn(env);
      workers.push(worker);
      return worker;
    };

    let warm = spawn();
    let kills = 0;
    let totalAtLastKill = 0;
    while (kills < options.kills) {
      const worker = warm;
      worker.go();
      warm = spawn();
      await worker.waitForLine(/^assigned/, 1, 120_000);
      // A random point: after 0 to 15 batches, plus up to 40 ms, so kills land in processing and in checkpoints.
      const batches = Math.floor(Math.random() * 16);
      if (batches > 0) await worker.waitForLine(/^batch/, batches, 120_000);
      await new Promise((resolve) => setTimeout(resolve, Math.random() * 40));
      worker.kill('SIGKILL');
      await worker.exited;
      kills++;
      totalAtLastKill = await total();
      expect(totalAtLastKill, 'the topic must outlast the kills').toBeLessThan(options.events);
    }

    const last = warm;
    last.go();
    const deadline = Date.now() + 180_000;
    while ((await total()) < options.events && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
    last.kill('SIGTERM');
    expect(await last.exited, last.stderr).toBe(0);

    const counts = await redis.hgetall('counts');
    expect(Object.keys(counts).sort()).toEqual([...expected.keys()].sort());
    for (const [userId, count] of expected) expect(Number(counts[userId]), userId).toBe(count);

    // The graceful stop committed everything to the group as well.
    const ends = await log.offsets('events');
    const stored = await redis.hgetall('offsets:crash-loop');
    expect(ends.map((e) => Number(stored[`events/${e.partition}`]))).toEqual(ends.map((e) => e.high));
    const check = log.consumer({ group: 'crash-loop', topics: ['events'] });
    const committed = await check.committed(ends.map((e) => ({ topic: 'events', partition: e.partition })));
    expect(committed, `the last worker's stderr: ${last.stderr}`).toEqual(ends.map((e) => e.high));
    await check.close();
    return { kills, totalAtLastKill };
  } finally {
    for (const w of workers) w.kill('SIGKILL');
    await Promise.all(workers.map((w) => w.exited));
    await log.close();
    redis.disconnect();
    await server.close();
    await broker.stop();
  }
}
