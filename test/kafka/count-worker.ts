/**
 * A worker process for the crash-loop and scale-out tests: counts behaviour events per user into Redis with the
 * offsets in the same MULTI/EXEC, restores those offsets on assign, and shuts down gracefully on SIGTERM.
 *
 * Env: KAFKA_CLIENT, KAFKA_BROKERS, REDIS_URL, GROUP, TOPIC, plus optional COUNTS_KEY (default `counts`), BATCH_DELAY_MS (slows each batch so a
 * test can kill it mid-stream), MAX_BATCH, SESSION_TIMEOUT_MS, REBALANCE_TIMEOUT_MS, and WAIT_FOR_GO=1 (start only after a `go` line on
 * stdin, so a test can keep a warm process ready). Prints `assigned <partitions>` and `batch <n>` lines.
 */
import { Redis } from 'ioredis';
import { concatMap } from 'rxjs';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { createLog, kafkaConfigFromEnv } from '../../connectors/kafka/index.js';
import { execAtomically, RedisOffsets } from '../../connectors/kafka/redis-offsets.js';
import { installGracefulShutdown } from '../../connectors/kafka/shutdown.js';
import type { LogRecord } from '../../connectors/log.js';
import { withItems } from '../../operators/batch.js';
import { DeadLetterBuffer, parseRecords } from '../../operators/dead-letters.js';
import { defineOperator } from '../../operators/operator.js';
import { Pipeline } from '../../operators/pipeline.js';
import { PipelineRunner } from '../../operators/runtime.js';
import { parseBehaviourEvent, type BehaviourEvent } from '../../schema/events.js';

const env = process.env;
const group = env.GROUP ?? 'counts';
const topic = env.TOPIC ?? 'events';
const batchDelayMs = Number(env.BATCH_DELAY_MS ?? 0);
const countsKey = env.COUNTS_KEY ?? 'counts';

if (env.WAIT_FOR_GO === '1') {
  const lines = createInterface({ input: process.stdin });
  await once(lines, 'line');
  lines.close();
}

const config = kafkaConfigFromEnv();
const sessionTimeoutMs = Number(env.SESSION_TIMEOUT_MS ?? 6000);
const log = await createLog(config, {
  sessionTimeoutMs,
  heartbeatIntervalMs: Math.min(300, sessionTimeoutMs / 5),
  rebalanceTimeoutMs: Number(env.REBALANCE_TIMEOUT_MS ?? 30_000),
  onWarning: (message, error) => process.stderr.write(`${message}: ${String(error)}\n`),
});
const redis = new Redis(env.REDIS_URL ?? 'redis://127.0.0.1:6379', { maxRetriesPerRequest: 3 });
const offsets = new RedisOffsets(redis, `offsets:${group}`);
const deadLetters = new DeadLetterBuffer();

/** Counts of the batches finished since the last checkpoint; the checkpoint writes them with their offsets. */
let pending = new Map<string, number>();
let batches = 0;

const countPerUser = defineOperator<BehaviourEvent, never>({ name: 'count-per-user', kind: 'aggregate' }, (source$) =>
  source$.pipe(
    concatMap(async (batch) => {
      if (batchDelayMs > 0) await new Promise((resolve) => setTimeout(resolve, batchDelayMs));
      for (const event of batch.items) pending.set(event.userId, (pending.get(event.userId) ?? 0) + 1);
      process.stdout.write(`batch ${++batches}\n`);
      return withItems(batch, []);
    }),
  ),
);

const pipeline = Pipeline.from<LogRecord>('user-counts', { name: topic, kind: 'topic' })
  .pipe(parseRecords(parseBehaviourEvent, deadLetters))
  .pipe(countPerUser)
  .to({ name: 'counts', kind: 'store' });

const runner = new PipelineRunner(pipeline, {
  log,
  group,
  topics: [topic],
  maxBatchRecords: Number(env.MAX_BATCH ?? 50),
  checkpoint: async (positions) => {
    const counts = pending;
    pending = new Map();
    await deadLetters.flush(log, config.topics.deadLetters.name);
    const multi = redis.multi();
    for (const [user, count] of counts) multi.hincrby(countsKey, user, count);
    await execAtomically(offsets.write(multi, positions));
  },
  onAssign: async (partitions, consumer) => {
    await offsets.restore(partitions, consumer);
    process.stdout.write(`assigned ${partitions.map((p) => p.partition).join(',')}\n`);
  },
}).start();

installGracefulShutdown(runner, {
  timeoutMs: 15_000,
  onStopped: async () => {
    await log.close();
    await redis.quit();
  },
  log: (message, error) => process.stderr.write(`${message}${error ? `: ${String(error)}` : ''}\n`),
});

runner.done.catch((error: unknown) => {
  process.stderr.write(`runner failed: ${String(error)} ${String((error as Error).cause ?? '')}\n`);
  process.exit(1);
});
