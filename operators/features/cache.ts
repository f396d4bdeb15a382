import type { BehaviourEvent, BehaviourType, FieldMap, FieldValue, InputEvent, ItemEvent } from '../../schema/events.js';
import { ColumnSet } from './columns.js';
import { featureNames, resolveFeatureConfig, type FeatureConfig, type ResolvedFeatureConfig } from './config.js';
import { attributeKey, hash53, low32 } from './hash.js';
import { FeatureRows } from './rows.js';
import { SlotIndex } from './slot-table.js';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const LN2 = Math.LN2;
/** Attribute values with global CTR statistics; later ones fall back to the global CTR. */
export const MAX_ATTRIBUTE_VALUES = 65_536;
const INITIAL_CAPACITY = 1024;

export type EntityKind = 'user' | 'item';

/** What a request adds to a lookup: when it is served (event time, ms) and its context fields. */
export interface LookupContext {
  readonly ts: number;
  readonly fields?: FieldMap;
}

export interface FeatureCacheOptions {
  /** Called before a slot is reused for another key, with the slot still intact (write-behind saves it here). */
  readonly onEvict?: (kind: EntityKind, slot: number) => void;
}

function decay(dtMs: number, halfLifeMs: number): number {
  return dtMs <= 0 ? 1 : Math.exp((-dtMs * LN2) / halfLifeMs);
}

function userColumns(c: ResolvedFeatureConfig) {
  const counters = c.user.counterTypes.length * Object.keys(c.user.halfLivesMs).length;
  const ringTotal = c.user.histories.reduce((s, r) => s + r.length, 0);
  return {
    key: { type: Float64Array, width: 1 },
    lastSeen: { type: Float64Array, width: 1 },
    sessionStart: { type: Float64Array, width: 1 },
    sessionEvents: { type: Uint32Array, width: 1 },
    counters: { type: Float32Array, width: counters },
    rings: { type: Uint32Array, width: ringTotal },
    ringHead: { type: Uint8Array, width: c.user.histories.length },
    ringFill: { type: Uint8Array, width: c.user.histories.length },
    affinityKeys: { type: Uint32Array, width: c.user.affinitySlots },
    affinityValues: { type: Float32Array, width: c.user.affinitySlots },
    referenced: { type: Uint8Array, width: 1, persist: false },
    dirty: { type: Uint8Array, width: 1, persist: false },
  } as const;
}

function itemColumns(c: ResolvedFeatureConfig) {
  const types = c.item.windowTypes.length;
  const buckets = c.item.windows.reduce((s, w) => s + w.buckets, 0);
  return {
    key: { type: Float64Array, width: 1 },
    ref: { type: Uint32Array, width: 1, persist: false },
    firstSeen: { type: Float64Array, width: 1 },
    published: { type: Float64Array, width: 1, initial: Number.NaN },
    trendTime: { type: Float64Array, width: 1 },
    lastEvent: { type: Float64Array, width: 1 },
    bucketEpochs: { type: Int32Array, width: buckets, initial: -1 },
    bucketCounts: { type: Uint32Array, width: buckets * types },
    trending: { type: Float32Array, width: 1 },
    attributes: { type: Uint32Array, width: c.item.maxAttributes },
    numeric: { type: Float32Array, width: c.item.numericFields.length },
    covisitKeys: { type: Uint32Array, width: c.item.covisitNeighbours },
    covisitScores: { type: Float32Array, width: c.item.covisitNeighbours },
    categorical: { type: Uint16Array, width: Object.keys(c.item.categoricalFields).length },
    attributeCount: { type: Uint8Array, width: 1 },
    referenced: { type: Uint8Array, width: 1, persist: false },
    dirty: { type: Uint8Array, width: 1, persist: false },
  } as const;
}

type UserColumn = keyof ReturnType<typeof userColumns>;
type ItemColumn = keyof ReturnType<typeof itemColumns>;

/** Slot storage with a key index, CLOCK eviction within a fixed maximum, and a dirty list for write-behind. */
export class Entities<Name extends string> {
  readonly columns: ColumnSet<Name | 'key' | 'referenced' | 'dirty'>;
  readonly index: SlotIndex;
  count = 0;
  private hand = 0;
  private fresh = -1;
  /** Keys evicted since creation, so a caller can tell whether keys it loaded may have gone. */
  evictions = 0;
  dirtySlots: number[] = [];

  constructor(
    specs: ConstructorParameters<typeof ColumnSet<Name | 'key' | 'referenced' | 'dirty'>>[0],
    readonly maxCount: number,
    private readonly kind: EntityKind,
    private readonly beforeEvict: (kind: EntityKind, slot: number) => void,
  ) {
    this.columns = new ColumnSet(specs, Math.min(INITIAL_CAPACITY, maxCount));
    this.index = new SlotIndex(this.columns.capacity, () => this.columns.cols.key);
  }

  get bytes(): number {
    return this.columns.bytes + this.index.bytes;
  }

  find(key: number): number {
    return this.index.find(key);
  }

  /** A fresh slot for `key`: a new one while under the maximum, else the CLOCK victim's. */
  allocate(key: number): number {
    let slot: number;
    if (this.count < this.maxCount) {
      if (this.count === this.columns.capacity) {
        const capacity = Math.min(this.maxCount, this.columns.capacity * 2);
        this.columns.grow(capacity);
        this.index.resize(capacity, this.count);
      }
      slot = this.count++;
    } else {
      const referenced = this.columns.cols.referenced;
      while (referenced[this.hand] === 1) {
        referenced[this.hand] = 0;
        this.hand = (this.hand + 1) % this.count;
      }
      slot = this.hand;
      this.hand = (this.hand + 1) % this.count;
      this.beforeEvict(this.kind, slot);
      this.evictions++;
      this.index.remove(slot);
      this.columns.reset(slot);
    }
    this.columns.cols.key[slot] = key;
    this.index.insert(slot);
    this.fresh = slot;
    return slot;
  }

  /** Marks a change; a slot counts as referenced from its second use on, so one-off keys are evicted first. */
  touch(slot: number): void {
    if (slot === this.fresh) this.fresh = -1;
    else this.columns.cols.referenced[slot] = 1;
    if (this.columns.cols.dirty[slot] === 0) {
      this.columns.cols.dirty[slot] = 1;
      this.dirtySlots.push(slot);
    }
  }

  /** Slots changed since the last call, each once. */
  takeDirty(): number[] {
    const listed = this.dirtySlots;
    this.dirtySlots = [];
    const dirty = this.columns.cols.dirty;
    // A slot evicted and reused is listed twice; its flag lets it through once.
    const slots: number[] = [];
    for (const s of listed) {
      if (dirty[s] === 1) {
        dirty[s] = 0;
        slots.push(s);
      }
    }
    return slots;
  }
}

/**
 * The compact feature state: users and items in typed-array columns bounded by a byte budget, updated in O(1) per
 * event, and looked up in batches as ready-to-score rows.
 *
 * Time is event time throughout. Decayed values are kept as of the entity's newest event and decayed further when
 * read; an event older than that adds its weight already decayed, so arrival order does not change the value.
 * Window counts keep `buckets` buckets per window; an event older than the oldest retained bucket is not counted.
 */
export class FeatureCache {
  readonly config: ResolvedFeatureConfig;
  readonly names: readonly string[];
  readonly users: Entities<UserColumn>;
  readonly items: Entities<ItemColumn>;
  /** Item ids by slot, kept for records and for reading histories back as ids. */
  readonly itemIds: string[] = [];
  private readonly itemRefIndex: SlotIndex;
  private readonly counterTypeIndex: Int8Array;
  private readonly windowTypeIndex: Int8Array;
  private readonly ringsByType: number[][];
  private readonly ringOffsets: number[];
  private readonly halfLives: number[];
  private readonly windowOffsets: number[];
  private readonly longestWindow: number;
  private readonly ringTotal: number;
  private readonly totalBuckets: number;
  private readonly windowWidths: number[];
  private readonly windowBuckets: number[];
  private readonly itemWidth: number;
  private readonly categoricalVocabularies: (readonly string[])[];
  private readonly impressionType: number;
  private readonly clickType: number;
  private readonly typeCodes = new Map<BehaviourType, number>();
  /**
   * Global and per-attribute CTR statistics with the longest window as half-life, kept scaled to the anchor time
   * `globalTime` (a count at time t is the stored value times 2^-((t - globalTime) / half-life)). Adding an event
   * then touches only its own counters; the anchor moves, rescaling everything, once every 64 half-lives.
   */
  globalTime = 0;
  globalClicks = 0;
  globalImpressions = 0;
  readonly attributeStats = new Map<number, { clicks: number; impressions: number }>();
  /** Set when the global or attribute statistics change; write-behind clears it. */
  globalsDirty = false;
  private freshestServedMs = Infinity;
  private stalestServedMs = -Infinity;
  /** Event time of the newest update, for freshness reporting. */
  newestEventTs = 0;

  constructor(config: FeatureConfig = {}, options: FeatureCacheOptions = {}) {
    this.config = resolveFeatureConfig(config);
    const c = this.config;
    this.names = Object.freeze(featureNames(c));
    const onEvict = options.onEvict ?? (() => undefined);
    const userSpecs = userColumns(c);
    const itemSpecs = itemColumns(c);
    const perUser = new ColumnSet(userSpecs, 0).slotBytes + 8;
    const perItem = new ColumnSet(itemSpecs, 0).slotBytes + 16 + 64;
    const maxUsers = Math.max(16, Math.floor((c.memory.maxBytes * (1 - c.memory.itemShare)) / perUser));
    const maxItems = Math.max(16, Math.floor((c.memory.maxBytes * c.memory.itemShare) / perItem));
    this.users = new Entities<UserColumn>(userSpecs, maxUsers, 'user', onEvict);
    this.items = new Entities<ItemColumn>(itemSpecs, maxItems, 'item', (kind, slot) => {
      onEvict(kind, slot);
      this.itemRefIndex.remove(slot);
    });
    this.itemRefIndex = new SlotIndex(this.items.columns.capacity, () => this.items.columns.cols.ref);
    const typeIndex = (list: readonly BehaviourType[]) => {
      const out = new Int8Array(16).fill(-1);
      list.forEach((t, i) => (out[this.typeCode(t)] = i));
      return out;
    };
    this.counterTypeIndex = typeIndex(c.user.counterTypes);
    this.windowTypeIndex = typeIndex(c.item.windowTypes);
    this.ringsByType = [];
    c.user.histories.forEach((ring, r) => {
      for (const t of ring.types) (this.ringsByType[this.typeCode(t)] ??= []).push(r);
    });
    this.ringOffsets = [];
    let offset = 0;
    for (const ring of c.user.histories) {
      this.ringOffsets.push(offset);
      offset += ring.length;
    }
    this.halfLives = Object.values(c.user.halfLivesMs);
    this.windowOffsets = [];
    offset = 0;
    for (const w of c.item.windows) {
      this.windowOffsets.push(offset);
      offset += w.buckets;
    }
    this.ringTotal = offset0(c.user.histories.map((h) => h.length));
    this.totalBuckets = offset0(c.item.windows.map((w) => w.buckets));
    this.longestWindow = Math.max(...c.item.windows.map((w) => w.lengthMs));
    this.windowWidths = c.item.windows.map((w) => w.lengthMs / w.buckets);
    this.windowBuckets = c.item.windows.map((w) => w.buckets);
    this.categoricalVocabularies = Object.values(c.item.categoricalFields);
    const categorical = this.categoricalVocabularies.reduce((sum, v) => sum + v.length, 0);
    this.itemWidth = 1 + c.item.windows.length * c.item.windowTypes.length + 4 + c.item.numericFields.length + categorical;
    this.impressionType = c.item.windowTypes.indexOf('impression');
    this.clickType = c.item.windowTypes.indexOf('click');
  }

  private typeCode(type: BehaviourType): number {
    let code = this.typeCodes.get(type);
    if (code === undefined) {
      code = this.typeCodes.size;
      this.typeCodes.set(type, code);
    }
    return code;
  }

  /** Bytes held in typed arrays (columns and indexes). */
  get bytes(): number {
    return this.users.bytes + this.items.bytes + this.itemRefIndex.bytes;
  }

  update(event: InputEvent): void {
    if (event.type === 'item') this.updateItemMetadata(event);
    else if (event.type !== 'user') this.updateBehaviour(event);
    // User metadata carries no feature in this config; it is accepted and counted as processed.
  }

  userSlot(userId: string): number {
    return this.users.find(hash53(userId));
  }

  itemSlot(itemId: string): number {
    return this.items.find(hash53(itemId));
  }

  private userSlotOrCreate(userId: string): number {
    const key = hash53(userId);
    const slot = this.users.find(key);
    return slot >= 0 ? slot : this.users.allocate(key);
  }

  private itemSlotOrCreate(itemId: string, ts: number): number {
    const key = hash53(itemId);
    let slot = this.items.find(key);
    if (slot < 0) {
      slot = this.allocateItem(key, itemId);
      this.items.columns.cols.firstSeen[slot] = ts;
    }
    return slot;
  }

  /** A fresh item slot for `key` (evicting if full), registered under its 32-bit reference. */
  allocateItem(key: number, itemId: string): number {
    const capacity = this.items.columns.capacity;
    const slot = this.items.allocate(key);
    if (this.items.columns.capacity !== capacity) this.itemRefIndex.resize(this.items.columns.capacity, slot);
    this.items.columns.cols.ref[slot] = low32(key);
    this.itemRefIndex.insert(slot);
    this.itemIds[slot] = itemId;
    return slot;
  }

  /** Event time of the newest event that changed the user. */
  userUpdatedAt(slot: number): number {
    return this.users.columns.cols.lastSeen[slot]!;
  }

  /** Event time of the newest behaviour event on the item (0 when it only has metadata). */
  itemUpdatedAt(slot: number): number {
    return this.items.columns.cols.lastEvent[slot]!;
  }

  /** The slot of the item whose 32-bit reference is `ref`, or -1. */
  itemSlotByRef(ref: number): number {
    return this.itemRefIndex.find(ref);
  }

  private updateBehaviour(e: BehaviourEvent): void {
    const c = this.config;
    const code = this.typeCode(e.type);
    const weight = c.eventWeights[e.type];
    const ts = e.ts;
    if (ts > this.newestEventTs) this.newestEventTs = ts;
    const item = this.itemSlotOrCreate(e.itemId, ts);
    const ic = this.items.columns.cols;
    if (ts < ic.firstSeen[item]!) ic.firstSeen[item] = ts;
    if (ts > ic.lastEvent[item]!) ic.lastEvent[item] = ts;
    const ref = ic.ref[item]!;

    const user = this.userSlotOrCreate(e.userId);
    const uc = this.users.columns.cols;
    const fresh = uc.sessionEvents[user] === 0;
    const last = fresh ? ts : uc.lastSeen[user]!;
    const gap = c.user.sessionGapMs;
    // Decayed state is kept as of the user's newest event; an older event adds its weight decayed by its age.
    let ageOfEvent = 0;
    if (ts >= last) {
      if (ts > last) this.decayUser(user, ts - last);
      if (fresh || ts - last > gap) {
        uc.sessionStart[user] = ts;
        uc.sessionEvents[user] = 1;
      } else uc.sessionEvents[user]!++;
      uc.lastSeen[user] = ts;
    } else {
      ageOfEvent = last - ts;
      if (ts >= uc.sessionStart[user]!) uc.sessionEvents[user]!++;
      else if (uc.sessionStart[user]! - ts <= gap) {
        uc.sessionStart[user] = ts;
        uc.sessionEvents[user]!++;
      }
    }
    const counterType = this.counterTypeIndex[code]!;
    if (counterType >= 0) {
      const base = user * (this.halfLives.length * c.user.counterTypes.length) + counterType * this.halfLives.length;
      for (let h = 0; h < this.halfLives.length; h++) uc.counters[base + h]! += decay(ageOfEvent, this.halfLives[h]!);
    }
    if (weight !== 0 && c.user.affinitySlots > 0) {
      const count = ic.attributeCount[item]!;
      const amount = weight * decay(ageOfEvent, c.user.affinityHalfLifeMs);
      for (let a = 0; a < count; a++) this.addAffinity(user, ic.attributes[item * c.item.maxAttributes + a]!, amount);
    }
    const rings = this.ringsByType[code];
    if (rings) {
      if (rings[0] === 0 && c.item.covisitNeighbours > 0) this.covisit(user, item, ref);
      for (const r of rings) this.pushRing(user, r, ref);
    }
    this.users.touch(user);

    const windowType = this.windowTypeIndex[code]!;
    if (windowType >= 0) this.countInWindows(item, windowType, ts);
    if (weight > 0) {
      const t = ic.trendTime[item]!;
      if (ts >= t) {
        ic.trending[item] = ic.trending[item]! * decay(ts - t, c.item.trendingHalfLifeMs) + weight;
        ic.trendTime[item] = ts;
      } else ic.trending[item]! += weight * decay(t - ts, c.item.trendingHalfLifeMs);
    }
    if (e.type === 'impression' || e.type === 'click') this.countCtr(item, e.type === 'click', ts);
    this.items.touch(item);
  }

  private decayUser(user: number, dt: number): void {
    const c = this.config;
    const uc = this.users.columns.cols;
    const H = this.halfLives.length;
    const C = H * c.user.counterTypes.length;
    for (let h = 0; h < H; h++) {
      const f = decay(dt, this.halfLives[h]!);
      for (let i = user * C + h; i < (user + 1) * C; i += H) uc.counters[i]! *= f;
    }
    const K = c.user.affinitySlots;
    if (K > 0) {
      const f = decay(dt, c.user.affinityHalfLifeMs);
      for (let i = user * K; i < (user + 1) * K; i++) uc.affinityValues[i]! *= f;
    }
  }

  private addAffinity(user: number, attribute: number, amount: number): void {
    const K = this.config.user.affinitySlots;
    const keys = this.users.columns.cols.affinityKeys;
    const values = this.users.columns.cols.affinityValues;
    let weakest = user * K;
    for (let i = user * K; i < (user + 1) * K; i++) {
      if (values[i] !== 0 && keys[i] === attribute) {
        values[i]! += amount;
        return;
      }
      if (Math.abs(values[i]!) < Math.abs(values[weakest]!)) weakest = i;
    }
    // A new attribute takes the weakest slot when it is stronger; an empty slot has weight 0.
    if (Math.abs(amount) > Math.abs(values[weakest]!)) {
      keys[weakest] = attribute;
      values[weakest] = amount;
    }
  }

  private pushRing(user: number, r: number, ref: number): void {
    const R = this.config.user.histories.length;
    const length = this.config.user.histories[r]!.length;
    const uc = this.users.columns.cols;
    const base = user * this.ringTotal + this.ringOffsets[r]!;
    const head = uc.ringHead[user * R + r]!;
    uc.rings[base + head] = ref;
    uc.ringHead[user * R + r] = (head + 1) % length;
    if (uc.ringFill[user * R + r]! < length) uc.ringFill[user * R + r]!++;
  }

  /** 32-bit references of the user's most recent items in ring `r`, newest first, at most `limit`. */
  recentRefs(user: number, r: number, limit: number): number[] {
    const refs: number[] = [];
    this.forEachRecent(user, r, limit, (ref) => refs.push(ref));
    return refs;
  }

  /** Calls `visit` with the user's items in ring `r`, newest first, at most `limit`. */
  private forEachRecent(user: number, r: number, limit: number, visit: (ref: number) => void): void {
    const R = this.config.user.histories.length;
    const length = this.config.user.histories[r]!.length;
    const uc = this.users.columns.cols;
    const base = user * this.ringTotal + this.ringOffsets[r]!;
    const fill = Math.min(uc.ringFill[user * R + r]!, limit);
    let at = uc.ringHead[user * R + r]!;
    for (let n = 0; n < fill; n++) {
      at = (at + length - 1) % length;
      visit(uc.rings[base + at]!);
    }
  }

  /** Pairs the new item with the user's most recent ones, both ways, in space-saving top-K neighbour lists. */
  private covisit(user: number, item: number, ref: number): void {
    const R = this.config.user.histories.length;
    const length = this.config.user.histories[0]!.length;
    const uc = this.users.columns.cols;
    const base = user * this.ringTotal;
    const fill = Math.min(uc.ringFill[user * R]!, this.config.item.covisitRecent);
    let at = uc.ringHead[user * R]!;
    for (let n = 0; n < fill; n++) {
      at = (at + length - 1) % length;
      const recent = uc.rings[base + at]!;
      if (recent === ref) continue;
      const other = this.itemRefIndex.find(recent);
      if (other < 0) continue;
      this.addNeighbour(item, recent);
      this.addNeighbour(other, ref);
      this.items.touch(other);
    }
  }

  private addNeighbour(item: number, neighbour: number): void {
    const K = this.config.item.covisitNeighbours;
    const keys = this.items.columns.cols.covisitKeys;
    const scores = this.items.columns.cols.covisitScores;
    let weakest = item * K;
    for (let i = item * K; i < (item + 1) * K; i++) {
      if (scores[i] !== 0 && keys[i] === neighbour) {
        scores[i]!++;
        return;
      }
      if (scores[i]! < scores[weakest]!) weakest = i;
    }
    keys[weakest] = neighbour;
    scores[weakest] = scores[weakest]! + 1;
  }

  private countInWindows(item: number, type: number, ts: number): void {
    const ic = this.items.columns.cols;
    const epochs = ic.bucketEpochs;
    const counts = ic.bucketCounts;
    const T = this.config.item.windowTypes.length;
    for (let wi = 0; wi < this.windowWidths.length; wi++) {
      const epoch = Math.floor(ts / this.windowWidths[wi]!);
      const at = item * this.totalBuckets + this.windowOffsets[wi]! + (epoch % this.windowBuckets[wi]!);
      const held = epochs[at]!;
      if (held === epoch) counts[at * T + type]!++;
      else if (held < epoch) {
        epochs[at] = epoch;
        for (let t = 0; t < T; t++) counts[at * T + t] = 0;
        counts[at * T + type] = 1;
      }
    }
  }

  private countCtr(item: number, click: boolean, ts: number): void {
    const halfLife = this.longestWindow;
    if (ts - this.globalTime > 64 * halfLife) {
      const f = decay(ts - this.globalTime, halfLife);
      this.globalClicks *= f;
      this.globalImpressions *= f;
      for (const s of this.attributeStats.values()) {
        s.clicks *= f;
        s.impressions *= f;
      }
      this.globalTime = ts;
    }
    const amount = Math.exp(((ts - this.globalTime) * LN2) / halfLife);
    this.globalsDirty = true;
    if (click) this.globalClicks += amount;
    else this.globalImpressions += amount;
    const ic = this.items.columns.cols;
    const A = this.config.item.maxAttributes;
    for (let a = 0; a < ic.attributeCount[item]!; a++) {
      const key = ic.attributes[item * A + a]!;
      let stats = this.attributeStats.get(key);
      if (!stats) {
        if (this.attributeStats.size >= MAX_ATTRIBUTE_VALUES) continue;
        stats = { clicks: 0, impressions: 0 };
        this.attributeStats.set(key, stats);
      }
      if (click) stats.clicks += amount;
      else stats.impressions += amount;
    }
  }

  private updateItemMetadata(e: ItemEvent): void {
    const c = this.config.item;
    const item = this.itemSlotOrCreate(e.itemId, e.ts);
    const ic = this.items.columns.cols;
    let count = 0;
    for (const field of c.attributeFields) {
      const value = e.fields[field];
      if (value === undefined) continue;
      const values: readonly (string | number | boolean)[] = Array.isArray(value) ? value : [value as string | number | boolean];
      for (const v of values) {
        if (count >= c.maxAttributes) break;
        ic.attributes[item * c.maxAttributes + count++] = attributeKey(field, v);
      }
    }
    ic.attributeCount[item] = count;
    c.numericFields.forEach((field, f) => {
      const value = e.fields[field];
      ic.numeric[item * c.numericFields.length + f] = typeof value === 'number' ? value : 0;
    });
    Object.entries(c.categoricalFields).forEach(([field, vocab], f) => {
      const value = e.fields[field];
      ic.categorical[item * Object.keys(c.categoricalFields).length + f] = typeof value === 'string' ? vocab.indexOf(value) + 1 : 0;
    });
    const published = publishedTime(e.fields[c.publishedField]);
    if (published !== undefined) ic.published[item] = published;
    this.items.touch(item);
  }

  /**
   * Feature rows for one user and `candidates`, as of `context.ts`, in `names` order: one row per candidate in a
   * single Float32Array. Unknown users and items get zeros (with `user_known` / `item_known` at 0) and priors.
   */
  lookup(userId: string, candidates: readonly string[], context: LookupContext, into?: FeatureRows): FeatureRows {
    const width = this.names.length;
    const rows = into && into.values.length >= candidates.length * width ? into.reset(candidates.length) : new FeatureRows(this.names, candidates.length);
    const out = rows.values;
    const now = context.ts;
    const c = this.config;
    const user = this.userSlot(userId);
    let col = 0;
    const userStart = 0;
    // User block, written into row 0 and copied to the others.
    const uc = this.users.columns.cols;
    const H = this.halfLives.length;
    out[col++] = user >= 0 ? 1 : 0;
    const age = user >= 0 ? Math.max(0, now - uc.lastSeen[user]!) : 0;
    for (let t = 0; t < c.user.counterTypes.length; t++) {
      for (let h = 0; h < H; h++) {
        out[col++] = user >= 0 ? uc.counters[user * H * c.user.counterTypes.length + t * H + h]! * decay(age, this.halfLives[h]!) : 0;
      }
    }
    for (let r = 0; r < c.user.histories.length; r++) out[col++] = user >= 0 ? uc.ringFill[user * c.user.histories.length + r]! : 0;
    const inSession = user >= 0 && age <= c.user.sessionGapMs;
    out[col++] = age / HOUR;
    out[col++] = inSession ? uc.sessionEvents[user]! : 0;
    out[col++] = inSession ? (uc.lastSeen[user]! - uc.sessionStart[user]!) / 1000 : 0;
    const userEnd = col;

    // What the user block implies for every candidate: their items, affinities and co-visited neighbours.
    const interacted = new Set<number>();
    const covisit = new Map<number, number>();
    let affinityMass = 0;
    const affinity = new Map<number, number>();
    if (user >= 0) {
      for (let r = 0; r < c.user.histories.length; r++) this.forEachRecent(user, r, 255, (ref) => interacted.add(ref));
      if (c.item.covisitNeighbours > 0) {
        const K = c.item.covisitNeighbours;
        const keys = this.items.columns.cols.covisitKeys;
        const scores = this.items.columns.cols.covisitScores;
        this.forEachRecent(user, 0, c.item.covisitRecent, (ref) => {
          const slot = this.itemRefIndex.find(ref);
          if (slot < 0) return;
          for (let i = slot * K; i < (slot + 1) * K; i++) {
            if (scores[i] !== 0) covisit.set(keys[i]!, (covisit.get(keys[i]!) ?? 0) + scores[i]!);
          }
        });
      }
      const K = c.user.affinitySlots;
      for (let i = user * K; i < (user + 1) * K; i++) {
        const v = uc.affinityValues[i]!;
        if (v === 0) continue;
        affinityMass += Math.abs(v);
        affinity.set(uc.affinityKeys[i]!, v);
      }
    }

    // Context block, written after the item and user x item blocks of row 0.
    const itemWidth = this.itemWidth;
    const contextStart = userEnd + itemWidth + 3;
    col = contextStart;
    const local = now + c.context.timezoneOffsetMinutes * 60_000;
    out[col++] = Math.floor((((local % DAY) + DAY) % DAY) / HOUR);
    out[col++] = (((Math.floor(local / DAY) + 4) % 7) + 7) % 7;
    for (const [field, vocab] of Object.entries(c.context.categoricalFields)) {
      const value = context.fields?.[field];
      for (const v of vocab) out[col++] = value === v ? 1 : 0;
    }
    for (const field of c.context.numericFields) {
      const value = context.fields?.[field];
      out[col++] = typeof value === 'number' ? value : 0;
    }

    const globalCtr = this.globalCtrAt(now);
    for (let n = 0; n < candidates.length; n++) {
      const base = n * width;
      if (n > 0) {
        out.copyWithin(base + userStart, userStart, userEnd);
        out.copyWithin(base + contextStart, contextStart, width);
      }
      const key = hash53(candidates[n]!);
      const item = this.items.find(key);
      col = this.writeItemBlock(out, base + userEnd, item, now, globalCtr);
      const ref = low32(key);
      out[col++] = interacted.has(ref) ? 1 : 0;
      let matched = 0;
      if (item >= 0 && affinityMass > 0) {
        const ic = this.items.columns.cols;
        for (let a = 0; a < ic.attributeCount[item]!; a++) matched += affinity.get(ic.attributes[item * c.item.maxAttributes + a]!) ?? 0;
      }
      out[col++] = affinityMass > 0 ? matched / affinityMass : 0;
      out[col++] = covisit.get(ref) ?? 0;
      if (item >= 0) {
        this.items.columns.cols.referenced[item] = 1;
        const updated = this.items.columns.cols.lastEvent[item]!;
        if (updated > 0) this.noteServedAge(now - updated);
      }
    }
    if (user >= 0) {
      uc.referenced[user] = 1;
      this.noteServedAge(now - uc.lastSeen[user]!);
    }
    return rows;
  }

  private noteServedAge(ageMs: number): void {
    if (ageMs < this.freshestServedMs) this.freshestServedMs = ageMs;
    if (ageMs > this.stalestServedMs) this.stalestServedMs = ageMs;
  }

  /**
   * Age (ms, lookup time minus the entity's newest event) of the freshest and stalest user or item served since the
   * last call; undefined when nothing known was served.
   */
  takeServedAges(): { freshestMs: number; stalestMs: number } | undefined {
    const ages = this.stalestServedMs >= 0 || this.freshestServedMs !== Infinity ? { freshestMs: Math.max(0, this.freshestServedMs), stalestMs: Math.max(0, this.stalestServedMs) } : undefined;
    this.freshestServedMs = Infinity;
    this.stalestServedMs = -Infinity;
    return ages;
  }


  private globalCtrAt(now: number): number {
    const { ctrPrior, ctrPriorWeight } = this.config.item;
    const f = Math.exp((-(now - this.globalTime) * LN2) / this.longestWindow);
    return (this.globalClicks * f + ctrPriorWeight * ctrPrior) / (this.globalImpressions * f + ctrPriorWeight);
  }

  private writeItemBlock(out: Float32Array, col: number, item: number, now: number, globalCtr: number): number {
    const c = this.config.item;
    const T = c.windowTypes.length;
    const width = this.itemWidth;
    if (item < 0) {
      out.fill(0, col, col + width);
      // Unknown items still get the priors, so a cold item is scored as an average one.
      const ctrAt = col + 1 + c.windows.length * T;
      out[ctrAt] = globalCtr;
      out[ctrAt + 1] = globalCtr;
      return col + width;
    }
    const ic = this.items.columns.cols;
    out[col++] = 1;
    const epochs = ic.bucketEpochs;
    const counts = ic.bucketCounts;
    let longestClicks = 0;
    let longestImpressions = 0;
    for (let wi = 0; wi < this.windowWidths.length; wi++) {
      const buckets = this.windowBuckets[wi]!;
      const current = Math.floor(now / this.windowWidths[wi]!);
      const start = item * this.totalBuckets + this.windowOffsets[wi]!;
      for (let t = 0; t < T; t++) out[col + t] = 0;
      for (let b = 0; b < buckets; b++) {
        const epoch = epochs[start + b]!;
        if (epoch <= current - buckets || epoch > current) continue;
        for (let t = 0; t < T; t++) out[col + t]! += counts[(start + b) * T + t]!;
      }
      if (buckets * this.windowWidths[wi]! === this.longestWindow) {
        longestClicks = out[col + this.clickType]!;
        longestImpressions = out[col + this.impressionType]!;
      }
      col += T;
    }
    const m = c.ctrPriorWeight;
    let attributeClicks = 0;
    let attributeImpressions = 0;
    const f = Math.exp((-(now - this.globalTime) * LN2) / this.longestWindow);
    for (let a = 0; a < ic.attributeCount[item]!; a++) {
      const stats = this.attributeStats.get(ic.attributes[item * c.maxAttributes + a]!);
      if (!stats) continue;
      attributeClicks += stats.clicks * f;
      attributeImpressions += stats.impressions * f;
    }
    const attributeCtr = ic.attributeCount[item]! > 0 ? (attributeClicks + m * globalCtr) / (attributeImpressions + m) : globalCtr;
    out[col++] = (longestClicks + m * attributeCtr) / (longestImpressions + m);
    out[col++] = attributeCtr;
    out[col++] = ic.trending[item]! * decay(now - ic.trendTime[item]!, c.trendingHalfLifeMs);
    const published = ic.published[item]!;
    out[col++] = Math.max(0, now - (Number.isNaN(published) ? ic.firstSeen[item]! : published)) / HOUR;
    for (let f2 = 0; f2 < c.numericFields.length; f2++) out[col++] = ic.numeric[item * c.numericFields.length + f2]!;
    const vocabularies = this.categoricalVocabularies;
    for (let fi = 0; fi < vocabularies.length; fi++) {
      const chosen = ic.categorical[item * vocabularies.length + fi]!;
      for (let v = 0; v < vocabularies[fi]!.length; v++) out[col++] = chosen === v + 1 ? 1 : 0;
    }
    return col;
  }

  /** The user's items in history ring `ring` (by name or index), newest first, as ids where the item is still cached. */
  recentItems(userId: string, ring: string | number = 0): string[] {
    const r = typeof ring === 'number' ? ring : this.config.user.histories.findIndex((h) => h.name === ring);
    const user = this.userSlot(userId);
    if (user < 0 || r < 0) return [];
    const out: string[] = [];
    this.forEachRecent(user, r, 255, (ref) => {
      const slot = this.itemRefIndex.find(ref);
      if (slot >= 0) out.push(this.itemIds[slot]!);
    });
    return out;
  }
}

function offset0(sizes: readonly number[]): number {
  return sizes.reduce((sum, n) => sum + n, 0);
}

function publishedTime(value: FieldValue | undefined): number | undefined {
  if (typeof value === 'number' && Number.isFinite(value)) return value;
  if (typeof value === 'string') {
    const ms = Date.parse(value);
    return Number.isNaN(ms) ? undefined : ms;
  }
  return undefined;
}
