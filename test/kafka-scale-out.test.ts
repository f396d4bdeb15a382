/**
 * Scale-out: three worker processes in one group split the partitions, and their combined counts equal what one
 * worker alone computes from the same topic. Every worker then stops gracefully on SIGTERM or SIGINT with exit 0.
 */
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { KAFKA_KINDS, kafkaLog } from './kafka/harness.js';
import { MockBroker } from './kafka/broker.js';
import { WorkerProcess } from './kafka/workers.js';
import { startRedis } from './support/redis.js';

const PARTITIONS = 6;
const EVENTS = 3000;

describe.each(KAFKA_KINDS)('scale-out over %s', (client) => {
  it('three workers in one group equal one worker alone, then shut down cleanly', async () => {
    const broker = await MockBroker.start({ topics: { events: PARTITIONS, 'dead-letters': 1 } });
    const server = await startRedis();
    const redis = new Redis(server.url);
    const log = await kafkaLog(client, broker.bootstrap);
    const workers: WorkerProcess[] = [];
    try {
      const env = (group: string) => ({
        KAFKA_CLIENT: client,
        KAFKA_BROKERS: broker.bootstrap,
        REDIS_URL: server.url,
        TOPIC: 'events',
        GROUP: group,
        COUNTS_KEY: `counts:${group}`,
        MAX_BATCH: '50',
        BATCH_DELAY_MS: '5',
        // Members that stop together leave during each other's rebalance, and a rebalance may wait this long for a
        // member. The default, 30 s, is longer than a worker's 15-s shutdown bound, which a CI run once exceeded.
        REBALANCE_TIMEOUT_MS: '8000',
      });
      const single = WorkerProcess.spawn(env('single'));
      const scaled = [0, 1, 2].map(() => WorkerProcess.spawn(env('scaled')));
      workers.push(single, ...scaled);
      for (const w of workers) w.go();

      // Produce once the group has settled with every worker holding a share, so all three take part.
      const settled = () => {
        const held = scaled.map((w) => lastAssignment(w));
        const all = held.flat().sort((a, b) => a - b);
        return held.every((h) => h.length > 0) && all.join() === [...Array(PARTITIONS).keys()].join() && single.lines.some((l) => l.startsWith('assigned'));
      };
      const settleBy = Date.now() + 120_000;
      while (!settled()) {
        if (Date.now() > settleBy) throw new Error(`group did not settle: ${scaled.map((w) => lastAssignment(w).join(',')).join(' | ')}`);
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
      const records = Array.from({ length: EVENTS }, (_, i) => {
        const userId = `user-${(i * 31) % 101}`;
        return { key: userId, value: JSON.stringify({ id: `e${i}`, type: 'click', userId, itemId: `item-${i % 13}`, ts: 1_700_000_000_000 + i }) };
      });
      for (let i = 0; i < records.length; i += 1000) await log.append('events', records.slice(i, i + 1000));

      const total = async (key: string) => Object.values(await redis.hgetall(key)).reduce((n, v) => n + Number(v), 0);
      const deadline = Date.now() + 240_000;
      while ((await total('counts:single')) < EVENTS || (await total('counts:scaled')) < EVENTS) {
        if (Date.now() > deadline) throw new Error('workers did not finish the topic');
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
      // The workers still split the partitions between them.
      const held = scaled.map((w) => lastAssignment(w));
      expect(held.flat().sort((a, b) => a - b)).toEqual([...Array(PARTITIONS).keys()]);
      expect(held.every((h) => h.length > 0)).toBe(true);

      const stops = workers.map(async (w, i) => {
        const started = Date.now();
        w.kill(i % 2 === 0 ? 'SIGTERM' : 'SIGINT');
        const code = await w.exited;
        return { code, ms: Date.now() - started, stderr: w.stderr };
      });
      for (const stop of await Promise.all(stops)) {
        expect(stop.code, stop.stderr).toBe(0);
        expect(stop.ms).toBeLessThan(30_000);
      }

      const singleCounts = await redis.hgetall('counts:single');
      expect(await redis.hgetall('counts:scaled')).toEqual(singleCounts);
      expect(await total('counts:single')).toBe(EVENTS);
    } finally {
      for (const w of workers) w.kill('SIGKILL');
      await Promise.all(workers.map((w) => w.exited));
      await log.close();
      redis.disconnect();
      await server.close();
      await broker.stop();
    }
  }, 400_000);
});

function lastAssignment(worker: WorkerProcess): number[] {
  const line = worker.lines.filter((l) => l.startsWith('assigned ')).at(-1) ?? 'assigned ';
  return line
    .slice('assigned '.length)
    .split(',')
    .filter((s) => s !== '')
    .map(Number);
}
