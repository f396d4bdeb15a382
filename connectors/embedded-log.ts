import { partitionForKey } from './partitioner.js';
import {
  DEFAULT_MAX_BATCH_RECORDS,
  partitionId,
  RestoredPositions,
  type AppendResult,
  type ConsumerOptions,
  type DeferredValue,
  type Log,
  type LogConsumer,
  type LogRecord,
  type ProducerRecord,
  type RecordBatch,
  type TopicConfig,
  type TopicPartition,
} from './log.js';

/** Records a consumer group never read because retention removed them first. */
export interface ExpiredUnread {
  readonly group: string;
  readonly topic: string;
  readonly partition: number;
  /** The first offset the group had yet to read, and the oldest still kept. */
  readonly from: number;
  readonly to: number;
}

/** What Eddy reports of expired records: a loss to make visible, with the setting that governs it. */
export function expiredUnreadError(expired: ExpiredUnread): Error {
  const { group, from, to, topic, partition } = expired;
  return new Error(`${group} never read offsets ${from}-${to - 1} of ${topic}/${partition}: retention removed them first (EDDY_LOG_RETENTION_BYTES)`);
}

export interface EmbeddedLogOptions {
  /** Partitions of a topic created implicitly by its first append. Default 1. */
  readonly defaultPartitions?: number;
  /** Records kept per partition unless the topic says otherwise. Default 1,000,000. */
  readonly retentionRecords?: number;
  /**
   * Bytes of records kept per topic, shared evenly by its partitions (Kafka's `retention.bytes` is per partition):
   * keys and values, plus an estimate of each record's own objects. The oldest records go first; compacted topics
   * compact instead. Default 32 MiB. The records of a long-running process would otherwise fill the heap: the served
   * features of the demo's 20 requests a second reach a million records, 3 GB, in about nine hours. The log shares
   * its thread's heap, and at 1,500 requests a second its impressions and served features reach 128 MiB each in
   * half a minute. Over three minutes at that rate, serving's collections then paused it over 5 ms 342 times and p99
   * was 55 ms; with 16-32 MiB, about 30 times and 21-24 ms. 32 MiB is about 7 s of either topic at that rate, which
   * readers in the process stay well within.
   */
  readonly retentionBytes?: number;
  /** Called when a consumer finds that records it had yet to read were removed by retention. */
  readonly onExpiredUnread?: (expired: ExpiredUnread) => void;
}

export const DEFAULT_RETENTION_BYTES = 32 * 1024 * 1024;
/** What a record costs besides its key and value, estimated high: its columns, two string headers, a reader's copy. */
const RECORD_OVERHEAD_BYTES = 100;
const INITIAL_RECORDS = 64;

function sizeOf(key: string | null, value: string | DeferredValue): number {
  return RECORD_OVERHEAD_BYTES + (typeof value === 'string' ? value.length : value.estimatedLength) + (key?.length ?? 0);
}

/** A kept record as a consumer gets it: a deferred value is encoded on the first read of `value`, if ever. */
function recordOf(topic: string, partition: number, offset: number, key: string | null, value: string | DeferredValue, timestamp: number): LogRecord {
  if (typeof value === 'string') return { topic, partition, offset, key, value, timestamp };
  let text: string | undefined;
  return {
    topic,
    partition,
    offset,
    key,
    get value() {
      return (text ??= value.encode());
    },
    payload: value.payload,
    timestamp,
  };
}

/**
 * One partition: records in offset order, kept in columns (offsets and times in typed arrays, keys and values in
 * plain arrays) between `start` and `end`. A record object and its boxed time for each of up to a million records
 * kept were two million objects the collector marked on the event loop, for records every reader had already read.
 * `read` makes the record objects a consumer gets; they live as long as its batch. Offsets may have gaps once
 * compaction has run.
 */
class Partition {
  nextOffset = 0;
  /** `sizeOf` summed over the records kept. */
  bytes = 0;
  private offsets = new Float64Array(INITIAL_RECORDS);
  private timestamps = new Float64Array(INITIAL_RECORDS);
  private keys: (string | null)[] = new Array<string | null>(INITIAL_RECORDS).fill(null);
  private values: (string | DeferredValue)[] = new Array<string | DeferredValue>(INITIAL_RECORDS).fill('');
  private start = 0;
  private end = 0;
  /** A compacted partition compacts again past these, which grow with what compaction keeps: see `compact`. */
  private compactAtRecords: number;
  private compactAtBytes: number;

  constructor(
    readonly topic: string,
    readonly index: number,
    private readonly config: Required<TopicConfig>,
    private readonly retentionBytes: number,
  ) {
    this.compactAtRecords = config.retentionRecords * 1.25;
    this.compactAtBytes = retentionBytes * 1.25;
  }

  get compacted(): boolean {
    return this.config.compacted;
  }

  /** Records kept. */
  get count(): number {
    return this.end - this.start;
  }

  get lowOffset(): number {
    return this.end > this.start ? this.offsets[this.start]! : this.nextOffset;
  }

  append(record: ProducerRecord): number {
    const offset = this.nextOffset++;
    if (this.end === this.offsets.length) this.makeRoom();
    const at = this.end++;
    this.offsets[at] = offset;
    this.timestamps[at] = record.timestamp ?? Date.now();
    this.keys[at] = record.key;
    this.values[at] = record.value;
    this.bytes += sizeOf(record.key, record.value);
    // Trimming in steps of a quarter keeps appends amortised O(1) while the bounds hold within 25%.
    if (this.config.compacted) {
      if (this.count > this.compactAtRecords || this.bytes > this.compactAtBytes) this.compact();
    } else if (this.count > this.config.retentionRecords * 1.25 || this.bytes > this.retentionBytes * 1.25) this.enforceRetention();
    return offset;
  }

  /** Moves the kept records to the front when at least half the columns lie before them, else doubles the columns. */
  private makeRoom(): void {
    const kept = this.count;
    const capacity = kept * 2 <= this.offsets.length ? this.offsets.length : this.offsets.length * 2;
    const moved = (column: Float64Array<ArrayBuffer>): Float64Array<ArrayBuffer> => {
      if (capacity === column.length) return column.copyWithin(0, this.start, this.end);
      const next = new Float64Array(capacity);
      next.set(column.subarray(this.start, this.end));
      return next;
    };
    this.offsets = moved(this.offsets);
    this.timestamps = moved(this.timestamps);
    // Allocated at their new length at once: grown push by push, they would reallocate as they go.
    const keys = new Array<string | null>(capacity).fill(null);
    const values = new Array<string | DeferredValue>(capacity).fill('');
    for (let i = 0; i < kept; i++) {
      keys[i] = this.keys[this.start + i]!;
      values[i] = this.values[this.start + i]!;
    }
    this.keys = keys;
    this.values = values;
    this.start = 0;
    this.end = kept;
  }

  /**
   * Keeps the newest record of each key (records without one count as one key), as Kafka's compaction does, and no
   * fewer: a compacted topic holds state (the catalogue, model versions), and retention by size or count would drop
   * the newest value of its oldest keys. When what is kept still exceeds the retention, the next compaction waits
   * until the partition has grown by a quarter again, so appends stay amortised O(1).
   */
  private compact(): void {
    const newestOffsetByKey = new Map<string | null, number>();
    for (let i = this.start; i < this.end; i++) newestOffsetByKey.set(this.keys[i]!, this.offsets[i]!);
    let kept = this.start;
    this.bytes = 0;
    for (let i = this.start; i < this.end; i++) {
      const key = this.keys[i]!;
      if (newestOffsetByKey.get(key) !== this.offsets[i]) continue;
      this.offsets[kept] = this.offsets[i]!;
      this.timestamps[kept] = this.timestamps[i]!;
      this.keys[kept] = key;
      this.values[kept] = this.values[i]!;
      this.bytes += sizeOf(key, this.values[i]!);
      kept++;
    }
    this.forget(kept, this.end);
    this.end = kept;
    this.compactAtRecords = Math.max(this.config.retentionRecords, this.count) * 1.25;
    this.compactAtBytes = Math.max(this.retentionBytes, this.bytes) * 1.25;
  }

  private enforceRetention(): void {
    let cut = this.start + Math.max(0, this.count - this.config.retentionRecords);
    for (let i = this.start; i < cut; i++) this.bytes -= sizeOf(this.keys[i]!, this.values[i]!);
    while (cut < this.end && this.bytes > this.retentionBytes) this.bytes -= sizeOf(this.keys[cut]!, this.values[cut++]!);
    this.forget(this.start, cut);
    this.start = cut;
  }

  /** Lets the strings of the records in [from, to) go. */
  private forget(from: number, to: number): void {
    for (let i = from; i < to; i++) {
      this.keys[i] = null;
      this.values[i] = '';
    }
  }

  /** Records from `offset` on (or from the oldest kept, if `offset` has been trimmed), at most `max`. */
  read(offset: number, max: number): LogRecord[] {
    let lo = this.start;
    let hi = this.end;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.offsets[mid]! < offset) lo = mid + 1;
      else hi = mid;
    }
    const to = Math.min(this.end, lo + max);
    const records: LogRecord[] = new Array(to - lo);
    for (let i = lo; i < to; i++) {
      records[i - lo] = recordOf(this.topic, this.index, this.offsets[i]!, this.keys[i]!, this.values[i]!, this.timestamps[i]!);
    }
    return records;
  }
}

class Topic {
  readonly partitions: Partition[];
  constructor(name: string, config: Required<TopicConfig>, retentionBytes: number) {
    this.partitions = Array.from({ length: config.partitions }, (_, i) => new Partition(name, i, config, retentionBytes / config.partitions));
  }
}

/** A consumer waiting for records: woken once `remaining` more have been appended to one of `topics` (any if unset). */
interface Waiter {
  readonly topics: ReadonlySet<string> | undefined;
  remaining: number;
  readonly wake: () => void;
}

class Group {
  readonly members: EmbeddedConsumer[] = [];
  readonly committed = new Map<string, number>();
  /** Rebalances run one at a time, in the order members join and leave. */
  rebalancing: Promise<void> = Promise.resolve();
}

/**
 * An in-memory, in-process log with Kafka's semantics: partitioned topics, the default partitioner, offsets,
 * consumer groups with committed offsets and eager rebalancing, pause and resume, and a retention bound.
 */
export class EmbeddedLog implements Log {
  readonly kind = 'embedded' as const;
  private readonly topics = new Map<string, Topic>();
  private readonly groups = new Map<string, Group>();
  private readonly waiters = new Set<Waiter>();
  private readonly defaultPartitions: number;
  private readonly retentionRecords: number;
  private readonly retentionBytes: number;
  /** @internal */
  readonly onExpiredUnread: ((expired: ExpiredUnread) => void) | undefined;

  constructor(options: EmbeddedLogOptions = {}) {
    this.defaultPartitions = options.defaultPartitions ?? 1;
    this.retentionRecords = options.retentionRecords ?? 1_000_000;
    this.retentionBytes = options.retentionBytes ?? DEFAULT_RETENTION_BYTES;
    this.onExpiredUnread = options.onExpiredUnread;
  }

  async ensureTopic(topic: string, config: TopicConfig): Promise<void> {
    this.topicOrCreate(topic, config);
  }

  async partitionCount(topic: string): Promise<number> {
    return this.topicOrCreate(topic).partitions.length;
  }

  async append(topic: string, records: readonly ProducerRecord[]): Promise<AppendResult[]> {
    return this.appendSync(topic, records);
  }

  /** Synchronous append, for in-process callers on a hot path. */
  appendSync(topic: string, records: readonly ProducerRecord[]): AppendResult[] {
    const t = this.topicOrCreate(topic);
    const count = t.partitions.length;
    const results: AppendResult[] = new Array(records.length);
    for (let i = 0; i < records.length; i++) {
      const record = records[i]!;
      const partition =
        record.partition ?? (record.key === null ? Math.floor(Math.random() * count) : partitionForKey(record.key, count));
      if (partition < 0 || partition >= count) {
        throw new RangeError(`partition ${partition} does not exist in topic ${topic} (${count} partitions)`);
      }
      results[i] = { topic, partition, offset: t.partitions[partition]!.append(record) };
    }
    if (records.length > 0) this.wakeReaders(topic, records.length);
    return results;
  }

  /**
   * Continues a partition's offsets from `offset`: a fresh in-memory log restarted under state snapshotted with
   * positions must number new records after those positions, or they would be skipped as already applied.
   */
  continueFrom(positions: readonly (TopicPartition & { offset: number })[]): void {
    for (const p of positions) {
      const partition = this.partition(p);
      if (partition.count === 0 && partition.nextOffset < p.offset) partition.nextOffset = p.offset;
    }
  }

  async offsets(topic: string): Promise<{ partition: number; low: number; high: number }[]> {
    return this.topicOrCreate(topic).partitions.map((p) => ({ partition: p.index, low: p.lowOffset, high: p.nextOffset }));
  }

  consumer(options: ConsumerOptions): LogConsumer {
    const consumer = new EmbeddedConsumer(this, options);
    const group = this.group(options.group);
    group.members.push(consumer);
    this.rebalance(group);
    return consumer;
  }

  async close(): Promise<void> {
    await Promise.all([...this.groups.values()].flatMap((g) => g.members.map((m) => m.close())));
  }

  /** @internal */
  partition(tp: TopicPartition): Partition {
    const partition = this.topicOrCreate(tp.topic).partitions[tp.partition];
    if (!partition) throw new RangeError(`partition ${partitionId(tp)} does not exist`);
    return partition;
  }

  /** @internal */
  group(name: string): Group {
    let group = this.groups.get(name);
    if (!group) {
      group = new Group();
      this.groups.set(name, group);
    }
    return group;
  }

  /**
   * @internal Resolves after `timeoutMs`, or once `records` records (default 1) have been appended to `topics` (default
   * any topic). A consumer waits only for what it reads: every append in a serving process (impressions, served
   * features) would otherwise wake every idle or batching consumer of every topic to find nothing to do.
   */
  waitForAppend(timeoutMs: number, topics?: readonly string[], records = 1, onWaiting?: (wake: () => void) => void): Promise<void> {
    return new Promise((resolve) => {
      const waiter: Waiter = {
        topics: topics ? new Set(topics) : undefined,
        remaining: records,
        wake: () => {
          clearTimeout(timer);
          this.waiters.delete(waiter);
          resolve();
        },
      };
      const timer = setTimeout(waiter.wake, timeoutMs);
      this.waiters.add(waiter);
      onWaiting?.(waiter.wake);
    });
  }

  /** @internal */
  leave(consumer: EmbeddedConsumer): Promise<void> {
    const group = this.group(consumer.group);
    const index = group.members.indexOf(consumer);
    if (index >= 0) group.members.splice(index, 1);
    return this.rebalance(group);
  }

  private wakeReaders(topic: string, records: number): void {
    // Deleting the entry being visited, as `wake` does, is safe while iterating a Set.
    for (const waiter of this.waiters) {
      if (waiter.topics && !waiter.topics.has(topic)) continue;
      waiter.remaining -= records;
      if (waiter.remaining <= 0) waiter.wake();
    }
  }

  private topicOrCreate(name: string, config?: TopicConfig): Topic {
    let topic = this.topics.get(name);
    if (!topic) {
      topic = new Topic(
        name,
        {
          partitions: config?.partitions ?? this.defaultPartitions,
          retentionRecords: config?.retentionRecords ?? this.retentionRecords,
          compacted: config?.compacted ?? false,
        },
        this.retentionBytes,
      );
      this.topics.set(name, topic);
    }
    return topic;
  }

  /** Eager rebalance: every member gives up what it holds, then partitions are dealt round robin. */
  private rebalance(group: Group): Promise<void> {
    group.rebalancing = group.rebalancing.then(async () => {
      const members = [...group.members];
      await Promise.all(members.map((m) => m.revokeAll()));
      const byMember = new Map<EmbeddedConsumer, TopicPartition[]>(members.map((m) => [m, []]));
      const topics = [...new Set(members.flatMap((m) => m.topics))].sort();
      for (const topic of topics) {
        const subscribers = members.filter((m) => m.topics.includes(topic));
        const partitions = this.topicOrCreate(topic).partitions;
        partitions.forEach((p, i) => byMember.get(subscribers[i % subscribers.length]!)!.push({ topic, partition: p.index }));
      }
      await Promise.all(members.map((m) => m.assign(byMember.get(m)!)));
    });
    return group.rebalancing;
  }
}

class EmbeddedConsumer implements LogConsumer {
  readonly group: string;
  readonly topics: readonly string[];
  private assigned: TopicPartition[] = [];
  private readonly positions = new Map<string, number>();
  private readonly paused = new Set<string>();
  private cursor = 0;
  private readonly restored = new RestoredPositions();
  private closed = false;
  /** Set as `close` begins: from then on `next` answers undefined. */
  private closing = false;
  /** Ends the wait of a `next` waiting for records: `close` calls it, so that `next` answers at once. */
  private wakeWaiting: (() => void) | undefined;
  private ready: Promise<void>;
  /** True once a scan found nothing to read: the next records may wait to be batched (see `fetchMinRecords`). */
  private caughtUp = true;

  constructor(
    private readonly log: EmbeddedLog,
    private readonly options: ConsumerOptions,
  ) {
    this.group = options.group;
    this.topics = options.topics;
    this.ready = log.group(options.group).rebalancing;
  }

  async next(): Promise<RecordBatch | null | undefined> {
    const maxRecords = this.options.maxBatchRecords ?? DEFAULT_MAX_BATCH_RECORDS;
    const minRecords = this.options.fetchMinRecords ?? 1;
    const maxWaitMs = this.options.fetchMaxWaitMs ?? 0;
    const deadline = performance.now() + (this.options.pollTimeoutMs ?? 100);
    let lingerUntil: number | undefined;
    for (;;) {
      await this.log.group(this.group).rebalancing;
      if (this.closing) return undefined;
      if (this.caughtUp && minRecords > 1 && maxWaitMs > 0) {
        const ready = this.readyRecords(minRecords);
        if (ready > 0 && ready < minRecords) {
          lingerUntil ??= performance.now() + maxWaitMs;
          const wait = lingerUntil - performance.now();
          if (wait > 0) {
            await this.waitForRecords(wait, minRecords - ready);
            continue;
          }
        }
      }
      for (let tried = 0; tried < this.assigned.length; tried++) {
        const tp = this.assigned[this.cursor++ % this.assigned.length]!;
        const id = partitionId(tp);
        if (this.paused.has(id)) continue;
        const partition = this.log.partition(tp);
        const position = this.positions.get(id)!;
        if (position >= partition.nextOffset) continue;
        // Compaction leaves gaps by design; only below the oldest record kept were records removed unread.
        if (position < partition.lowOffset && !partition.compacted) {
          this.log.onExpiredUnread?.({ group: this.group, topic: tp.topic, partition: tp.partition, from: position, to: partition.lowOffset });
          this.positions.set(id, partition.lowOffset);
        }
        const records = partition.read(position, maxRecords);
        if (records.length === 0) continue;
        this.positions.set(id, records[records.length - 1]!.offset + 1);
        this.caughtUp = false;
        return { topic: tp.topic, partition: tp.partition, records, highWatermark: partition.nextOffset };
      }
      this.caughtUp = true;
      const remaining = deadline - performance.now();
      if (remaining <= 0) return null;
      await this.waitForRecords(remaining, 1);
    }
  }

  private async waitForRecords(timeoutMs: number, records: number): Promise<void> {
    await this.log.waitForAppend(timeoutMs, this.topics, records, (wake) => (this.wakeWaiting = wake));
    this.wakeWaiting = undefined;
  }

  /** Records ready to read from unpaused assigned partitions, counted up to `enough`. */
  private readyRecords(enough: number): number {
    let ready = 0;
    for (const tp of this.assigned) {
      const id = partitionId(tp);
      if (this.paused.has(id)) continue;
      ready += Math.max(0, this.log.partition(tp).nextOffset - this.positions.get(id)!);
      if (ready >= enough) break;
    }
    return ready;
  }

  async commit(positions: readonly (TopicPartition & { offset: number })[]): Promise<void> {
    const committed = this.log.group(this.group).committed;
    for (const p of positions) {
      const id = partitionId(p);
      if ((committed.get(id) ?? -1) < p.offset) committed.set(id, p.offset);
    }
  }

  async committed(partitions: readonly TopicPartition[]): Promise<(number | undefined)[]> {
    const committed = this.log.group(this.group).committed;
    return partitions.map((p) => committed.get(partitionId(p)));
  }

  seek(partition: TopicPartition, offset: number): void {
    this.positions.set(partitionId(partition), offset);
    this.restored.note(partition, offset);
  }

  assignment(): readonly TopicPartition[] {
    return this.assigned;
  }

  pause(partitions: readonly TopicPartition[]): void {
    for (const p of partitions) this.paused.add(partitionId(p));
  }

  resume(partitions: readonly TopicPartition[]): void {
    for (const p of partitions) this.paused.delete(partitionId(p));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closing = true;
    this.wakeWaiting?.();
    await this.ready;
    await this.log.group(this.group).rebalancing;
    await this.revokeAll();
    this.closed = true;
    await this.log.leave(this);
  }

  /** @internal */
  async revokeAll(): Promise<void> {
    if (this.assigned.length === 0) return;
    const revoked = this.assigned;
    await this.options.onRevoke?.(revoked);
    this.assigned = [];
    for (const tp of revoked) this.positions.delete(partitionId(tp));
  }

  /** @internal */
  async assign(partitions: TopicPartition[]): Promise<void> {
    if (this.closed) return;
    const committed = this.log.group(this.group).committed;
    for (const tp of partitions) {
      const partition = this.log.partition(tp);
      const start = committed.get(partitionId(tp)) ?? (this.options.fromBeginning === false ? partition.nextOffset : partition.lowOffset);
      this.positions.set(partitionId(tp), start);
    }
    this.assigned = partitions;
    this.cursor = 0;
    const { onAssign } = this.options;
    if (partitions.length === 0 || !onAssign) return;
    await this.commit(await this.restored.during(() => onAssign(partitions)));
  }
}
