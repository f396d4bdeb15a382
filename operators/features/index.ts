/** Real-time features: definitions, the compact cache, row assembly, point-in-time logging and store metrics. */
export { applyFeatureUpdates } from './apply.js';
export { FeatureCache, MAX_ATTRIBUTE_VALUES, type EntityKind, type FeatureCacheOptions, type LookupContext } from './cache.js';
export {
  DEFAULT_EVENT_WEIGHTS,
  DEFAULT_FEATURE_NAMES,
  featureNames,
  resolveFeatureConfig,
  type ContextFeatureConfig,
  type CountWindow,
  type FeatureConfig,
  type HistoryRing,
  type ItemFeatureConfig,
  type MemoryBudget,
  type ResolvedFeatureConfig,
  type UserFeatureConfig,
} from './config.js';
export { ServedFeatureIndex, servedFeatures, TopicFeatureLog, type FeatureLogSink, type ServedFeatures, type TopicFeatureLogOptions } from './feature-log.js';
export { featureStoreReadiness, registerFeatureStoreMetrics, type FeatureStoreReadiness } from './metrics.js';
export { FeatureRows } from './rows.js';
