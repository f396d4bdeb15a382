/**
 * A features worker for the crash test: `node --import tsx feature-worker.ts <redis port> <shard> <events>`. It
 * rebuilds the same input log on every start (a seeded generator stands in for a durable log), resumes from the
 * positions stored in Redis with the state, consumes to the end, and prints `done`. It prints `at <offset>` as the
 * position it has applied moves, so a test can kill it part-way.
 */
import { EmbeddedLog } from '../../connectors/embedded-log.js';
import { RedisFeatureStore } from '../../connectors/redis-store.js';
import { runFeatures } from '../../pipelines/features.js';
import { BEHAVIOUR_TYPES } from '../../schema/events.js';

const [port, shard, total] = process.argv.slice(2);
const count = Number(total);
const T0 = Date.UTC(2026, 0, 5);

function* input(): Generator<{ key: string; value: string }> {
  let seed = 12345;
  const random = () => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed / 4294967296;
  };
  for (let n = 0; n < count; n++) {
    if (n % 50 === 0) {
      const itemId = `i${Math.floor(random() * 300)}`;
      yield { key: itemId, value: JSON.stringify({ type: 'item', itemId, ts: T0 + n * 500, fields: { genre: `g${Math.floor(random() * 8)}` } }) };
      continue;
    }
    const userId = `u${Math.floor(random() * 500)}`;
    const type = BEHAVIOUR_TYPES[Math.floor(random() * BEHAVIOUR_TYPES.length)]!;
    // Slightly out of order: up to a minute back.
    const ts = T0 + n * 500 - Math.floor(random() * 60_000);
    yield { key: userId, value: JSON.stringify({ id: `e${n}`, type, userId, itemId: `i${Math.floor(random() * 300)}`, ts }) };
  }
  yield { key: 'bad', value: '{"broken' };
}

const log = new EmbeddedLog();
await log.ensureTopic('events', { partitions: 1 });
await log.append('events', [...input()]);
const store = new RedisFeatureStore({ connection: { host: '127.0.0.1', port: Number(port) }, shard, flushIntervalMs: 1_000_000 });
const { runner } = await runFeatures({ log, store, maxBatchRecords: 40 });
process.stdout.write('started\n');
const end = count + 1;
let reported = -1;
for (;;) {
  const at = store.positions().find((p) => p.topic === 'events')?.offset ?? 0;
  if (at >= end && store.pendingCount() === 0) break;
  if (at !== reported) process.stdout.write(`at ${at}\n`);
  reported = at;
  await new Promise((r) => setTimeout(r, 2));
}
await runner.stop();
await store.close();
process.stdout.write('done\n');
process.exit(0);
