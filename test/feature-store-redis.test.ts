import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryFeatureStore } from '../connectors/memory-store.js';
import { RedisFeatureStore, redisOptionsFromEnv, type RedisFeatureStoreOptions } from '../connectors/redis-store.js';
import { featureStoreReadiness } from '../operators/features/metrics.js';
import type { BehaviourEvent, BehaviourType, InputEvent } from '../schema/events.js';
import { startRedis, type RedisServer } from './support/redis.js';

const T0 = Date.UTC(2026, 0, 5, 10);
let server: RedisServer;
let admin: Redis;
let shardCount = 0;

beforeAll(async () => {
  server = await startRedis();
  admin = new Redis(server.port, '127.0.0.1');
});
afterAll(async () => {
  admin.disconnect();
  await server.close();
});

function store(options: RedisFeatureStoreOptions = {}): RedisFeatureStore {
  return new RedisFeatureStore({ connection: { host: '127.0.0.1', port: server.port }, flushIntervalMs: 5, ...options });
}

function events(count: number, offset = 0, users = 20, items = 30): BehaviourEvent[] {
  const types: BehaviourType[] = ['impression', 'impression', 'click', 'view', 'purchase'];
  return Array.from({ length: count }, (_, k) => {
    const n = k + offset;
    return { id: `e${n}`, type: types[n % types.length]!, userId: `u${(n * 7) % users}`, itemId: `i${(n * 13) % items}`, ts: T0 + n * 1000 };
  });
}
const metadata: InputEvent[] = Array.from({ length: 30 }, (_, i) => ({ type: 'item', itemId: `i${i}`, ts: T0, fields: { genre: `g${i % 4}` } }));

async function waitFor(check: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 20));
  }
}

function expectSameRows(a: Float32Array, b: Float32Array): void {
  expect(a.length).toBe(b.length);
  for (let i = 0; i < a.length; i++) expect(a[i], `row ${Math.floor(i / 40)} feature ${i % 40}`).toBeCloseTo(b[i]!, 4);
}

describe('RedisFeatureStore', () => {
  it('writes state with its positions in one transaction, under the documented hash-tagged keys', async () => {
    const shard = `s${shardCount++}`;
    const writer = store({ shard, ttlMs: 60_000 });
    expect(await writer.restore()).toEqual([]);
    await writer.update(metadata);
    await writer.update(events(100), [{ topic: 'events', partition: 0, offset: 100 }]);
    await writer.checkpoint();
    expect(writer.health()).toMatchObject({ degraded: false, pendingWrites: 0 });
    expect(await admin.hgetall(`eddy:f:{${shard}}:offsets`)).toEqual({ 'events/0': '100' });
    const keys = await admin.keys(`eddy:f:{${shard}}:*`);
    expect(keys.filter((k) => k.includes('}:u:'))).toHaveLength(20);
    expect(keys.filter((k) => k.includes('}:i:'))).toHaveLength(30);
    expect(keys).toContain(`eddy:f:{${shard}}:g`);
    const ttl = await admin.pttl(keys.find((k) => k.includes('}:u:'))!);
    expect(ttl).toBeGreaterThan(50_000);
    expect(ttl).toBeLessThanOrEqual(60_000);
    await writer.close();
  });

  it('reads through on a miss: a fresh instance serves what another wrote, equal to an in-memory run', async () => {
    const shard = `s${shardCount++}`;
    const writer = store({ shard });
    await writer.restore();
    const reference = new MemoryFeatureStore();
    for (const batch of [metadata, events(300)]) {
      await writer.update(batch);
      await reference.update(batch);
    }
    await writer.close();

    const fresh = store({ shard });
    await fresh.restore();
    expect(fresh.cache.users.count).toBe(0);
    const context = { ts: T0 + 400_000, fields: { device: 'mobile' } };
    for (const user of ['u0', 'u3', 'u11']) {
      const candidates = ['i0', 'i5', 'i17', 'i29', 'unknown'];
      expectSameRows((await fresh.lookup(user, candidates, context)).values, (await reference.lookup(user, candidates, context)).values);
    }
    // Continuing from read-through state gives what an uninterrupted run gives.
    await fresh.update(events(100, 300));
    await reference.update(events(100, 300));
    const later = { ts: T0 + 500_000 };
    expectSameRows((await fresh.lookup('u3', ['i0', 'i5'], later)).values, (await reference.lookup('u3', ['i0', 'i5'], later)).values);
    await fresh.close();
  });

  // Budgets from roomy to a few dozen items: the smaller, the more often a batch evicts keys it loaded or created
  // itself, and the more often a flush takes pending records while a read is on its way.
  it.each([96, 64, 48])('writes evicted changes behind and reads them back, within a budget of %i KB', async (kilobytes) => {
    const shard = `s${shardCount++}`;
    const features = { memory: { maxBytes: kilobytes * 1024, itemShare: 0.5 } };
    const writer = store({ shard, features });
    await writer.restore();
    const reference = new MemoryFeatureStore();
    const input = events(3000, 0, 1500, 40);
    for (let i = 0; i < input.length; i += 100) {
      await writer.update(input.slice(i, i + 100));
      await reference.update(input.slice(i, i + 100));
    }
    expect(writer.cache.users.count).toBeLessThan(1500);
    expect(writer.cache.items.count).toBeLessThan(40);
    await writer.checkpoint();
    const users = (await admin.keys(`eddy:f:{${shard}}:u:*`)).length;
    expect(users).toBe(1500);
    for (const user of ['u0', 'u1', 'u777', 'u1499']) {
      const candidates = Array.from({ length: 40 }, (_, i) => `i${i}`);
      for (let i = 0; i < candidates.length; i += 8) {
        const some = candidates.slice(i, i + 8);
        expectSameRows((await writer.lookup(user, some, { ts: T0 + 2_000_000 })).values, (await reference.lookup(user, some, { ts: T0 + 2_000_000 })).values);
      }
    }
    await writer.close();
  });

  it('lets a reader serve features no older than its staleness bound', async () => {
    const shard = `s${shardCount++}`;
    const writer = store({ shard });
    await writer.restore();
    await writer.update(events(50));
    await writer.checkpoint();
    const reader = store({ shard, role: 'reader', maxStalenessMs: 150 });
    await reader.restore();
    const at = { ts: T0 + 100_000 };
    const before = (await reader.lookup('u0', ['i0'], at)).get(0, 'user_session_events');
    expect(before).toBeGreaterThan(0);
    await writer.update([{ id: 'x', type: 'click', userId: 'u0', itemId: 'i0', ts: T0 + 60_000 }]);
    await writer.checkpoint();
    expect((await reader.lookup('u0', ['i0'], at)).get(0, 'user_session_events')).toBe(before);
    await new Promise((r) => setTimeout(r, 200));
    expect((await reader.lookup('u0', ['i0'], at)).get(0, 'user_session_events')).toBe(before + 1);
    await expect(reader.update([])).rejects.toThrow(/reader/);
    await reader.close();
    await writer.close();
  });

  it('serves from the cache while Redis is away, buffers writes, and replays them when it returns', async () => {
    const own = await startRedis();
    try {
      const writer = new RedisFeatureStore({ connection: { host: '127.0.0.1', port: own.port }, flushIntervalMs: 5, maxPendingWrites: 10_000 });
      await writer.restore();
      const reference = new MemoryFeatureStore();
      await writer.update(events(200), [{ topic: 'events', partition: 0, offset: 200 }]);
      await reference.update(events(200));
      await writer.checkpoint();
      await own.stop({ save: true });
      await waitFor(() => writer.health().degraded);

      // The same users and items: all cached, so updates go on and are held.
      await writer.update(events(200, 200), [{ topic: 'events', partition: 0, offset: 400 }]);
      await reference.update(events(200, 200));
      await writer.checkpoint();
      const health = writer.health();
      expect(health.degraded).toBe(true);
      expect(featureStoreReadiness(writer)).toMatchObject({ ready: true, degraded: true });
      expect(health.pendingWrites).toBeGreaterThan(0);
      const during = await writer.lookup('u3', ['i1', 'i2'], { ts: T0 + 500_000 });
      expectSameRows(during.values, (await reference.lookup('u3', ['i1', 'i2'], { ts: T0 + 500_000 })).values);

      await own.start();
      await waitFor(() => !writer.health().degraded && writer.health().pendingWrites === 0, 10_000);
      await writer.close();

      const fresh = new RedisFeatureStore({ connection: { host: '127.0.0.1', port: own.port } });
      expect(await fresh.restore()).toEqual([{ topic: 'events', partition: 0, offset: 400 }]);
      for (const user of ['u0', 'u3', 'u19']) {
        expectSameRows((await fresh.lookup(user, ['i1', 'i2', 'i3'], { ts: T0 + 500_000 })).values, (await reference.lookup(user, ['i1', 'i2', 'i3'], { ts: T0 + 500_000 })).values);
      }
      await fresh.close();
    } finally {
      await own.close();
    }
  });

  it('takes connection settings from the environment', () => {
    expect(redisOptionsFromEnv({ EDDY_REDIS_URL: 'rediss://app:s%40cret@cache.internal:6380/2' })).toEqual({
      host: 'cache.internal',
      port: 6380,
      username: 'app',
      password: 's@cret',
      db: 2,
      tls: {},
    });
    expect(redisOptionsFromEnv({ EDDY_REDIS_PASSWORD: 'pw', EDDY_REDIS_TLS: '1' })).toEqual({ host: '127.0.0.1', port: 6379, password: 'pw', tls: {} });
  });
});
