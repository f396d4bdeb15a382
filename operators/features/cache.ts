import { BEHAVIOUR_TYPES, type BehaviourEvent, type BehaviourType, type FieldMap, type FieldValue, type InputEvent, type ItemEvent } from '../../schema/events.js';
import { RowSet } from './columns.js';
import { featureNames, resolveFeatureConfig, type FeatureConfig, type ResolvedFeatureConfig } from './config.js';
import { attributeKey, hash53, low32 } from './hash.js';
import { RefScores } from './ref-scores.js';
import { FeatureRows } from './rows.js';
import { SlotIndex } from './slot-table.js';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const LN2 = Math.LN2;
/** Attribute values with global CTR statistics; later ones fall back to the global CTR. */
export const MAX_ATTRIBUTE_VALUES = 65_536;
const INITIAL_CAPACITY = 1024;
/** 32-bit words per 64-byte cache line. */
const LINE_WORDS = 16;

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

/** User rows, in an order that keeps what every event updates (time, session, counters) in the row's first line. */
function userFields(c: ResolvedFeatureConfig) {
  const counters = c.user.counterTypes.length * Object.keys(c.user.halfLivesMs).length;
  const ringTotal = c.user.histories.reduce((s, r) => s + r.length, 0);
  return {
    key: { type: 'f64', width: 1 },
    lastSeen: { type: 'f64', width: 1 },
    sessionStart: { type: 'f64', width: 1 },
    sessionEvents: { type: 'u32', width: 1 },
    ringHead: { type: 'u8', width: c.user.histories.length },
    ringFill: { type: 'u8', width: c.user.histories.length },
    /** 1 once an affinity was stored, so users without any never read the affinity part of their row. */
    affinityHeld: { type: 'u8', width: 1 },
    counters: { type: 'f32', width: counters },
    affinityValues: { type: 'f32', width: c.user.affinitySlots },
    affinityKeys: { type: 'u32', width: c.user.affinitySlots },
    rings: { type: 'u32', width: ringTotal },
  } as const;
}

/** Item rows: times and trending in the first cache line, co-visitation from the second, then attributes and buckets. */
function itemFields(c: ResolvedFeatureConfig) {
  const types = c.item.windowTypes.length;
  const buckets = c.item.windows.reduce((s, w) => s + w.buckets, 0);
  return {
    key: { type: 'f64', width: 1 },
    firstSeen: { type: 'f64', width: 1 },
    published: { type: 'f64', width: 1 },
    trendTime: { type: 'f64', width: 1 },
    lastEvent: { type: 'f64', width: 1 },
    trending: { type: 'f32', width: 1 },
    attributeCount: { type: 'u8', width: 1 },
    /**
     * 1 once metadata gave a publication time. A flag rather than a NaN time keeps a fresh row all zeros, so growing
     * the rows writes nothing into new ones: in a virtual machine each first touch of a page is a costly fault.
     */
    publishedKnown: { type: 'u8', width: 1 },
    categorical: { type: 'u16', width: Object.keys(c.item.categoricalFields).length },
    /**
     * Per window: the newest epoch counted + 1 (0: none), that epoch's counts per window type (the head bucket), and
     * running totals per type over the whole window as of that epoch. Events of the newest epoch, most of a live
     * stream, and lookups at it touch only these lines next to the key, never the older buckets.
     */
    windowHeads: { type: 'i32', width: c.item.windows.length * (1 + 2 * types) },
    attributes: { type: 'u32', width: c.item.maxAttributes },
    numeric: { type: 'f32', width: c.item.numericFields.length },
    /** Neighbour reference (u32) and its score (f32, read through the f32 view) side by side, on whole lines. */
    covisit: { type: 'u32', width: 2 * c.item.covisitNeighbours, align: 64 },
    /**
     * The window's older buckets: per bucket its epoch + 1 (0: never used) and one count per window type. A bucket
     * joins them when a newer epoch takes the head.
     */
    buckets: { type: 'i32', width: buckets * (1 + types) },
  } as const;
}

type UserField = keyof ReturnType<typeof userFields>;
type ItemField = keyof ReturnType<typeof itemFields>;

/**
 * Slot storage with a key index, CLOCK eviction within a fixed maximum (reference bits in a bitmap), and a dirty
 * bitmap for write-behind. Every row starts with its key.
 */
export class Entities<Name extends string> {
  readonly rows: RowSet<Name | 'key'>;
  readonly index: SlotIndex;
  count = 0;
  private hand = 0;
  private fresh = -1;
  /** Keys evicted since creation, so a caller can tell whether keys it loaded may have gone. */
  evictions = 0;
  private dirtyBits: Uint32Array;
  private referencedBits: Uint32Array;
  /** Slots changed and not yet taken by `takeDirty`. */
  dirtyCount = 0;

  constructor(
    specs: ConstructorParameters<typeof RowSet<Name | 'key'>>[0],
    readonly maxCount: number,
    private readonly kind: EntityKind,
    private readonly beforeEvict: (kind: EntityKind, slot: number) => void,
  ) {
    this.rows = new RowSet(specs, Math.min(INITIAL_CAPACITY, maxCount));
    if (this.rows.at.key !== 0) throw new Error('the key must lead the row');
    this.index = new SlotIndex(this.rows.capacity);
    this.index.bind(this.rows.f64, this.rows.stride8);
    this.dirtyBits = new Uint32Array(Math.ceil(this.rows.capacity / 32));
    this.referencedBits = new Uint32Array(this.dirtyBits.length);
  }

  get bytes(): number {
    return this.rows.bytes + this.index.bytes + this.dirtyBits.byteLength + this.referencedBits.byteLength;
  }

  find(key: number): number {
    return this.index.find(key);
  }

  /** The key of a slot. */
  keyOf(slot: number): number {
    return this.rows.f64[slot * this.rows.stride8]!;
  }

  /** A fresh slot for `key`: a new one while under the maximum, else the CLOCK victim's. */
  allocate(key: number): number {
    let slot: number;
    const rows = this.rows;
    if (this.count < this.maxCount) {
      if (this.count === rows.capacity) {
        const capacity = Math.min(this.maxCount, rows.capacity * 2);
        rows.grow(capacity);
        this.index.bind(rows.f64, rows.stride8);
        this.index.resize(capacity, this.count);
        const words = Math.ceil(capacity / 32);
        const dirty = new Uint32Array(words);
        dirty.set(this.dirtyBits);
        this.dirtyBits = dirty;
        const referenced = new Uint32Array(words);
        referenced.set(this.referencedBits);
        this.referencedBits = referenced;
      }
      slot = this.count++;
    } else {
      const referenced = this.referencedBits;
      for (;;) {
        const word = this.hand >>> 5;
        const bit = 1 << (this.hand & 31);
        if ((referenced[word]! & bit) === 0) break;
        referenced[word] = referenced[word]! & ~bit;
        this.hand = (this.hand + 1) % this.count;
      }
      slot = this.hand;
      this.hand = (this.hand + 1) % this.count;
      this.beforeEvict(this.kind, slot);
      this.evictions++;
      this.index.remove(slot);
      rows.reset(slot);
      this.clearDirty(slot);
    }
    rows.f64[slot * rows.stride8] = key;
    this.index.insert(slot);
    this.fresh = slot;
    return slot;
  }

  /** Marks a change; a slot counts as referenced from its second use on, so one-off keys are evicted first. */
  touch(slot: number): void {
    const word = slot >>> 5;
    const bit = 1 << (slot & 31);
    if (slot === this.fresh) this.fresh = -1;
    else this.referencedBits[word] = this.referencedBits[word]! | bit;
    const bits = this.dirtyBits;
    if ((bits[word]! & bit) === 0) {
      bits[word] = bits[word]! | bit;
      this.dirtyCount++;
    }
  }

  /** Gives the slot its second chance in CLOCK, as a key in use (loaded or served) gets. */
  reference(slot: number): void {
    this.referencedBits[slot >>> 5] = this.referencedBits[slot >>> 5]! | (1 << (slot & 31));
  }

  isDirty(slot: number): boolean {
    return (this.dirtyBits[slot >>> 5]! & (1 << (slot & 31))) !== 0;
  }

  private clearDirty(slot: number): void {
    if (!this.isDirty(slot)) return;
    this.dirtyBits[slot >>> 5] = this.dirtyBits[slot >>> 5]! & ~(1 << (slot & 31));
    this.dirtyCount--;
  }

  /** Slots changed since the last call, each once, in slot order. */
  takeDirty(): number[] {
    const slots: number[] = [];
    if (this.dirtyCount === 0) return slots;
    const bits = this.dirtyBits;
    for (let w = 0; w < bits.length; w++) {
      let word = bits[w]!;
      if (word === 0) continue;
      bits[w] = 0;
      while (word !== 0) {
        const low = word & -word;
        slots.push(w * 32 + 31 - Math.clz32(low));
        word ^= low;
      }
    }
    this.dirtyCount = 0;
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
  readonly users: Entities<UserField>;
  readonly items: Entities<ItemField>;
  /** Item ids by slot, kept for records and for reading histories back as ids. */
  readonly itemIds: string[] = [];
  private readonly typeCodes = new Map<string, number>();
  /** By type code: index among counter types, among window types (-1: none), weight, and the history rings fed. */
  private readonly counterTypeIndex: Int8Array;
  private readonly windowTypeIndex: Int8Array;
  private readonly weightOf: Float64Array;
  private readonly ringsByType: (number[] | undefined)[];
  /** By type code: 1 counts as an impression, 2 as a click in CTR statistics. */
  private readonly ctrRole: Uint8Array;
  private readonly ringOffsets: number[];
  private readonly ringLengths: number[];
  private readonly halfLives: number[];
  private readonly windowOffsets: number[];
  private readonly longestWindow: number;
  private readonly windowWidths: number[];
  private readonly windowBuckets: number[];
  private readonly itemWidth: number;
  private readonly categoricalVocabularies: (readonly string[])[];
  /** The request's categorical context fields and their vocabularies, in feature order. */
  private readonly contextVocabularies: readonly (readonly [string, readonly string[]])[];
  private readonly impressionType: number;
  private readonly clickType: number;
  /** Row offsets of the fields, in elements of each field's type. */
  private readonly u: Readonly<Record<UserField, number>>;
  private readonly i: Readonly<Record<ItemField, number>>;
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
  /** A lookup's candidate slots and 32-bit references, kept between lookups so a lookup allocates neither. */
  private candidateSlots = new Int32Array(0);
  /** A lookup's tables of the user's items, their co-visited neighbours and the user's affinities, reused. */
  private readonly interacted = new RefScores();
  private readonly covisitScores = new RefScores();
  private readonly affinities = new RefScores();
  private candidateRefs = new Uint32Array(0);
  private candidateKeys = new Float64Array(0);
  /**
   * A lookup's statistics of the attributes its candidates carry, read from `attributeStats` once per attribute:
   * candidates share a few attribute values, and a probe here costs a fraction of a Map lookup.
   */
  private readonly lookupAttributeClicks = new RefScores();
  private readonly lookupAttributeImpressions = new RefScores();
  /** Per window, a lookup's current epoch and the newest event's epoch. */
  private readonly currentEpochs: Float64Array;
  private readonly settledEpochs: Float64Array;
  /** Per user half-life, a lookup's decay of the user's counters. */
  private readonly counterDecays: Float64Array;
  private touchedSum = 0;

  constructor(config: FeatureConfig = {}, options: FeatureCacheOptions = {}) {
    this.config = resolveFeatureConfig(config);
    const c = this.config;
    this.names = Object.freeze(featureNames(c));
    const onEvict = options.onEvict ?? (() => undefined);
    const userSpecs = userFields(c);
    const itemSpecs = itemFields(c);
    // A slot also holds index entries (8 bytes at up to half load: 16); an item its id string.
    const perUser = new RowSet(userSpecs, 0).stride + 16;
    const perItem = new RowSet(itemSpecs, 0).stride + 16 + 64;
    const maxUsers = Math.max(16, Math.floor((c.memory.maxBytes * (1 - c.memory.itemShare)) / perUser));
    const maxItems = Math.max(16, Math.floor((c.memory.maxBytes * c.memory.itemShare) / perItem));
    this.users = new Entities<UserField>(userSpecs, maxUsers, 'user', onEvict);
    this.items = new Entities<ItemField>(itemSpecs, maxItems, 'item', onEvict);
    this.u = this.users.rows.at;
    this.i = this.items.rows.at;
    for (const type of BEHAVIOUR_TYPES) this.typeCodes.set(type, this.typeCodes.size);
    const codes = this.typeCodes.size + 1;
    const typeIndex = (list: readonly BehaviourType[]) => {
      const out = new Int8Array(codes).fill(-1);
      list.forEach((t, i) => (out[this.typeCode(t)] = i));
      return out;
    };
    this.counterTypeIndex = typeIndex(c.user.counterTypes);
    this.windowTypeIndex = typeIndex(c.item.windowTypes);
    this.weightOf = new Float64Array(codes);
    this.ctrRole = new Uint8Array(codes);
    for (const type of BEHAVIOUR_TYPES) this.weightOf[this.typeCode(type)] = c.eventWeights[type];
    this.ctrRole[this.typeCode('impression')] = 1;
    this.ctrRole[this.typeCode('click')] = 2;
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
    this.ringLengths = c.user.histories.map((h) => h.length);
    this.halfLives = Object.values(c.user.halfLivesMs);
    this.windowOffsets = [];
    offset = 0;
    for (const w of c.item.windows) {
      this.windowOffsets.push(offset);
      offset += w.buckets;
    }
    this.longestWindow = Math.max(...c.item.windows.map((w) => w.lengthMs));
    this.windowWidths = c.item.windows.map((w) => w.lengthMs / w.buckets);
    this.windowBuckets = c.item.windows.map((w) => w.buckets);
    this.categoricalVocabularies = Object.values(c.item.categoricalFields);
    this.contextVocabularies = Object.entries(c.context.categoricalFields);
    this.currentEpochs = new Float64Array(c.item.windows.length);
    this.settledEpochs = new Float64Array(c.item.windows.length);
    this.counterDecays = new Float64Array(this.halfLives.length);
    const categorical = this.categoricalVocabularies.reduce((sum, v) => sum + v.length, 0);
    this.itemWidth = 1 + c.item.windows.length * c.item.windowTypes.length + 4 + c.item.numericFields.length + categorical;
    this.impressionType = c.item.windowTypes.indexOf('impression');
    this.clickType = c.item.windowTypes.indexOf('click');
  }

  /** A small number per event type; types outside the schema share the last code, which feeds no feature. */
  private typeCode(type: string): number {
    return this.typeCodes.get(type) ?? this.typeCodes.size;
  }

  /** Bytes held in typed arrays (rows, indexes and dirty bitmaps). */
  get bytes(): number {
    return this.users.bytes + this.items.bytes;
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

  private itemSlotOrCreate(itemId: string, ts: number): number {
    const key = hash53(itemId);
    let slot = this.items.find(key);
    if (slot < 0) {
      slot = this.allocateItem(key, itemId);
      this.items.rows.f64[slot * this.items.rows.stride8 + this.i.firstSeen] = ts;
    }
    return slot;
  }

  /** A fresh item slot for `key` (evicting if full), registered under its 32-bit reference. */
  allocateItem(key: number, itemId: string): number {
    const slot = this.items.allocate(key);
    this.itemIds[slot] = itemId;
    return slot;
  }

  /** Event time of the newest event that changed the user. */
  userUpdatedAt(slot: number): number {
    return this.users.rows.f64[slot * this.users.rows.stride8 + this.u.lastSeen]!;
  }

  /** Event time of the newest behaviour event on the item (0 when it only has metadata). */
  itemUpdatedAt(slot: number): number {
    return this.items.rows.f64[slot * this.items.rows.stride8 + this.i.lastEvent]!;
  }

  /** The slot of the item whose 32-bit reference is `ref`, or -1. */
  itemSlotByRef(ref: number): number {
    return this.items.index.findRef(ref);
  }

  private updateBehaviour(e: BehaviourEvent): void {
    const c = this.config;
    const code = this.typeCode(e.type);
    const weight = this.weightOf[code]!;
    const ts = e.ts;
    if (ts > this.newestEventTs) this.newestEventTs = ts;
    const item = this.itemSlotOrCreate(e.itemId, ts);
    const userKey = hash53(e.userId);
    let user = this.users.find(userKey);
    if (user < 0) user = this.users.allocate(userKey);

    const I = this.items.rows;
    const i = this.i;
    const if64 = I.f64;
    const ib8 = item * I.stride8;
    if (ts < if64[ib8 + i.firstSeen]!) if64[ib8 + i.firstSeen] = ts;
    if (ts > if64[ib8 + i.lastEvent]!) if64[ib8 + i.lastEvent] = ts;
    const ref = if64[ib8]! >>> 0;

    const U = this.users.rows;
    const u = this.u;
    const uf64 = U.f64;
    const uu32 = U.u32;
    const ub8 = user * U.stride8;
    const ub4 = user * U.stride4;
    const fresh = uu32[ub4 + u.sessionEvents] === 0;
    const last = fresh ? ts : uf64[ub8 + u.lastSeen]!;
    const gap = c.user.sessionGapMs;
    // Decayed state is kept as of the user's newest event; an older event adds its weight decayed by its age.
    let ageOfEvent = 0;
    if (ts >= last) {
      if (ts > last) this.decayUser(ub4, ts - last);
      if (fresh || ts - last > gap) {
        uf64[ub8 + u.sessionStart] = ts;
        uu32[ub4 + u.sessionEvents] = 1;
      } else uu32[ub4 + u.sessionEvents]!++;
      uf64[ub8 + u.lastSeen] = ts;
    } else {
      ageOfEvent = last - ts;
      const start = uf64[ub8 + u.sessionStart]!;
      if (ts >= start) uu32[ub4 + u.sessionEvents]!++;
      else if (start - ts <= gap) {
        uf64[ub8 + u.sessionStart] = ts;
        uu32[ub4 + u.sessionEvents]!++;
      }
    }
    const counterType = this.counterTypeIndex[code]!;
    if (counterType >= 0) {
      const H = this.halfLives.length;
      const at = ub4 + u.counters + counterType * H;
      const counters = U.f32;
      for (let h = 0; h < H; h++) counters[at + h]! += decay(ageOfEvent, this.halfLives[h]!);
    }
    const I4 = item * I.stride4;
    if (weight !== 0 && c.user.affinitySlots > 0) {
      const count = I.u8[item * I.stride + i.attributeCount]!;
      if (count > 0) {
        const amount = weight * decay(ageOfEvent, c.user.affinityHalfLifeMs);
        for (let a = 0; a < count; a++) this.addAffinity(ub4, I.u32[I4 + i.attributes + a]!, amount);
      }
    }
    const rings = this.ringsByType[code];
    if (rings) {
      if (rings[0] === 0 && c.item.covisitNeighbours > 0) this.covisit(user, item, ref);
      for (let r = 0; r < rings.length; r++) this.pushRing(user, rings[r]!, ref);
    }
    this.users.touch(user);

    const windowType = this.windowTypeIndex[code]!;
    if (windowType >= 0) this.countInWindows(I4, windowType, ts);
    if (weight > 0) {
      const trending = I.f32;
      const t = if64[ib8 + i.trendTime]!;
      if (ts >= t) {
        trending[I4 + i.trending] = trending[I4 + i.trending]! * decay(ts - t, c.item.trendingHalfLifeMs) + weight;
        if64[ib8 + i.trendTime] = ts;
      } else trending[I4 + i.trending]! += weight * decay(t - ts, c.item.trendingHalfLifeMs);
    }
    const ctrRole = this.ctrRole[code]!;
    if (ctrRole !== 0) this.countCtr(item, ctrRole === 2, ts);
    this.items.touch(item);
  }

  /** Decays the user's counters and affinities by `dt`; `ub4` is the user's row in 4-byte elements. */
  private decayUser(ub4: number, dt: number): void {
    const c = this.config;
    const f32 = this.users.rows.f32;
    const H = this.halfLives.length;
    const counters = ub4 + this.u.counters;
    const end = counters + H * c.user.counterTypes.length;
    for (let h = 0; h < H; h++) {
      const f = decay(dt, this.halfLives[h]!);
      for (let at = counters + h; at < end; at += H) f32[at]! *= f;
    }
    if (this.users.rows.u8[ub4 * 4 + this.u.affinityHeld] === 0) return;
    const K = c.user.affinitySlots;
    const values = ub4 + this.u.affinityValues;
    let held = false;
    for (let at = values; at < values + K; at++) if (f32[at] !== 0) held = true;
    // Zeros stay zeros: only held affinities need the decay factor.
    if (held) {
      const f = decay(dt, c.user.affinityHalfLifeMs);
      for (let at = values; at < values + K; at++) f32[at]! *= f;
    }
  }

  private addAffinity(ub4: number, attribute: number, amount: number): void {
    const K = this.config.user.affinitySlots;
    const keys = this.users.rows.u32;
    const values = this.users.rows.f32;
    const keyBase = ub4 + this.u.affinityKeys;
    const valueBase = ub4 + this.u.affinityValues;
    let weakest = 0;
    for (let k = 0; k < K; k++) {
      if (values[valueBase + k] !== 0 && keys[keyBase + k] === attribute) {
        values[valueBase + k]! += amount;
        this.users.rows.u8[ub4 * 4 + this.u.affinityHeld] = 1;
        return;
      }
      if (Math.abs(values[valueBase + k]!) < Math.abs(values[valueBase + weakest]!)) weakest = k;
    }
    // A new attribute takes the weakest slot when it is stronger; an empty slot has weight 0.
    if (Math.abs(amount) > Math.abs(values[valueBase + weakest]!)) {
      keys[keyBase + weakest] = attribute;
      values[valueBase + weakest] = amount;
      this.users.rows.u8[ub4 * 4 + this.u.affinityHeld] = 1;
    }
  }

  private pushRing(user: number, r: number, ref: number): void {
    const U = this.users.rows;
    const length = this.ringLengths[r]!;
    const headAt = user * U.stride + this.u.ringHead + r;
    const fillAt = user * U.stride + this.u.ringFill + r;
    const head = U.u8[headAt]!;
    U.u32[user * U.stride4 + this.u.rings + this.ringOffsets[r]! + head] = ref;
    U.u8[headAt] = (head + 1) % length;
    if (U.u8[fillAt]! < length) U.u8[fillAt]!++;
  }

  /** 32-bit references of the user's most recent items in ring `r`, newest first, at most `limit`. */
  recentRefs(user: number, r: number, limit: number): number[] {
    const refs: number[] = [];
    this.forEachRecent(user, r, limit, (ref) => refs.push(ref));
    return refs;
  }

  /** Calls `visit` with the user's items in ring `r`, newest first, at most `limit`. */
  private forEachRecent(user: number, r: number, limit: number, visit: (ref: number) => void): void {
    const U = this.users.rows;
    const length = this.ringLengths[r]!;
    const base = user * U.stride4 + this.u.rings + this.ringOffsets[r]!;
    const fill = Math.min(U.u8[user * U.stride + this.u.ringFill + r]!, limit);
    let at = U.u8[user * U.stride + this.u.ringHead + r]!;
    for (let n = 0; n < fill; n++) {
      at = (at + length - 1) % length;
      visit(U.u32[base + at]!);
    }
  }

  /** Pairs the new item with the user's most recent ones, both ways, in space-saving top-K neighbour lists. */
  private covisit(user: number, item: number, ref: number): void {
    const U = this.users.rows;
    const length = this.ringLengths[0]!;
    const base = user * U.stride4 + this.u.rings;
    const fill = Math.min(U.u8[user * U.stride + this.u.ringFill]!, this.config.item.covisitRecent);
    let at = U.u8[user * U.stride + this.u.ringHead]!;
    for (let n = 0; n < fill; n++) {
      at = at === 0 ? length - 1 : at - 1;
      const recent = U.u32[base + at]!;
      if (recent === ref) continue;
      const other = this.items.index.findRef(recent);
      if (other < 0) continue;
      this.addNeighbour(item, recent);
      this.addNeighbour(other, ref);
      this.items.touch(other);
    }
  }

  private addNeighbour(item: number, neighbour: number): void {
    const K = this.config.item.covisitNeighbours;
    const I = this.items.rows;
    const keys = I.u32;
    const scores = I.f32;
    const start = item * I.stride4 + this.i.covisit;
    const end = start + 2 * K;
    // One pass finds the neighbour or, failing that, the first of the weakest (an empty entry has score 0) to replace.
    let weakest = start;
    let least = scores[start + 1]!;
    for (let at = start; at < end; at += 2) {
      const score = scores[at + 1]!;
      if (keys[at] === neighbour && score !== 0) {
        scores[at + 1] = score + 1;
        return;
      }
      if (score < least) {
        least = score;
        weakest = at;
      }
    }
    keys[weakest] = neighbour;
    scores[weakest + 1] = least + 1;
  }

  /**
   * Counts the event in every window: in the head when it belongs to the newest epoch, else in its older bucket, and
   * in the running totals when it falls within the window. An event of a newer epoch moves the head into the older
   * buckets first, and the buckets that leave the window leave the totals. `I4` is the item's row in 4-byte elements.
   */
  private countInWindows(I4: number, type: number, ts: number): void {
    const I = this.items.rows;
    const words = I.i32;
    const counts = I.u32;
    const T = this.config.item.windowTypes.length;
    const entry = 1 + T;
    for (let wi = 0; wi < this.windowWidths.length; wi++) {
      const buckets = this.windowBuckets[wi]!;
      const head = I4 + this.i.windowHeads + wi * (1 + 2 * T);
      const totals = head + T;
      const epoch = Math.floor(ts / this.windowWidths[wi]!);
      const newest = words[head]! - 1;
      if (epoch >= newest) {
        if (epoch > newest) this.advanceHead(I4, wi, epoch);
        counts[head + 1 + type]!++;
      } else {
        // Older than the head: its bucket, unless a newer epoch holds that bucket (the head's own included).
        if ((newest - epoch) % buckets === 0) continue;
        const bucket = I4 + this.i.buckets + (this.windowOffsets[wi]! + (epoch % buckets)) * entry;
        const held = words[bucket]!;
        if (held === epoch + 1) counts[bucket + 1 + type]!++;
        else if (held < epoch + 1) {
          words[bucket] = epoch + 1;
          for (let t = 1; t <= T; t++) counts[bucket + t] = 0;
          counts[bucket + 1 + type] = 1;
        } else continue;
        if (epoch <= newest - buckets) continue;
      }
      counts[totals + 1 + type]!++;
    }
  }

  /**
   * Moves window `wi`'s head of the item at `I4` on to the later `epoch`: the head's counts go to their bucket, and the
   * buckets that leave the window by then come off the running totals.
   */
  private advanceHead(I4: number, wi: number, epoch: number): void {
    const counts = this.items.rows.u32;
    const words = this.items.rows.i32;
    const T = this.config.item.windowTypes.length;
    const entry = 1 + T;
    const buckets = this.windowBuckets[wi]!;
    const head = I4 + this.i.windowHeads + wi * (1 + 2 * T);
    const totals = head + T;
    const newest = words[head]! - 1;
    if (newest >= 0) {
      const start = I4 + this.i.buckets + this.windowOffsets[wi]! * entry;
      const held = start + (newest % buckets) * entry;
      words[held] = newest + 1;
      for (let t = 1; t <= T; t++) counts[held + t] = counts[head + t]!;
      const expiring = Math.min(newest, epoch - buckets);
      for (let gone = Math.max(0, newest - buckets + 1); gone <= expiring; gone++) {
        const at = start + (gone % buckets) * entry;
        if (words[at] !== gone + 1) continue;
        for (let t = 1; t <= T; t++) counts[totals + t] = counts[totals + t]! - counts[at + t]!;
      }
    }
    words[head] = epoch + 1;
    for (let t = 1; t <= T; t++) counts[head + t] = 0;
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
    const I = this.items.rows;
    const count = I.u8[item * I.stride + this.i.attributeCount]!;
    const base = item * I.stride4 + this.i.attributes;
    for (let a = 0; a < count; a++) {
      const key = I.u32[base + a]!;
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
    const I = this.items.rows;
    const i = this.i;
    const I4 = item * I.stride4;
    let count = 0;
    for (const field of c.attributeFields) {
      const value = e.fields[field];
      if (value === undefined) continue;
      const values: readonly (string | number | boolean)[] = Array.isArray(value) ? value : [value as string | number | boolean];
      for (const v of values) {
        if (count >= c.maxAttributes) break;
        I.u32[I4 + i.attributes + count++] = attributeKey(field, v);
      }
    }
    I.u8[item * I.stride + i.attributeCount] = count;
    c.numericFields.forEach((field, f) => {
      const value = e.fields[field];
      I.f32[I4 + i.numeric + f] = typeof value === 'number' ? value : 0;
    });
    Object.entries(c.categoricalFields).forEach(([field, vocab], f) => {
      const value = e.fields[field];
      I.u16[item * I.stride2 + i.categorical + f] = typeof value === 'string' ? vocab.indexOf(value) + 1 : 0;
    });
    const published = publishedTime(e.fields[c.publishedField]);
    if (published !== undefined) {
      I.f64[item * I.stride8 + i.published] = published;
      I.u8[item * I.stride + i.publishedKnown] = 1;
    }
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
    const U = this.users.rows;
    const u = this.u;
    const ub8 = user * U.stride8;
    const ub4 = user * U.stride4;
    const H = this.halfLives.length;
    out[col++] = user >= 0 ? 1 : 0;
    const lastSeen = user >= 0 ? U.f64[ub8 + u.lastSeen]! : 0;
    const age = user >= 0 ? Math.max(0, now - lastSeen) : 0;
    const decays = this.counterDecays;
    for (let h = 0; h < H; h++) decays[h] = decay(age, this.halfLives[h]!);
    for (let t = 0; t < c.user.counterTypes.length; t++) {
      for (let h = 0; h < H; h++) out[col++] = user >= 0 ? U.f32[ub4 + u.counters + t * H + h]! * decays[h]! : 0;
    }
    for (let r = 0; r < c.user.histories.length; r++) out[col++] = user >= 0 ? U.u8[user * U.stride + u.ringFill + r]! : 0;
    const inSession = user >= 0 && age <= c.user.sessionGapMs;
    out[col++] = age / HOUR;
    out[col++] = inSession ? U.u32[ub4 + u.sessionEvents]! : 0;
    out[col++] = inSession ? (lastSeen - U.f64[ub8 + u.sessionStart]!) / 1000 : 0;
    const userEnd = col;

    // What the user block implies for every candidate: their items, affinities and co-visited neighbours.
    const interacted = this.interacted;
    const covisit = this.covisitScores;
    const affinity = this.affinities;
    interacted.clear();
    covisit.clear();
    affinity.clear();
    let affinityMass = 0;
    if (user >= 0) {
      for (let r = 0; r < c.user.histories.length; r++) this.forEachRecent(user, r, 255, (ref) => interacted.add(ref, 1));
      if (c.item.covisitNeighbours > 0) {
        const K = c.item.covisitNeighbours;
        const I = this.items.rows;
        this.forEachRecent(user, 0, c.item.covisitRecent, (ref) => {
          const slot = this.items.index.findRef(ref);
          if (slot < 0) return;
          const start = slot * I.stride4 + this.i.covisit;
          for (let at = start; at < start + 2 * K; at += 2) {
            const score = I.f32[at + 1]!;
            if (score !== 0) covisit.add(I.u32[at]!, score);
          }
        });
      }
      const K = c.user.affinitySlots;
      for (let k = 0; k < K; k++) {
        const v = U.f32[ub4 + u.affinityValues + k]!;
        if (v === 0) continue;
        affinityMass += Math.abs(v);
        affinity.add(U.u32[ub4 + u.affinityKeys + k]!, v);
      }
    }

    // Context block, written after the item and user x item blocks of row 0.
    const itemWidth = this.itemWidth;
    const contextStart = userEnd + itemWidth + 3;
    col = contextStart;
    const local = now + c.context.timezoneOffsetMinutes * 60_000;
    out[col++] = Math.floor((((local % DAY) + DAY) % DAY) / HOUR);
    out[col++] = (((Math.floor(local / DAY) + 4) % 7) + 7) % 7;
    for (const [field, vocab] of this.contextVocabularies) {
      const value = context.fields?.[field];
      for (const v of vocab) out[col++] = value === v ? 1 : 0;
    }
    for (const field of c.context.numericFields) {
      const value = context.fields?.[field];
      out[col++] = typeof value === 'number' ? value : 0;
    }

    // The same for every candidate: how far CTR statistics have decayed, and each window's current epoch.
    const attributeDecay = Math.exp((-(now - this.globalTime) * LN2) / this.longestWindow);
    const globalCtr = this.globalCtrWith(attributeDecay);
    const currents = this.currentEpochs;
    // Each window's epoch of the newest event: heads may be moved on up to it, never past what the stream has reached.
    const settled = this.settledEpochs;
    for (let w = 0; w < currents.length; w++) {
      currents[w] = Math.floor(now / this.windowWidths[w]!);
      settled[w] = Math.floor(this.newestEventTs / this.windowWidths[w]!);
    }
    this.lookupAttributeClicks.clear();
    this.lookupAttributeImpressions.clear();
    const I = this.items.rows;
    const A = c.item.maxAttributes;
    // Candidates' rows are scattered over megabytes, and a model run between two requests evicts them. Each step below
    // is its own pass over all candidates, with no iteration waiting for another, so the processor overlaps the misses
    // of many candidates: their id strings, then their index entries and row keys, then the rows' leading lines.
    if (this.candidateSlots.length < candidates.length) {
      this.candidateSlots = new Int32Array(candidates.length);
      this.candidateRefs = new Uint32Array(candidates.length);
      this.candidateKeys = new Float64Array(candidates.length);
    }
    const slots = this.candidateSlots;
    const refs = this.candidateRefs;
    const keys = this.candidateKeys;
    for (let n = 0; n < candidates.length; n++) {
      keys[n] = hash53(candidates[n]!);
      refs[n] = low32(keys[n]!);
    }
    this.items.index.findAll(keys, candidates.length, slots);
    this.touchLeadingLines(slots, candidates.length);
    for (let n = 0; n < candidates.length; n++) {
      const base = n * width;
      if (n > 0) {
        // Element loops: a copyWithin call costs more than copying these few values.
        for (let k = userStart; k < userEnd; k++) out[base + k] = out[k]!;
        for (let k = contextStart; k < width; k++) out[base + k] = out[k]!;
      }
      const item = slots[n]!;
      col = this.writeItemBlock(out, base + userEnd, item, now, globalCtr, attributeDecay, currents, settled);
      const ref = refs[n]!;
      out[col++] = interacted.has(ref) ? 1 : 0;
      let matched = 0;
      if (item >= 0 && affinityMass > 0) {
        const count = I.u8[item * I.stride + this.i.attributeCount]!;
        const attributes = item * I.stride4 + this.i.attributes;
        for (let a = 0; a < count && a < A; a++) matched += affinity.get(I.u32[attributes + a]!);
      }
      out[col++] = affinityMass > 0 ? matched / affinityMass : 0;
      out[col++] = covisit.get(ref);
      if (item >= 0) {
        this.items.reference(item);
        const updated = I.f64[item * I.stride8 + this.i.lastEvent]!;
        if (updated > 0) this.noteServedAge(now - updated);
      }
    }
    if (user >= 0) {
      this.users.reference(user);
      this.noteServedAge(now - lastSeen);
    }
    return rows;
  }

  /**
   * Loads each candidate's row up to its attributes, all candidates' loads in flight together; `writeItemBlock` would
   * otherwise wait for them one candidate at a time, behind its branches on what it read.
   */
  private touchLeadingLines(slots: Int32Array, count: number): void {
    const I = this.items.rows;
    const words = I.i32;
    const stride4 = I.stride4;
    const end = this.i.attributes + this.config.item.maxAttributes;
    let sum = 0;
    for (let n = 0; n < count; n++) {
      const item = slots[n]!;
      if (item < 0) continue;
      for (let at = item * stride4 + LINE_WORDS, last = item * stride4 + end; at < last; at += LINE_WORDS) sum += words[at]!;
    }
    // Kept, so that the compiler cannot drop loads whose values nothing else reads.
    this.touchedSum = sum;
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

  /** The global CTR with the statistics decayed by `f`, their decay since `globalTime`. */
  private globalCtrWith(f: number): number {
    const { ctrPrior, ctrPriorWeight } = this.config.item;
    return (this.globalClicks * f + ctrPriorWeight * ctrPrior) / (this.globalImpressions * f + ctrPriorWeight);
  }

  private writeItemBlock(
    out: Float32Array,
    col: number,
    item: number,
    now: number,
    globalCtr: number,
    attributeDecay: number,
    currents: Float64Array,
    settled: Float64Array,
  ): number {
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
    const I = this.items.rows;
    const i = this.i;
    const I4 = item * I.stride4;
    const ib8 = item * I.stride8;
    out[col++] = 1;
    const epochs = I.i32;
    const counts = I.u32;
    const entry = 1 + T;
    let longestClicks = 0;
    let longestImpressions = 0;
    for (let wi = 0; wi < this.windowWidths.length; wi++) {
      const buckets = this.windowBuckets[wi]!;
      const current = currents[wi]!;
      const start = I4 + i.buckets + this.windowOffsets[wi]! * entry;
      const head = I4 + i.windowHeads + wi * (1 + 2 * T);
      let newest = epochs[head]! - 1;
      if (newest >= 0 && current > newest && current - newest < buckets && current <= settled[wi]!) {
        // The stream has moved on to this epoch, so the head may too, as this item's next event would move it: later
        // lookups in the epoch then read the head alone, not the buckets that have left the window since.
        this.advanceHead(I4, wi, current);
        newest = current;
      }
      if (newest < 0 || current - newest >= buckets) {
        for (let t = 0; t < T; t++) out[col + t] = 0;
      } else if (current === newest) {
        for (let t = 0; t < T; t++) out[col + t] = counts[head + 1 + T + t]!;
      } else if (current > newest && 2 * (current - newest) < buckets) {
        // A later `now` than the newest epoch: the totals less the few older buckets that have left the window since.
        for (let t = 0; t < T; t++) out[col + t] = counts[head + 1 + T + t]!;
        for (let epoch = Math.max(0, newest - buckets + 1); epoch <= current - buckets; epoch++) {
          const at = start + (epoch % buckets) * entry;
          if (epochs[at] !== epoch + 1) continue;
          for (let t = 0; t < T; t++) out[col + t]! -= counts[at + 1 + t]!;
        }
      } else if (current > newest) {
        // Or, when fewer are still in it, the head plus those older buckets.
        for (let t = 0; t < T; t++) out[col + t] = counts[head + 1 + t]!;
        for (let epoch = current - buckets + 1; epoch < newest; epoch++) {
          const at = start + (epoch % buckets) * entry;
          if (epochs[at] !== epoch + 1) continue;
          for (let t = 0; t < T; t++) out[col + t]! += counts[at + 1 + t]!;
        }
      } else {
        // A lookup before the item's newest epoch (replaying the past) sums the older buckets it can still see. The
        // bucket the head will move into holds an epoch the head has replaced, so it is left out.
        for (let t = 0; t < T; t++) out[col + t] = 0;
        for (let b = 0; b < buckets; b++) {
          if (b === newest % buckets) continue;
          const at = start + b * entry;
          const epoch = epochs[at]! - 1;
          if (epoch <= current - buckets || epoch > current) continue;
          for (let t = 0; t < T; t++) out[col + t]! += counts[at + 1 + t]!;
        }
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
    const f = attributeDecay;
    const attributeCount = I.u8[item * I.stride + i.attributeCount]!;
    const clicksSeen = this.lookupAttributeClicks;
    const impressionsSeen = this.lookupAttributeImpressions;
    for (let a = 0; a < attributeCount; a++) {
      const key = I.u32[I4 + i.attributes + a]!;
      if (!clicksSeen.has(key)) {
        const stats = this.attributeStats.get(key);
        clicksSeen.add(key, stats ? stats.clicks * f : 0);
        impressionsSeen.add(key, stats ? stats.impressions * f : 0);
      }
      attributeClicks += clicksSeen.get(key);
      attributeImpressions += impressionsSeen.get(key);
    }
    const attributeCtr = attributeCount > 0 ? (attributeClicks + m * globalCtr) / (attributeImpressions + m) : globalCtr;
    out[col++] = (longestClicks + m * attributeCtr) / (longestImpressions + m);
    out[col++] = attributeCtr;
    out[col++] = I.f32[I4 + i.trending]! * decay(now - I.f64[ib8 + i.trendTime]!, c.trendingHalfLifeMs);
    const since = I.u8[item * I.stride + i.publishedKnown] === 1 ? I.f64[ib8 + i.published]! : I.f64[ib8 + i.firstSeen]!;
    out[col++] = Math.max(0, now - since) / HOUR;
    for (let f2 = 0; f2 < c.numericFields.length; f2++) out[col++] = I.f32[I4 + i.numeric + f2]!;
    const vocabularies = this.categoricalVocabularies;
    for (let fi = 0; fi < vocabularies.length; fi++) {
      const chosen = I.u16[item * I.stride2 + i.categorical + fi]!;
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
      const slot = this.items.index.findRef(ref);
      if (slot >= 0) out.push(this.itemIds[slot]!);
    });
    return out;
  }
}

function publishedTime(value: FieldValue | undefined): number | undefined {
  if (typeof value === 'number' && Number.isFinite(value)) return value;
  if (typeof value === 'string') {
    const ms = Date.parse(value);
    return Number.isNaN(ms) ? undefined : ms;
  }
  return undefined;
}
