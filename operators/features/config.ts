import { BEHAVIOUR_TYPES, type BehaviourType } from '../../schema/events.js';

/**
 * Declarative feature definitions. Every field is optional; `resolveFeatureConfig` fills in the documented defaults,
 * checks the config, and the resolved config alone decides the feature names and their order (`featureNames`).
 */

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

/** A ring of the last `length` items a user interacted with through one of `types`. */
export interface HistoryRing {
  readonly name: string;
  readonly types: readonly BehaviourType[];
  /** 1 to 255. */
  readonly length: number;
}

/** A sliding event-time window of `lengthMs`, kept as `buckets` buckets of `lengthMs / buckets` each. */
export interface CountWindow {
  readonly name: string;
  readonly lengthMs: number;
  readonly buckets: number;
}

export interface UserFeatureConfig {
  /** Default: `clicked` (click, view, like) of 20 and `purchased` (add_to_cart, purchase) of 10. */
  readonly histories?: readonly HistoryRing[];
  /** Event types with decayed counters. Default click, view, purchase. */
  readonly counterTypes?: readonly BehaviourType[];
  /** Half-lives of every decayed counter, by name. Default `{ '1h': 1 h, '1d': 1 d, '30d': 30 d }`. */
  readonly halfLivesMs?: Readonly<Record<string, number>>;
  /** Attribute values (`field=value`) with a decayed affinity kept per user, the strongest first. Default 8; 0 disables. */
  readonly affinitySlots?: number;
  /** Half-life of affinities. Default 7 d. */
  readonly affinityHalfLifeMs?: number;
  /** Inactivity that ends a session. Default 30 min. */
  readonly sessionGapMs?: number;
}

export interface ItemFeatureConfig {
  /** Event types counted in windows. Must include impression and click (CTR). Default impression, click, view, purchase. */
  readonly windowTypes?: readonly BehaviourType[];
  /** Default 1h (12 buckets), 24h (24 buckets), 7d (7 buckets). The longest window feeds the CTR. */
  readonly windows?: readonly CountWindow[];
  /** Pseudo-impressions of the prior in smoothed CTRs: (clicks + m * prior) / (impressions + m). Default 50. */
  readonly ctrPriorWeight?: number;
  /** The global CTR assumed before any impression is seen. Default 0.02. */
  readonly ctrPrior?: number;
  /** Half-life of the trending score. Default 6 h. */
  readonly trendingHalfLifeMs?: number;
  /** Metadata fields whose values are attributes (genre, tags, category): affinities, per-attribute CTR. */
  readonly attributeFields?: readonly string[];
  /** Attributes kept per item. Default 8. */
  readonly maxAttributes?: number;
  /** Numeric metadata fields, one feature each (0 when missing). Default none. */
  readonly numericFields?: readonly string[];
  /** Categorical metadata fields with their vocabulary, one-hot encoded. Default none. */
  readonly categoricalFields?: Readonly<Record<string, readonly string[]>>;
  /** Metadata field with the publication time (ms or ISO text); else the item's age counts from when it was first seen. Default `publishedAt`. */
  readonly publishedField?: string;
  /** Co-visited neighbours kept per item. Default 16; 0 disables co-visitation. */
  readonly covisitNeighbours?: number;
  /** How many of the user's most recent items (first history ring) pair with a new interaction. Default 3. */
  readonly covisitRecent?: number;
}

export interface ContextFeatureConfig {
  /** Offset of local time from UTC for hour of day and day of week. Default 0. */
  readonly timezoneOffsetMinutes?: number;
  /** Categorical request fields with their vocabulary, one-hot. Default `device`: mobile, desktop, tablet. */
  readonly categoricalFields?: Readonly<Record<string, readonly string[]>>;
  /** Numeric request fields. Default none. */
  readonly numericFields?: readonly string[];
}

export interface MemoryBudget {
  /** Bytes of typed arrays the cache may hold for users and items together. Default 256 MiB. */
  readonly maxBytes?: number;
  /** Share of `maxBytes` for items. Default 0.25. */
  readonly itemShare?: number;
}

export interface FeatureConfig {
  readonly user?: UserFeatureConfig;
  readonly item?: ItemFeatureConfig;
  readonly context?: ContextFeatureConfig;
  /** Weight of each event type in affinities, trending and co-visitation. Default below (`DEFAULT_EVENT_WEIGHTS`). */
  readonly eventWeights?: Readonly<Partial<Record<BehaviourType, number>>>;
  readonly memory?: MemoryBudget;
}

export const DEFAULT_EVENT_WEIGHTS: Readonly<Record<BehaviourType, number>> = {
  impression: 0,
  click: 1,
  view: 0.5,
  rating: 1,
  like: 2,
  dislike: -2,
  add_to_cart: 3,
  purchase: 5,
};

type DeepRequired<T> = { readonly [K in keyof T]-?: NonNullable<T[K]> };

export interface ResolvedFeatureConfig {
  readonly user: DeepRequired<UserFeatureConfig>;
  readonly item: DeepRequired<ItemFeatureConfig>;
  readonly context: DeepRequired<ContextFeatureConfig>;
  readonly eventWeights: Readonly<Record<BehaviourType, number>>;
  readonly memory: DeepRequired<MemoryBudget>;
}

function check(condition: boolean, message: string): void {
  if (!condition) throw new RangeError(`feature config: ${message}`);
}

export function resolveFeatureConfig(config: FeatureConfig = {}): ResolvedFeatureConfig {
  const u = config.user ?? {};
  const i = config.item ?? {};
  const c = config.context ?? {};
  const resolved: ResolvedFeatureConfig = {
    user: {
      histories: u.histories ?? [
        { name: 'clicked', types: ['click', 'view', 'like'], length: 20 },
        { name: 'purchased', types: ['add_to_cart', 'purchase'], length: 10 },
      ],
      counterTypes: u.counterTypes ?? ['click', 'view', 'purchase'],
      halfLivesMs: u.halfLivesMs ?? { '1h': HOUR, '1d': DAY, '30d': 30 * DAY },
      affinitySlots: u.affinitySlots ?? 8,
      affinityHalfLifeMs: u.affinityHalfLifeMs ?? 7 * DAY,
      sessionGapMs: u.sessionGapMs ?? 30 * 60_000,
    },
    item: {
      windowTypes: i.windowTypes ?? ['impression', 'click', 'view', 'purchase'],
      windows: i.windows ?? [
        { name: '1h', lengthMs: HOUR, buckets: 12 },
        { name: '24h', lengthMs: DAY, buckets: 24 },
        { name: '7d', lengthMs: 7 * DAY, buckets: 7 },
      ],
      ctrPriorWeight: i.ctrPriorWeight ?? 50,
      ctrPrior: i.ctrPrior ?? 0.02,
      trendingHalfLifeMs: i.trendingHalfLifeMs ?? 6 * HOUR,
      attributeFields: i.attributeFields ?? ['genre', 'genres', 'tags', 'category'],
      maxAttributes: i.maxAttributes ?? 8,
      numericFields: i.numericFields ?? [],
      categoricalFields: i.categoricalFields ?? {},
      publishedField: i.publishedField ?? 'publishedAt',
      covisitNeighbours: i.covisitNeighbours ?? 16,
      covisitRecent: i.covisitRecent ?? 3,
    },
    context: {
      timezoneOffsetMinutes: c.timezoneOffsetMinutes ?? 0,
      categoricalFields: c.categoricalFields ?? { device: ['mobile', 'desktop', 'tablet'] },
      numericFields: c.numericFields ?? [],
    },
    eventWeights: { ...DEFAULT_EVENT_WEIGHTS, ...config.eventWeights },
    memory: {
      maxBytes: config.memory?.maxBytes ?? 256 * 1024 * 1024,
      itemShare: config.memory?.itemShare ?? 0.25,
    },
  };
  const types = new Set<string>(BEHAVIOUR_TYPES);
  for (const ring of resolved.user.histories) {
    check(ring.length >= 1 && ring.length <= 255 && Number.isInteger(ring.length), `history ${ring.name}: length must be 1..255`);
    check(ring.types.every((t) => types.has(t)), `history ${ring.name}: unknown event type`);
  }
  check(resolved.user.counterTypes.every((t) => types.has(t)), 'user.counterTypes: unknown event type');
  check(Object.values(resolved.user.halfLivesMs).every((h) => h > 0), 'user.halfLivesMs must be positive');
  check(resolved.user.affinitySlots >= 0 && resolved.user.affinitySlots <= 255, 'user.affinitySlots must be 0..255');
  check(resolved.item.windowTypes.includes('impression') && resolved.item.windowTypes.includes('click'), 'item.windowTypes must include impression and click');
  check(resolved.item.windows.length > 0, 'item.windows must not be empty');
  for (const w of resolved.item.windows) {
    check(Number.isInteger(w.buckets) && w.buckets >= 1 && w.buckets <= 1024, `window ${w.name}: buckets must be 1..1024`);
    check(w.lengthMs / w.buckets >= 1000 && Number.isInteger(w.lengthMs / w.buckets), `window ${w.name}: bucket width must be a whole number of ms, >= 1 s`);
  }
  check(resolved.item.maxAttributes >= 0 && resolved.item.maxAttributes <= 255, 'item.maxAttributes must be 0..255');
  check(resolved.item.covisitNeighbours >= 0 && resolved.item.covisitNeighbours <= 255, 'item.covisitNeighbours must be 0..255');
  check(resolved.memory.itemShare > 0 && resolved.memory.itemShare < 1, 'memory.itemShare must be in (0, 1)');
  return resolved;
}

/**
 * The feature names, in row order: user, item, user x item, context. Rankers bind to this list; it depends only on
 * the config, so every process with the same config agrees on it.
 */
export function featureNames(config: ResolvedFeatureConfig): string[] {
  const names: string[] = ['user_known'];
  for (const type of config.user.counterTypes) {
    for (const hl of Object.keys(config.user.halfLivesMs)) names.push(`user_${type}_decayed_${hl}`);
  }
  for (const ring of config.user.histories) names.push(`user_history_${ring.name}_size`);
  names.push('user_last_seen_age_h', 'user_session_events', 'user_session_length_s');
  names.push('item_known');
  for (const w of config.item.windows) for (const type of config.item.windowTypes) names.push(`item_${type}_${w.name}`);
  names.push('item_ctr', 'item_attribute_ctr', 'item_trending', 'item_age_h');
  for (const f of config.item.numericFields) names.push(`item_${f}`);
  for (const [f, vocab] of Object.entries(config.item.categoricalFields)) for (const v of vocab) names.push(`item_${f}=${v}`);
  names.push('ui_interacted', 'ui_affinity', 'ui_covisit');
  names.push('ctx_hour', 'ctx_day_of_week');
  for (const [f, vocab] of Object.entries(config.context.categoricalFields)) for (const v of vocab) names.push(`ctx_${f}=${v}`);
  for (const f of config.context.numericFields) names.push(`ctx_${f}`);
  return names;
}

/** The names for the default config, for rankers that use it. */
export const DEFAULT_FEATURE_NAMES: readonly string[] = Object.freeze(featureNames(resolveFeatureConfig()));
