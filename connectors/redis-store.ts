import { Redis, type Cluster, type RedisOptions } from 'ioredis';
import type { SourcePosition } from '../operators/batch.js';
import { FeatureCache, type EntityKind, type LookupContext } from '../operators/features/cache.js';
import { decodeGlobals, decodeItem, decodeUser, encodeGlobals, encodeItem, encodeItemInto, encodeUser, encodeUserInto, itemRecordMaxBytes, userRecordMaxBytes } from '../operators/features/codec.js';
import type { FeatureConfig } from '../operators/features/config.js';
import { hash53, hex53, low32 } from '../operators/features/hash.js';
import type { FeatureRows } from '../operators/features/rows.js';
import { isBehaviourEvent, type InputEvent } from '../schema/events.js';
import { PositionMap, type FeatureStore, type FeatureStoreHealth } from './feature-store.js';

/**
 * Key layout (all keys of a shard share the hash tag `{<shard>}`, so they live in one Redis Cluster slot and a
 * checkpoint is a single-slot atomic script):
 *
 *   <prefix>:{<shard>}:u:<user key hex>   user record, binary (codec.ts), expires after `ttlMs` without writes
 *   <prefix>:{<shard>}:i:<item ref hex>   item record, binary, with the item id at its end, same expiry
 *   <prefix>:{<shard>}:g                  global and per-attribute CTR statistics, binary
 *   <prefix>:{<shard>}:offsets            hash "<topic>/<partition>" -> next offset covered by the records
 *
 * A user key is the 53-bit cyrb53 hash of its id; an item ref is the low 32 bits of its id's hash, the reference
 * user histories hold, so the items a history names can be loaded with it (a record whose id does not hash to the
 * key asked for is a 32-bit collision and counts as a miss). One features worker writes one shard; serving
 * instances read it (`role: 'reader'`) and reload anything older than `maxStalenessMs`.
 */
export interface RedisFeatureStoreOptions {
  readonly features?: FeatureConfig;
  /** A client to use (its owner closes it). Default: one made from `connection`, closed by `close()`. */
  readonly client?: Redis | Cluster;
  /** Default `redisOptionsFromEnv()`. */
  readonly connection?: RedisOptions;
  /** Default `eddy:f`. */
  readonly prefix?: string;
  /** Default `features`. */
  readonly shard?: string;
  /** A writer owns the shard's state; a reader only serves it. Default `writer`. */
  readonly role?: 'writer' | 'reader';
  /** Expiry of user and item records. Default 30 days. */
  readonly ttlMs?: number;
  /**
   * How long changes wait in memory before they are written behind, counted from the previous write's end while one
   * is in flight, so a slow write gathers more changes into the next instead of queueing writes. Default 100 ms.
   */
  readonly flushIntervalMs?: number;
  /** Reader: oldest a cached record may be before a lookup reloads it. Default 1000 ms. */
  readonly maxStalenessMs?: number;
  /** Changed records held while Redis is away; beyond it `update` and `checkpoint` wait for Redis. Default 200,000. */
  readonly maxPendingWrites?: number;
}

/**
 * Connection settings from the environment: `EDDY_REDIS_URL` (default `redis://127.0.0.1:6379`; `rediss://` turns on
 * TLS), `EDDY_REDIS_PASSWORD`, and `EDDY_REDIS_TLS=1` for TLS on a `redis://` URL.
 */
export function redisOptionsFromEnv(env: NodeJS.ProcessEnv = process.env): RedisOptions {
  const url = new URL(env.EDDY_REDIS_URL ?? 'redis://127.0.0.1:6379');
  const tls = url.protocol === 'rediss:' || env.EDDY_REDIS_TLS === '1';
  const password = env.EDDY_REDIS_PASSWORD ?? (url.password ? decodeURIComponent(url.password) : undefined);
  return {
    host: url.hostname,
    port: Number(url.port || 6379),
    ...(url.username ? { username: decodeURIComponent(url.username) } : {}),
    ...(password ? { password } : {}),
    ...(url.pathname.length > 1 ? { db: Number(url.pathname.slice(1)) } : {}),
    ...(tls ? { tls: {} } : {}),
  };
}

/**
 * Rounds of loading the records one event or one request needs before the budget is taken to be too small to hold
 * them at once.
 */
const MAX_LOAD_ATTEMPTS = 8;

/** A user by its 53-bit key, or an item by its 32-bit reference (what histories and co-visitation hold). */
type Keyed = { readonly kind: EntityKind; readonly key: number };

/**
 * The FeatureCache with Redis behind it: write-behind in atomic scripts (one command per flush) that carry the source
 * positions with the state, read-through on a miss, and serving from the cache while Redis is away.
 */
export class RedisFeatureStore implements FeatureStore {
  readonly kind = 'redis' as const;
  readonly cache: FeatureCache;
  readonly names: readonly string[];
  private readonly redis: Redis | Cluster;
  private readonly ownsClient: boolean;
  private readonly base: string;
  private readonly role: 'writer' | 'reader';
  private readonly ttlMs: number;
  private readonly flushIntervalMs: number;
  private readonly maxStalenessMs: number;
  private readonly maxPendingWrites: number;
  private readonly applied = new PositionMap();
  /** Encoded records not yet written: evicted before their flush, or kept from a failed one. */
  private pending = new Map<string, Uint8Array>();
  private flushing: Promise<void> = Promise.resolve();
  private flushTimer: NodeJS.Timeout | undefined;
  /** A flush is encoding or writing; the next is scheduled when it ends. */
  private writing = false;
  private failure: string | undefined;
  private readonly loadedAt = new Map<string, number>();
  /** Names of the records evicted while an update runs, which its keys known to be absent may no longer be. */
  private evictedDuringUpdate: Set<string> | undefined;
  private globalsLoadedAt = -Infinity;
  private closed = false;
  /** Records written since start, for the benchmark and metrics. */
  recordsWritten = 0;

  constructor(options: RedisFeatureStoreOptions = {}) {
    this.role = options.role ?? 'writer';
    this.cache = new FeatureCache(options.features, { onEvict: (kind, slot) => this.saveEvicted(kind, slot) });
    this.names = this.cache.names;
    this.base = `${options.prefix ?? 'eddy:f'}:{${options.shard ?? 'features'}}`;
    this.ttlMs = options.ttlMs ?? 30 * 24 * 3_600_000;
    this.flushIntervalMs = options.flushIntervalMs ?? 100;
    this.maxStalenessMs = options.maxStalenessMs ?? 1000;
    this.maxPendingWrites = options.maxPendingWrites ?? 200_000;
    this.ownsClient = !options.client;
    this.redis =
      options.client ??
      new Redis({
        ...(options.connection ?? redisOptionsFromEnv()),
        lazyConnect: true,
        // Fail fast while disconnected: the store serves from the cache and keeps changes pending instead.
        enableOfflineQueue: false,
        maxRetriesPerRequest: 1,
        retryStrategy: () => 200,
      });
    this.redis.on('error', (error: Error) => this.markFailed(error));
    this.redis.on('ready', () => {
      this.failure = undefined;
      if (this.role === 'writer') this.scheduleFlush(0);
    });
  }

  private keyOf(kind: EntityKind | 'g' | 'offsets', key = 0): string {
    if (kind === 'g' || kind === 'offsets') return `${this.base}:${kind}`;
    return `${this.base}:${kind === 'user' ? 'u' : 'i'}:${hex53(key)}`;
  }

  private markFailed(error: unknown): void {
    this.failure = error instanceof Error ? error.message : String(error);
  }

  private async connected(): Promise<void> {
    if (this.redis.status === 'wait') await this.redis.connect();
  }

  async restore(): Promise<readonly SourcePosition[]> {
    try {
      await this.connected();
      const [offsets, globals] = await Promise.all([this.redis.hgetall(this.keyOf('offsets')), this.redis.getBuffer(this.keyOf('g'))]);
      if (globals) decodeGlobals(this.cache, globals);
      this.globalsLoadedAt = performance.now();
      const positions = Object.entries(offsets).map(([id, offset]) => {
        const cut = id.lastIndexOf('/');
        return { topic: id.slice(0, cut), partition: Number(id.slice(cut + 1)), offset: Number(offset) };
      });
      this.applied.advance(positions);
      return this.applied.list();
    } catch (error) {
      throw new Error(`cannot restore feature state from Redis (${this.base})`, { cause: error });
    }
  }

  async update(events: readonly InputEvent[], positions: readonly SourcePosition[] = []): Promise<void> {
    if (this.role !== 'writer') throw new Error('a reader feature store takes no updates');
    const evictions = () => this.cache.users.evictions + this.cache.items.evictions;
    const before = evictions();
    // Keys Redis did not hold when the batch began. One the batch has since created and the cache evicted again is no
    // longer absent: its record is pending or written, and starting it afresh would lose what the batch added.
    const absent = await this.loadMissing(this.uncachedKeysOf(events));
    const evicted = new Set<string>();
    this.evictedDuringUpdate = evicted;
    try {
      for (const event of events) {
        // Loading or applying may evict a key the batch needs when the batch is large for the budget: load it again,
        // until the loads stop evicting one another's keys.
        for (let attempt = 0; evictions() !== before && !this.holdsStateOf(event, (name) => absent.has(name) && !evicted.has(name)); attempt++) {
          if (attempt === MAX_LOAD_ATTEMPTS) {
            throw new Error(`the feature cache cannot hold the state one event needs at once (event ${JSON.stringify(event)}): raise features.memory.maxBytes`);
          }
          for (const name of await this.loadMissing(this.keysOfEvent(event))) {
            absent.add(name);
            evicted.delete(name);
          }
        }
        this.cache.update(event);
      }
    } finally {
      this.evictedDuringUpdate = undefined;
    }
    this.applied.advance(positions);
    if (this.pendingCount() >= this.maxPendingWrites) await this.flushUntilDurable();
    else if (!this.writing) this.scheduleFlush(this.flushIntervalMs);
  }

  /** The users and items the events touch that the cache does not hold, each once. */
  private uncachedKeysOf(events: readonly InputEvent[]): Keyed[] {
    const users = new Set<number>();
    const items = new Set<number>();
    const keys: Keyed[] = [];
    const addItem = (id: string) => {
      const ref = low32(hash53(id));
      if (this.cache.itemSlotByRef(ref) >= 0 || items.has(ref)) return;
      items.add(ref);
      keys.push({ kind: 'item', key: ref });
    };
    for (const event of events) {
      if (event.type === 'item') addItem(event.itemId);
      else if (isBehaviourEvent(event)) {
        const key = hash53(event.userId);
        if (this.cache.users.find(key) < 0 && !users.has(key)) {
          users.add(key);
          keys.push({ kind: 'user', key });
        }
        addItem(event.itemId);
      }
    }
    return keys;
  }

  /** The records the event changes or reads that the cache does not hold, the user's recent items included. */
  private keysOfEvent(event: InputEvent): Keyed[] {
    const keys = this.uncachedKeysOf([event]);
    if (isBehaviourEvent(event)) keys.push(...this.recentItemsToLoad([{ kind: 'user', key: hash53(event.userId) }]));
    return keys;
  }

  /** Whether every record the event changes or reads is in the cache, or known not to exist. */
  private holdsStateOf(event: InputEvent, isAbsent: (name: string) => boolean): boolean {
    const has = (k: Keyed) => this.isCached(k) || isAbsent(this.keyOf(k.kind, k.key));
    if (event.type === 'item') return has({ kind: 'item', key: low32(hash53(event.itemId)) });
    if (!isBehaviourEvent(event)) return true;
    const user: Keyed = { kind: 'user', key: hash53(event.userId) };
    if (!has(user) || !has({ kind: 'item', key: low32(hash53(event.itemId)) })) return false;
    return this.recentItemsToLoad([user]).every(has);
  }

  private referenceCached(keys: readonly Keyed[]): void {
    for (const k of keys) {
      const slot = k.kind === 'user' ? this.cache.users.find(k.key) : this.cache.itemSlotByRef(k.key);
      if (slot >= 0) (k.kind === 'user' ? this.cache.users : this.cache.items).reference(slot);
    }
  }

  private isCached(k: Keyed): boolean {
    return (k.kind === 'user' ? this.cache.users.find(k.key) : this.cache.itemSlotByRef(k.key)) >= 0;
  }

  /** The items co-visitation pairs with, for users in `keys`, that the cache does not hold. */
  private recentItemsToLoad(keys: readonly Keyed[]): Keyed[] {
    const limit = this.cache.config.item.covisitNeighbours > 0 ? this.cache.config.item.covisitRecent : 0;
    if (limit === 0) return [];
    const out: Keyed[] = [];
    for (const k of keys) {
      if (k.kind !== 'user') continue;
      const slot = this.cache.users.find(k.key);
      if (slot < 0) continue;
      for (const ref of this.cache.recentRefs(slot, 0, limit)) {
        if (this.cache.itemSlotByRef(ref) < 0 && !out.some((o) => o.key === ref)) out.push({ kind: 'item', key: ref });
      }
    }
    return out;
  }

  /**
   * Reads the records of keys the cache does not hold. A writer cannot start a key from nothing while Redis may
   * hold it, so it retries until Redis answers; the source waits meanwhile, which bounds memory.
   */
  private async loadMissing(keys: readonly Keyed[]): Promise<Set<string>> {
    const missing = keys.filter((k) => !this.isCached(k));
    if (missing.length === 0) return new Set();
    for (;;) {
      try {
        const absent = await this.readInto(missing);
        const recent = this.recentItemsToLoad(missing);
        if (recent.length > 0) for (const name of await this.readInto(recent)) absent.add(name);
        return absent;
      } catch (error) {
        this.markFailed(error);
        if (this.closed) throw new Error('feature store closed while waiting for Redis', { cause: error });
        await sleep(100);
      }
    }
  }

  /** One MGET for all `keys` (they share a hash tag); pending writes win over what Redis holds. Returns the absent. */
  private async readInto(keys: readonly Keyed[]): Promise<Set<string>> {
    const absent = new Set<string>();
    const names = keys.map((k) => this.keyOf(k.kind, k.key));
    // Pending records are taken before the read is sent: a flush that starts meanwhile writes them after this read
    // on the same connection, so the read would miss them in Redis as well as here.
    const pending = names.map((name) => this.pending.get(name));
    const values = await this.redis.mgetBuffer(...names);
    const now = performance.now();
    keys.forEach((k, i) => {
      const name = names[i]!;
      const bytes = pending[i] ?? values[i];
      // Only a reader reloads by age; a writer's cache is the newest state.
      if (this.role === 'reader') this.loadedAt.set(name, now);
      if (!bytes) {
        absent.add(name);
        return;
      }
      if (k.kind === 'user') {
        if (!decodeUser(this.cache, k.key, bytes)) this.markFailed(new Error(`record ${name} was written under another feature config`));
        return;
      }
      const slot = this.cache.itemSlotByRef(k.key);
      // A cached item with this reference but another id is a collision; the cached one stays.
      if (slot >= 0 && this.role === 'writer') return;
      if (decodeItem(this.cache, bytes) === undefined) this.markFailed(new Error(`record ${name} was written under another feature config`));
    });
    if (this.failure !== undefined && this.redis.status === 'ready' && keys.length > 0) this.failure = undefined;
    return absent;
  }

  async lookup(userId: string, candidates: readonly string[], context: LookupContext, into?: FeatureRows): Promise<FeatureRows> {
    const keys: Keyed[] = [{ kind: 'user', key: hash53(userId) }];
    for (const c of candidates) keys.push({ kind: 'item', key: low32(hash53(c)) });
    const absent = new Set<string>();
    const now = performance.now();
    const needs = (k: Keyed) => {
      // A writer's cache is the newest state: it only reads what it does not hold. A reader also reloads by age.
      const cached = this.isCached(k);
      if (cached && this.role === 'writer') return false;
      const name = this.keyOf(k.kind, k.key);
      if (absent.has(name)) return false;
      if (!cached) return true;
      const loaded = this.loadedAt.get(name);
      return loaded === undefined || now - loaded > this.maxStalenessMs;
    };
    let refreshGlobals = this.role === 'reader' && now - this.globalsLoadedAt > this.maxStalenessMs;
    // Loading may evict a key loaded a moment before when the request's keys crowd the budget: load again, a few times.
    // The user's recent items count too: co-visitation reads their neighbours.
    for (let attempt = 0; attempt < MAX_LOAD_ATTEMPTS && this.redis.status === 'ready'; attempt++) {
      const wanted = keys.filter(needs);
      if (wanted.length === 0 && !refreshGlobals && this.recentItemsToLoad(keys).filter(needs).length === 0) break;
      // Before the first load, what the request uses gets its second chance, so loading the rest evicts other keys.
      // A request that loads nothing skips this: the cache's lookup references what it serves.
      if (attempt === 0) this.referenceCached(keys);
      try {
        const [missing] = await Promise.all([
          wanted.length > 0 ? this.readInto(wanted) : new Set<string>(),
          refreshGlobals ? this.refreshGlobals() : undefined,
        ]);
        for (const name of missing) absent.add(name);
        refreshGlobals = false;
        const recent = this.recentItemsToLoad(keys).filter(needs);
        if (recent.length > 0) for (const name of await this.readInto(recent)) absent.add(name);
      } catch (error) {
        // Serving goes on from the cache; health() reports the store as degraded.
        this.markFailed(error);
        break;
      }
    }
    return this.cache.lookup(userId, candidates, context, into);
  }

  private async refreshGlobals(): Promise<void> {
    const bytes = await this.redis.getBuffer(this.keyOf('g'));
    if (bytes) decodeGlobals(this.cache, bytes);
    this.globalsLoadedAt = performance.now();
  }

  async checkpoint(): Promise<void> {
    if (this.role !== 'writer') return;
    await this.flush();
    if (this.failure !== undefined && this.pendingCount() >= this.maxPendingWrites) await this.flushUntilDurable();
  }

  positions(): readonly SourcePosition[] {
    return this.applied.list();
  }

  health(): FeatureStoreHealth {
    const degraded = this.failure !== undefined || this.redis.status !== 'ready';
    return {
      degraded,
      ...(degraded ? { reason: this.failure ?? `redis connection ${this.redis.status}` } : {}),
      pendingWrites: this.pendingCount(),
      newestEventTs: this.cache.newestEventTs,
    };
  }

  /** Records changed in memory and not yet in Redis. */
  pendingCount(): number {
    return this.pending.size + this.cache.users.dirtyCount + this.cache.items.dirtyCount + (this.cache.globalsDirty ? 1 : 0);
  }

  async close(): Promise<void> {
    if (this.role === 'writer' && !this.closed) await this.flush();
    this.closed = true;
    clearTimeout(this.flushTimer);
    if (this.ownsClient) this.redis.disconnect();
  }

  private saveEvicted(kind: EntityKind, slot: number): void {
    if (this.role !== 'writer') return;
    const entities = kind === 'user' ? this.cache.users : this.cache.items;
    const key = kind === 'user' ? entities.keyOf(slot) : low32(entities.keyOf(slot));
    const name = this.keyOf(kind, key);
    this.evictedDuringUpdate?.add(name);
    if (!entities.isDirty(slot)) return;
    this.pending.set(name, kind === 'user' ? encodeUser(this.cache, slot) : encodeItem(this.cache, slot));
  }

  private scheduleFlush(delayMs: number): void {
    if (this.flushTimer || this.closed) return;
    this.flushTimer = setTimeout(() => {
      this.flushTimer = undefined;
      this.flush().catch((error: unknown) => this.markFailed(error));
    }, delayMs);
  }

  /** Writes until nothing is pending, retrying while Redis is away. */
  private async flushUntilDurable(): Promise<void> {
    for (;;) {
      await this.flush();
      if (this.pendingCount() === 0 || this.closed) return;
      await sleep(100);
    }
  }

  /**
   * Writes every changed record and the positions they cover in one script, which Redis runs atomically (one
   * command carries them all, far cheaper than a MULTI of one SET each). The records are encoded in one synchronous
   * step, so they and the positions describe the same moment. On failure they stay pending for the next flush.
   */
  flush(): Promise<void> {
    this.flushing = this.flushing.then(async () => {
      clearTimeout(this.flushTimer);
      this.flushTimer = undefined;
      const pending = this.pending;
      this.pending = new Map();
      const { names, blob, ends } = this.encodeChanged(pending);
      const globals = this.cache.globalsDirty ? encodeGlobals(this.cache) : undefined;
      this.cache.globalsDirty = false;
      const positions = this.applied.list();
      if (names.length === 0 && !globals && positions.length === 0) return;
      this.writing = true;
      try {
        const offsets = positions.flatMap((p) => [`${p.topic}/${p.partition}`, String(p.offset)]);
        await this.redis.eval(
          CHECKPOINT_SCRIPT,
          names.length + 2,
          this.keyOf('offsets'),
          this.keyOf('g'),
          ...names,
          String(this.ttlMs),
          globals ? '1' : '0',
          globals ? Buffer.from(globals.buffer, globals.byteOffset, globals.byteLength) : '',
          String(positions.length),
          ...offsets,
          blob,
        );
        this.recordsWritten += names.length;
        if (this.redis.status === 'ready') this.failure = undefined;
        this.writing = false;
        if (this.pendingCount() > 0) this.scheduleFlush(this.flushIntervalMs);
      } catch (error) {
        this.writing = false;
        this.markFailed(error);
        // Records evicted while the write was in flight are newer than the ones put back. Slots changed meanwhile are
        // dirty again and are encoded afresh at the next flush, over these.
        names.forEach((name, n) => {
          if (!this.pending.has(name)) this.pending.set(name, blob.subarray((n === 0 ? 0 : ends[n - 1]!) + 4, ends[n]!));
        });
        if (globals) this.cache.globalsDirty = true;
      }
    });
    return this.flushing;
  }

  /**
   * Every dirty slot's record and the pending ones, as their Redis names and one buffer of length-prefixed records
   * (u32 little-endian length, then the record) in the same order: one allocation per flush, one argument for Redis.
   * A pending record whose slot is dirty again is left out for the newer one.
   */
  private encodeChanged(pending: Map<string, Uint8Array>): { names: string[]; blob: Buffer; ends: number[] } {
    const cache = this.cache;
    const users = cache.users.takeDirty();
    const items = cache.items.takeDirty();
    let size = users.length * (4 + userRecordMaxBytes(cache));
    for (const slot of items) size += 4 + itemRecordMaxBytes(cache, slot);
    for (const bytes of pending.values()) size += 4 + bytes.byteLength;
    const blob = Buffer.allocUnsafe(size);
    const names: string[] = [];
    const ends: number[] = [];
    let at = 0;
    const add = (name: string, end: number) => {
      blob.writeUInt32LE(end - at - 4, at);
      names.push(name);
      ends.push(end);
      at = end;
    };
    for (const slot of users) {
      const name = this.keyOf('user', cache.users.keyOf(slot));
      pending.delete(name);
      add(name, encodeUserInto(cache, slot, blob, at + 4));
    }
    for (const slot of items) {
      const name = this.keyOf('item', low32(cache.items.keyOf(slot)));
      pending.delete(name);
      add(name, encodeItemInto(cache, slot, blob, at + 4));
    }
    for (const [name, bytes] of pending) {
      blob.set(bytes, at + 4);
      add(name, at + 4 + bytes.byteLength);
    }
    return { names, blob: blob.subarray(0, at), ends };
  }
}

/**
 * KEYS: offsets hash, globals, then the records. ARGV: ttl ms, '1' if globals are written, the globals, the number
 * of positions, field/offset pairs, then the records, each a u32 little-endian length and the bytes, in KEYS order.
 */
const CHECKPOINT_SCRIPT = `
local ttl = ARGV[1]
if ARGV[2] == '1' then redis.call('SET', KEYS[2], ARGV[3]) end
local positions = tonumber(ARGV[4])
for j = 1, positions do redis.call('HSET', KEYS[1], ARGV[3 + 2 * j], ARGV[4 + 2 * j]) end
local records = ARGV[5 + 2 * positions]
local at = 1
for k = 3, #KEYS do
  local length = struct.unpack('<I4', records, at)
  redis.call('SET', KEYS[k], string.sub(records, at + 4, at + 3 + length), 'PX', ttl)
  at = at + 4 + length
end
return #KEYS - 2
`;

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
