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

export function servedFeatures(requestId: string, userId: string, ts: number, candidates: readonly string[], rows: FeatureRows): ServedFeatures {
  return {
    requestId,
    userId,
    ts,
    names: rows.names,
    items: candidates.slice(0, rows.count).map((itemId, i) => ({ itemId, values: numbersOf(rows.row(i)) })),
  };
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

export function encodeServedFeatures(entry: ServedFeatures): string {
  const width = entry.names.length;
  const values = new Float32Array(entry.items.length * width);
  entry.items.forEach((item, i) => values.set(item.values, i * width));
  const record: ServedFeaturesRecord = {
    requestId: entry.requestId,
    userId: entry.userId,
    ts: entry.ts,
    names: entry.names,
    items: entry.items.map((item) => item.itemId),
    values: Buffer.from(values.buffer, values.byteOffset, values.byteLength).toString('base64'),
  };
  return JSON.stringify(record);
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
  const bytes = Buffer.from(record.values, 'base64');
  if (bytes.byteLength !== record.items.length * width * 4) {
    throw new Error(`values: ${bytes.byteLength} bytes for ${record.items.length} items of ${width} float32 features`);
  }
  const values = new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
  for (let i = 0; i < values.length; i++) {
    if (!Number.isFinite(values[i])) throw new Error(`values: ${record.names[i % width]} of ${record.items[Math.floor(i / width)]} is not finite`);
  }
  return values;
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
