/**
 * The Log seam: topics, partitions, offsets and consumer groups. The embedded log implements it in memory; the Kafka
 * connectors implement it over kafkajs and the confluent client. Everything above this file sees only these types.
 */

/** Records in one consumer batch unless `ConsumerOptions.maxBatchRecords` says otherwise. */
export const DEFAULT_MAX_BATCH_RECORDS = 4096;

export interface TopicPartition {
  readonly topic: string;
  readonly partition: number;
}

export interface LogRecord extends TopicPartition {
  readonly offset: number;
  readonly key: string | null;
  /** The payload as the producer wrote it: JSON text for every Eddy topic. */
  readonly value: string;
  /**
   * The producer's object, when it deferred the value's encoding (`DeferredValue`) and this log hands records within
   * one thread. Reading it instead of parsing `value` saves the text round trip; consumers must not change it.
   */
  readonly payload?: unknown;
  /** Append time in ms since the epoch (not the event's own time, which lives in the payload). */
  readonly timestamp: number;
}

/**
 * A value whose encoding waits until something needs the text. The embedded log keeps the object and encodes it only
 * when a consumer reads `LogRecord.value`, so a consumer in the producer's thread can take `LogRecord.payload` as it
 * is; logs that cross a thread or a network encode at append.
 */
export interface DeferredValue {
  readonly payload: unknown;
  encode(): string;
  /** About what `encode()` returns, in characters, for retention by bytes without encoding. */
  readonly estimatedLength: number;
}

/** A JSON value whose text is written only when read. */
export class DeferredJson implements DeferredValue {
  constructor(
    readonly payload: unknown,
    readonly estimatedLength: number,
  ) {}

  encode(): string {
    return JSON.stringify(this.payload);
  }
}

export interface ProducerRecord {
  readonly key: string | null;
  readonly value: string | DeferredValue;
  /** Overrides the partitioner. */
  readonly partition?: number;
  readonly timestamp?: number;
}

export interface AppendResult extends TopicPartition {
  readonly offset: number;
}

/** Records of one topic partition, in offset order. */
export interface RecordBatch extends TopicPartition {
  readonly records: readonly LogRecord[];
  /** The partition's end offset when the batch was read, for lag. */
  readonly highWatermark: number;
}

export interface TopicConfig {
  readonly partitions: number;
  /** Records kept per partition before the oldest are dropped. */
  readonly retentionRecords?: number;
  /**
   * Past its retention, keep the newest record of each key rather than drop the oldest records, as Kafka's compaction
   * does: the topic holds state (the catalogue, model versions), and retention never drops a key's newest value.
   */
  readonly compacted?: boolean;
}

export interface ConsumerOptions {
  readonly group: string;
  readonly topics: readonly string[];
  /** Where a partition starts when the group has no committed offset for it. Default `earliest`. */
  readonly fromBeginning?: boolean;
  /** Most records in one batch. Default `DEFAULT_MAX_BATCH_RECORDS` (4096). */
  readonly maxBatchRecords?: number;
  /** How long `next()` waits for data before it resolves with an empty poll (`null`). Default 100 ms. */
  readonly pollTimeoutMs?: number;
  /**
   * Batching for consumers that favour throughput over latency, as Kafka's `fetch.min.bytes` and
   * `fetch.wait.max.ms` do, counted in records: once the consumer has read everything, it waits for this many records
   * to be ready, or for `fetchMaxWaitMs` after the first of them, before it returns a batch again. Default 1: return
   * as soon as anything is ready. Honoured by the embedded log; Kafka clients batch by their own fetch settings.
   */
  readonly fetchMinRecords?: number;
  /** See `fetchMinRecords`. Default 0. */
  readonly fetchMaxWaitMs?: number;
  /** Called, and awaited, before partitions are taken away: finish in-flight work, flush state, commit. */
  readonly onRevoke?: (partitions: readonly TopicPartition[]) => Promise<void> | void;
  /**
   * Called, and awaited, after partitions are given: restore state and `seek` to the offsets stored with it. Those
   * offsets are then committed for the group, so its offsets catch up with the state's after a commit the group
   * refused during a rebalance.
   */
  readonly onAssign?: (partitions: readonly TopicPartition[]) => Promise<void> | void;
}

export interface LogConsumer {
  readonly group: string;
  /**
   * The next batch from one assigned partition. Resolves `null` after a poll timeout with no data, and `undefined`
   * once the consumer is closed. Reading does not commit.
   */
  next(): Promise<RecordBatch | null | undefined>;
  /** Commit the next offsets to read; a commit never moves an offset backwards. */
  commit(positions: readonly (TopicPartition & { offset: number })[]): Promise<void>;
  /** The group's committed next offset per partition, or undefined where none is committed. */
  committed(partitions: readonly TopicPartition[]): Promise<(number | undefined)[]>;
  /** Read this partition from `offset` on, whatever the group committed. */
  seek(partition: TopicPartition, offset: number): void;
  assignment(): readonly TopicPartition[];
  /** Stop fetching from a partition (backpressure) until resumed. */
  pause(partitions: readonly TopicPartition[]): void;
  resume(partitions: readonly TopicPartition[]): void;
  close(): Promise<void>;
}

export interface Log {
  readonly kind: 'embedded' | 'kafkajs' | 'confluent';
  /** Creates the topic if it does not exist; an existing topic keeps its partitions. */
  ensureTopic(topic: string, config: TopicConfig): Promise<void>;
  partitionCount(topic: string): Promise<number>;
  /** Appends in order, choosing partitions by key as Kafka's default partitioner does. */
  append(topic: string, records: readonly ProducerRecord[]): Promise<AppendResult[]>;
  /** Lowest and next offset per partition. */
  offsets(topic: string): Promise<{ partition: number; low: number; high: number }[]>;
  consumer(options: ConsumerOptions): LogConsumer;
  close(): Promise<void>;
}

/** The text of a producer's value, encoding a deferred one. */
export function valueText(value: string | DeferredValue): string {
  return typeof value === 'string' ? value : value.encode();
}

export function partitionId(tp: TopicPartition): string {
  return `${tp.topic}/${tp.partition}`;
}

/**
 * The positions a consumer's `onAssign` seeks to: those its restored state covers, which the consumer then commits
 * for the group (see `ConsumerOptions.onAssign`). Seeks made at any other time are not noted.
 */
export class RestoredPositions {
  private noting: Map<string, TopicPartition & { offset: number }> | undefined;

  note(partition: TopicPartition, offset: number): void {
    this.noting?.set(partitionId(partition), { topic: partition.topic, partition: partition.partition, offset });
  }

  /** Runs `onAssign` and returns the positions it sought to, the last per partition. */
  async during(onAssign: () => Promise<void> | void): Promise<(TopicPartition & { offset: number })[]> {
    const noted = new Map<string, TopicPartition & { offset: number }>();
    this.noting = noted;
    try {
      await onAssign();
    } finally {
      this.noting = undefined;
    }
    return [...noted.values()];
  }
}
