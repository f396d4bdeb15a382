import type { Log } from '../../connectors/log.js';
import type { FeatureRows } from './rows.js';

/**
 * Point-in-time feature logging: the feature values a request was scored with, logged with its request id, so
 * training samples join labels to the features as they were when the items were served, never to later values.
 */
export interface ServedFeatures {
  readonly requestId: string;
  readonly userId: string;
  /** Lookup time (ms), the `ts` the rows were computed as of. */
  readonly ts: number;
  /** Feature names, in the order of every `values` array. */
  readonly names: readonly string[];
  readonly items: readonly { readonly itemId: string; readonly values: readonly number[] }[];
}

/** A plain array of a row's values; `Array.from` would walk the typed array through its iterator. */
function numbersOf(row: Float32Array): number[] {
  const out = new Array<number>(row.length);
  for (let i = 0; i < row.length; i++) out[i] = row[i]!;
  return out;
}

/**
 * An entry as serving makes one: the rows stay one float32 block, which is what the feature-log record carries, and
 * the per-item arrays of `items` are built only if something reads them. Serving logs every response, and those
 * arrays, built and dropped for each one, were most of what logging cost.
 */
class ServedBlock implements ServedFeatures {
  private rows: ServedFeatures['items'] | undefined;

  constructor(
    readonly requestId: string,
    readonly userId: string,
    readonly ts: number,
    readonly names: readonly string[],
    readonly itemIds: readonly string[],
    /** A row per item, in `itemIds` order. */
    readonly values: Float32Array,
  ) {}

  get items(): ServedFeatures['items'] {
    const width = this.names.length;
    this.rows ??= this.itemIds.map((itemId, i) => ({ itemId, values: numbersOf(this.values.subarray(i * width, (i + 1) * width)) }));
    return this.rows;
  }
}

/**
 * The entry of a request whose `candidates` were scored with `rows`, row i being candidate i's. The entry keeps
 * `rows`' values as they are, so the caller must not write into them afterwards.
 */
export function servedFeatures(requestId: string, userId: string, ts: number, candidates: readonly string[], rows: FeatureRows): ServedFeatures {
  return new ServedBlock(requestId, userId, ts, rows.names, candidates.slice(0, rows.count), rows.values.subarray(0, rows.count * rows.width));
}

/**
 * The record on the feature-log topic: the entry with its values as one block of float32 (little-endian, the byte
 * order of every platform Node runs on), row after row in `items` order, in base64. Served values are float32
 * already, so nothing is lost, and a consumer reads a request's hundreds of values without parsing and checking each
 * number of a JSON array.
 */
export interface ServedFeaturesRecord {
  readonly requestId: string;
  readonly userId: string;
  readonly ts: number;
  readonly names: readonly string[];
  readonly items: readonly string[];
  readonly values: string;
}

/** Names lists as JSON: a store's names are one list shared by every request it serves. */
const namesJson = new WeakMap<readonly string[], string>();

export function encodeServedFeatures(entry: ServedFeatures): string {
  let itemIds: readonly string[];
  let values: Float32Array;
  if (entry instanceof ServedBlock) {
    ({ itemIds, values } = entry);
  } else {
    const width = entry.names.length;
    itemIds = entry.items.map((item) => item.itemId);
    values = new Float32Array(entry.items.length * width);
    entry.items.forEach((item, i) => values.set(item.values, i * width));
  }
  let names = namesJson.get(entry.names);
  if (names === undefined) namesJson.set(entry.names, (names = JSON.stringify(entry.names)));
  const base64 = Buffer.from(values.buffer, values.byteOffset, values.byteLength).toString('base64');
  // The fields of a ServedFeaturesRecord, written out so the names' JSON is not made again for every request.
  return (
    `{"requestId":${JSON.stringify(entry.requestId)},"userId":${JSON.stringify(entry.userId)},"ts":${JSON.stringify(entry.ts)},` +
    `"names":${names},"items":${JSON.stringify(itemIds)},"values":"${base64}"}`
  );
}

/** The entry a feature-log record carries; throws an error naming the field when the values block does not fit. */
export function decodeServedFeatures(record: ServedFeaturesRecord): ServedFeatures {
  const width = record.names.length;
  const values = decodeServedBlock(record);
  return {
    requestId: record.requestId,
    userId: record.userId,
    ts: record.ts,
    names: record.names,
    items: record.items.map((itemId, i) => ({ itemId, values: numbersOf(values.subarray(i * width, (i + 1) * width)) })),
  };
}

/**
 * A record's values as one float32 block, a row per item in `items` order; throws, naming the field, when the block
 * does not fit the names and items or holds a value that is not finite.
 */
export function decodeServedBlock(record: ServedFeaturesRecord): Float32Array {
  const width = record.names.length;
  const expected = record.items.length * width * 4;
  // Decoded straight into the block's own memory: no intermediate buffer to copy from.
  const values = new Float32Array(Math.ceil((3 * record.values.length) / 16));
  const bytes = Buffer.from(values.buffer).write(record.values, 'base64');
  if (bytes !== expected) {
    throw new Error(`values: ${bytes} bytes for ${record.items.length} items of ${width} float32 features`);
  }
  const block = values.subarray(0, expected / 4);
  for (let i = 0; i < block.length; i++) {
    if (!Number.isFinite(block[i])) throw new Error(`values: ${record.names[i % width]} of ${record.items[Math.floor(i / width)]} is not finite`);
  }
  return block;
}

export interface FeatureLogSink {
  push(entry: ServedFeatures): void;
}

export interface TopicFeatureLogOptions {
  /** Default `feature-log`. */
  readonly topic?: string;
  /** Entries buffered before `push` flushes on its own. Default 256. */
  readonly maxBuffered?: number;
}

/** Appends served features to a log topic keyed by user, so they land with the user's events in partition terms. */
export class TopicFeatureLog implements FeatureLogSink {
  private buffered: ServedFeatures[] = [];
  private writing: Promise<void> = Promise.resolve();
  readonly topic: string;
  private readonly maxBuffered: number;

  constructor(
    private readonly log: Log,
    options: TopicFeatureLogOptions = {},
  ) {
    this.topic = options.topic ?? 'feature-log';
    this.maxBuffered = options.maxBuffered ?? 256;
  }

  push(entry: ServedFeatures): void {
    this.buffered.push(entry);
    if (this.buffered.length >= this.maxBuffered) void this.flush().catch(() => undefined);
  }

  /** Appends what is buffered; appends run in order. */
  flush(): Promise<void> {
    const entries = this.buffered;
    this.buffered = [];
    this.writing = this.writing.then(async () => {
      if (entries.length === 0) return;
      try {
        await this.log.append(this.topic, entries.map((e) => ({ key: e.userId, value: encodeServedFeatures(e) })));
      } catch (error) {
        throw new Error(`cannot append ${entries.length} served-feature entries to ${this.topic}`, { cause: error });
      }
    });
    return this.writing;
  }
}

/**
 * Served features by request and item, kept for `horizonMs` of lookup time, for a samples job to take the values
 * a label's impression was scored with. Entries leave in the order they came, once older than the horizon.
 */
export class ServedFeatureIndex implements FeatureLogSink {
  private readonly byRequest = new Map<string, ServedFeatures>();
  private newestTs = -Infinity;

  constructor(private readonly horizonMs: number) {}

  push(entry: ServedFeatures): void {
    this.byRequest.set(entry.requestId, entry);
    if (entry.ts > this.newestTs) this.newestTs = entry.ts;
    for (const [id, held] of this.byRequest) {
      if (held.ts >= this.newestTs - this.horizonMs) break;
      this.byRequest.delete(id);
    }
  }

  /** The values `itemId` was served with in `requestId`, or undefined. */
  get(requestId: string, itemId: string): { names: readonly string[]; values: readonly number[] } | undefined {
    const entry = this.byRequest.get(requestId);
    const item = entry?.items.find((i) => i.itemId === itemId);
    return entry && item ? { names: entry.names, values: item.values } : undefined;
  }

  get size(): number {
    return this.byRequest.size;
  }
}
