import { mkdir, open, readFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import type { SourcePosition } from '../operators/batch.js';
import { FeatureCache, type LookupContext } from '../operators/features/cache.js';
import { decodeGlobals, decodeItem, decodeUser, encodeGlobals, encodeItem, encodeUser, layoutFingerprint } from '../operators/features/codec.js';
import type { FeatureConfig } from '../operators/features/config.js';
import type { FeatureRows } from '../operators/features/rows.js';
import type { InputEvent } from '../schema/events.js';
import { PositionMap, type FeatureStore, type FeatureStoreHealth } from './feature-store.js';

export interface MemoryFeatureStoreOptions {
  readonly features?: FeatureConfig;
  /** Directory for snapshots, so a restart keeps what was learned. Default none: state lives only in memory. */
  readonly snapshotDir?: string;
  /** Least time between two snapshots written by `checkpoint`; `close` always writes one. Default 30 s. */
  readonly snapshotIntervalMs?: number;
}

const MAGIC = 'EDDYFS01';
const SNAPSHOT_FILE = 'features.snapshot';

/**
 * The embedded default: the cache alone, with an optional snapshot of state and positions in a local directory. The
 * snapshot is written to a temporary file and renamed, so a crash leaves the previous one whole.
 */
export class MemoryFeatureStore implements FeatureStore {
  readonly kind = 'memory' as const;
  readonly cache: FeatureCache;
  readonly names: readonly string[];
  private readonly applied = new PositionMap();
  private lastSnapshotAt = -Infinity;

  constructor(private readonly options: MemoryFeatureStoreOptions = {}) {
    this.cache = new FeatureCache(options.features);
    this.names = this.cache.names;
  }

  async restore(): Promise<readonly SourcePosition[]> {
    if (!this.options.snapshotDir) return [];
    let bytes: Buffer;
    try {
      bytes = await readFile(join(this.options.snapshotDir, SNAPSHOT_FILE));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw new Error(`cannot read the feature snapshot in ${this.options.snapshotDir}`, { cause: error });
    }
    let positions: readonly SourcePosition[];
    try {
      positions = readSnapshot(this.cache, bytes);
    } catch (error) {
      throw new Error(`cannot restore the feature snapshot ${join(this.options.snapshotDir, SNAPSHOT_FILE)}`, { cause: error });
    }
    this.applied.advance(positions);
    return positions;
  }

  async update(events: readonly InputEvent[], positions: readonly SourcePosition[] = []): Promise<void> {
    this.updateSync(events, positions);
  }

  /** `update` without the promise, for in-process callers on a hot path. */
  updateSync(events: readonly InputEvent[], positions: readonly SourcePosition[] = []): void {
    for (const event of events) this.cache.update(event);
    this.applied.advance(positions);
  }

  async lookup(userId: string, candidates: readonly string[], context: LookupContext, into?: FeatureRows): Promise<FeatureRows> {
    return this.cache.lookup(userId, candidates, context, into);
  }

  async checkpoint(): Promise<void> {
    const interval = this.options.snapshotIntervalMs ?? 30_000;
    if (!this.options.snapshotDir || performance.now() - this.lastSnapshotAt < interval) return;
    await this.snapshot();
  }

  positions(): readonly SourcePosition[] {
    return this.applied.list();
  }

  /** Writes the snapshot now (when a directory is configured). */
  async snapshot(): Promise<void> {
    const dir = this.options.snapshotDir;
    if (!dir) return;
    this.lastSnapshotAt = performance.now();
    await mkdir(dir, { recursive: true });
    const target = join(dir, SNAPSHOT_FILE);
    const temporary = `${target}.${process.pid}.tmp`;
    const file = await open(temporary, 'w');
    try {
      for (const chunk of snapshotChunks(this.cache, this.applied.list())) await file.write(chunk);
      await file.sync();
    } catch (error) {
      throw new Error(`cannot write the feature snapshot ${temporary}`, { cause: error });
    } finally {
      await file.close();
    }
    await rename(temporary, target);
  }

  health(): FeatureStoreHealth {
    return { degraded: false, pendingWrites: 0, newestEventTs: this.cache.newestEventTs };
  }

  async close(): Promise<void> {
    await this.snapshot();
  }
}

/** Header, globals, then every user and item record, in chunks of about 1 MiB. */
function* snapshotChunks(cache: FeatureCache, positions: readonly SourcePosition[]): Generator<Uint8Array> {
  const header = Buffer.from(JSON.stringify({ fingerprint: layoutFingerprint(cache), users: cache.users.count, items: cache.items.count, positions }));
  const lead = Buffer.alloc(MAGIC.length + 4);
  lead.write(MAGIC, 0, 'latin1');
  lead.writeUInt32LE(header.byteLength, MAGIC.length);
  yield lead;
  yield header;
  yield sized(encodeGlobals(cache));
  let parts: Uint8Array[] = [];
  let size = 0;
  const keyed = (key: number, record: Uint8Array) => {
    const head = Buffer.alloc(8);
    head.writeDoubleLE(key, 0);
    parts.push(head, sized(record));
    size += 12 + record.byteLength;
  };
  for (let slot = 0; slot < cache.users.count; slot++) {
    keyed(cache.users.keyOf(slot), encodeUser(cache, slot));
    if (size > 1 << 20) {
      yield Buffer.concat(parts);
      parts = [];
      size = 0;
    }
  }
  for (let slot = 0; slot < cache.items.count; slot++) {
    keyed(cache.items.keyOf(slot), encodeItem(cache, slot));
    if (size > 1 << 20) {
      yield Buffer.concat(parts);
      parts = [];
      size = 0;
    }
  }
  if (parts.length > 0) yield Buffer.concat(parts);
}

function sized(record: Uint8Array): Uint8Array {
  const out = Buffer.alloc(4 + record.byteLength);
  out.writeUInt32LE(record.byteLength, 0);
  out.set(record, 4);
  return out;
}

function readSnapshot(cache: FeatureCache, bytes: Buffer): SourcePosition[] {
  if (bytes.toString('latin1', 0, MAGIC.length) !== MAGIC) throw new Error('feature snapshot: not an Eddy feature snapshot');
  const headerLength = bytes.readUInt32LE(MAGIC.length);
  let at = MAGIC.length + 4;
  const header = JSON.parse(bytes.toString('utf8', at, at + headerLength)) as {
    fingerprint: number;
    users: number;
    items: number;
    positions: SourcePosition[];
  };
  at += headerLength;
  if (header.fingerprint !== layoutFingerprint(cache)) {
    throw new Error('it was written under another feature config or record format (an older Eddy); remove it, or go back to that config');
  }
  const next = (): Uint8Array => {
    const length = bytes.readUInt32LE(at);
    const record = bytes.subarray(at + 4, at + 4 + length);
    at += 4 + length;
    return record;
  };
  decodeGlobals(cache, next());
  for (let i = 0; i < header.users + header.items; i++) {
    const key = bytes.readDoubleLE(at);
    at += 8;
    const record = next();
    const ok = i < header.users ? decodeUser(cache, key, record) : decodeItem(cache, record) !== undefined;
    if (!ok) throw new Error(`feature snapshot: record ${i} is damaged`);
  }
  return header.positions;
}
