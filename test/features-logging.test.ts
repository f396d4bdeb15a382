import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { EmbeddedLog } from '../connectors/embedded-log.js';
import { MemoryFeatureStore } from '../connectors/memory-store.js';
import { decodeServedFeatures, ServedFeatureIndex, servedFeatures, TopicFeatureLog, type ServedFeatures, type ServedFeaturesRecord } from '../operators/features/feature-log.js';
import { featureStoreReadiness, registerFeatureStoreMetrics } from '../operators/features/metrics.js';

const T0 = Date.UTC(2026, 0, 5, 10);

describe('point-in-time feature logging', () => {
  it('logs the values served with the request id, not values learned later', async () => {
    const store = new MemoryFeatureStore();
    await store.update([{ id: 'a', type: 'click', userId: 'u', itemId: 'x', ts: T0 }]);
    const rows = await store.lookup('u', ['x', 'y'], { ts: T0 + 1000 });
    const log = new EmbeddedLog();
    const topicLog = new TopicFeatureLog(log);
    const index = new ServedFeatureIndex(60_000);
    const entry = servedFeatures('r1', 'u', T0 + 1000, ['x', 'y'], rows);
    topicLog.push(entry);
    index.push(entry);
    // Later behaviour changes the store, never what was logged.
    await store.update([{ id: 'b', type: 'click', userId: 'u', itemId: 'x', ts: T0 + 2000 }]);
    await topicLog.flush();

    const consumer = log.consumer({ group: 'check', topics: ['feature-log'], pollTimeoutMs: 10 });
    const batch = await consumer.next();
    await consumer.close();
    const logged = decodeServedFeatures(JSON.parse(batch!.records[0]!.value) as ServedFeaturesRecord);
    expect(batch!.records[0]!.key).toBe('u');
    expect(logged.requestId).toBe('r1');
    expect(logged.names).toEqual(store.names);
    const clicks = store.names.indexOf('user_click_decayed_1h');
    expect(logged.items[0]!.values[clicks]).toBeCloseTo(rows.get(0, 'user_click_decayed_1h'), 6);
    expect(index.get('r1', 'y')!.values).toEqual(logged.items[1]!.values);
    const now = await store.lookup('u', ['x'], { ts: T0 + 1000 });
    expect(now.get(0, 'user_click_decayed_1h')).toBeGreaterThan(logged.items[0]!.values[clicks]!);
  });

  it('forgets served features older than its horizon', () => {
    const index = new ServedFeatureIndex(1000);
    const entry = (requestId: string, ts: number): ServedFeatures => ({ requestId, userId: 'u', ts, names: ['f'], items: [{ itemId: 'x', values: [1] }] });
    index.push(entry('old', T0));
    index.push(entry('mid', T0 + 600));
    index.push(entry('new', T0 + 1500));
    expect(index.get('old', 'x')).toBeUndefined();
    expect(index.get('mid', 'x')).toEqual({ names: ['f'], values: [1] });
    expect(index.get('new', 'nope')).toBeUndefined();
    expect(index.size).toBe(2);
  });
});

describe('feature store metrics and readiness', () => {
  it('reports cache size and the age of the freshest and stalest features served', async () => {
    const store = new MemoryFeatureStore();
    await store.update([
      { id: 'a', type: 'click', userId: 'u', itemId: 'old', ts: T0 },
      { id: 'b', type: 'click', userId: 'u', itemId: 'fresh', ts: T0 + 50_000 },
    ]);
    const registry = new Registry();
    registerFeatureStoreMetrics(store, registry);
    await store.lookup('u', ['old', 'fresh', 'unknown'], { ts: T0 + 60_000 });
    const text = await registry.metrics();
    expect(text).toContain('eddy_feature_store_degraded 0');
    expect(text).toContain('eddy_feature_cache_entities{kind="user"} 1');
    expect(text).toContain('eddy_feature_cache_entities{kind="item"} 2');
    expect(text).toContain('eddy_feature_served_age_seconds{bound="freshest"} 10');
    expect(text).toContain('eddy_feature_served_age_seconds{bound="stalest"} 60');
    // Ages cover the lookups since the previous scrape only.
    expect(await registry.metrics()).not.toContain('eddy_feature_served_age_seconds{bound=');
    expect(featureStoreReadiness(store)).toEqual({ ready: true, degraded: false, pendingWrites: 0 });
  });
});
