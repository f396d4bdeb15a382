import { Gauge, type Registry } from 'prom-client';
import type { FeatureStore } from '../../connectors/feature-store.js';

export interface FeatureStoreReadiness {
  /** The store can serve: true even when degraded, since lookups go on from the cache. */
  readonly ready: boolean;
  readonly degraded: boolean;
  readonly reason?: string;
  readonly pendingWrites: number;
}

/** What /readyz reports for the feature store. */
export function featureStoreReadiness(store: FeatureStore): FeatureStoreReadiness {
  const health = store.health();
  return {
    ready: true,
    degraded: health.degraded,
    ...(health.reason ? { reason: health.reason } : {}),
    pendingWrites: health.pendingWrites,
  };
}

/**
 * Registers the store's gauges, read at scrape time: degraded (0/1), pending writes, cache size, and the age of the
 * freshest and stalest feature served since the previous scrape (lookup time minus the entity's newest event).
 */
export function registerFeatureStoreMetrics(store: FeatureStore, registry: Registry): void {
  const registers = [registry];
  new Gauge({
    name: 'eddy_feature_store_degraded',
    help: '1 while the feature store backend is unreachable and lookups are served from the cache',
    registers,
    collect() {
      this.set(store.health().degraded ? 1 : 0);
    },
  });
  new Gauge({
    name: 'eddy_feature_store_pending_writes',
    help: 'Changed feature records not yet durable',
    registers,
    collect() {
      this.set(store.health().pendingWrites);
    },
  });
  new Gauge({
    name: 'eddy_feature_cache_bytes',
    help: 'Bytes held by the feature cache (typed arrays and indexes)',
    registers,
    collect() {
      this.set(store.cache.bytes);
    },
  });
  new Gauge({
    name: 'eddy_feature_cache_entities',
    help: 'Users and items in the feature cache',
    labelNames: ['kind'],
    registers,
    collect() {
      this.set({ kind: 'user' }, store.cache.users.count);
      this.set({ kind: 'item' }, store.cache.items.count);
    },
  });
  new Gauge({
    name: 'eddy_feature_served_age_seconds',
    help: 'Age of the freshest and stalest user or item features served since the last scrape',
    labelNames: ['bound'],
    registers,
    collect() {
      const ages = store.cache.takeServedAges();
      this.reset();
      if (!ages) return;
      this.set({ bound: 'freshest' }, ages.freshestMs / 1000);
      this.set({ bound: 'stalest' }, ages.stalestMs / 1000);
    },
  });
}
