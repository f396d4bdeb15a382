import {
  Kafka,
  logLevel,
  PartitionAssigners,
  type Admin,
  type Broker,
  type Consumer,
  type ConsumerRunConfig,
  type EachBatchPayload,
  type PartitionAssigner,
  type Producer,
  type SASLOptions,
} from 'kafkajs';
import {
  DEFAULT_MAX_BATCH_RECORDS,
  partitionId,
  valueText,
  type AppendResult,
  type ConsumerOptions,
  type Log,
  type LogConsumer,
  type LogRecord,
  type ProducerRecord,
  type TopicConfig,
  type TopicPartition,
} from '../log.js';
import { partitionForKey } from '../partitioner.js';
import type { KafkaConfig } from './config.js';
import { GroupConsumer } from './group-consumer.js';

/** Where the brokers are and how to reach them; the subset of `KafkaConfig` a client needs. */
export type KafkaConnection = Pick<KafkaConfig, 'brokers' | 'clientId' | 'sasl' | 'tls'>;

export interface GroupTimings {
  /** Default 10,000 ms. */
  readonly sessionTimeoutMs?: number;
  /** How soon a member notices a rebalance. Default 500 ms. */
  readonly heartbeatIntervalMs?: number;
  /** Default 30,000 ms. */
  readonly rebalanceTimeoutMs?: number;
}

export interface KafkajsLogOptions extends GroupTimings {
  readonly connection: KafkaConnection;
  /** Told about commits a rebalance made the group refuse (the offsets stored with the state stay the truth). */
  readonly onWarning?: (message: string, error: unknown) => void;
}

/** Errors meaning this member's generation is over: a rebalance has started or has already moved on. */
const GENERATION_ERRORS = new Set(['REBALANCE_IN_PROGRESS', 'ILLEGAL_GENERATION', 'UNKNOWN_MEMBER_ID', 'NOT_COORDINATOR_FOR_GROUP']);

/**
 * Shaped like kafkajs's protocol error UNKNOWN_MEMBER_ID, the one its join-and-sync retry answers by forgetting the
 * member id and joining the group again.
 */
class MemberUnknownError extends Error {
  readonly type = 'UNKNOWN_MEMBER_ID';
  readonly code = 25;
  readonly retriable = false;
}

/** Consecutive restarts of a crashed group member (without a successful join in between) before the consumer fails. */
const MAX_MEMBER_RESTARTS = 5;
/** First wait before restarting a crashed group member; doubles with each consecutive restart. */
const MEMBER_RESTART_BACKOFF_MS = 250;

export function isGenerationError(error: unknown): boolean {
  for (let e: unknown = error; e instanceof Error; e = (e as { cause?: unknown; originalError?: unknown }).originalError ?? e.cause) {
    if (GENERATION_ERRORS.has((e as { type?: string }).type ?? '')) return true;
  }
  return false;
}

function kafkajsSasl(connection: KafkaConnection): SASLOptions | undefined {
  const sasl = connection.sasl;
  if (!sasl) return undefined;
  return { mechanism: sasl.mechanism, username: sasl.username, password: sasl.password } as SASLOptions;
}

/** The Log seam over kafkajs (pure JavaScript). */
export class KafkajsLog implements Log {
  readonly kind = 'kafkajs' as const;
  readonly kafka: Kafka;
  private producerReady: Promise<Producer> | undefined;
  private adminReady: Promise<Admin> | undefined;
  private readonly partitionCounts = new Map<string, number>();
  private readonly consumers = new Set<KafkajsConsumer>();
  private closed = false;

  constructor(readonly options: KafkajsLogOptions) {
    const { connection } = options;
    const sasl = kafkajsSasl(connection);
    this.kafka = new Kafka({
      clientId: connection.clientId,
      brokers: [...connection.brokers],
      logLevel: logLevel.NOTHING,
      ...(connection.tls ? { ssl: { ...connection.tls } } : {}),
      ...(sasl ? { sasl } : {}),
    });
  }

  /** @internal */
  admin(): Promise<Admin> {
    this.assertOpen();
    const ready = (this.adminReady ??= (async () => {
      const admin = this.kafka.admin();
      await admin.connect();
      return admin;
    })());
    // A failed connect is not cached, so the next call tries again.
    ready.catch(() => {
      if (this.adminReady === ready) this.adminReady = undefined;
    });
    return ready;
  }

  private producer(): Promise<Producer> {
    this.assertOpen();
    const ready = (this.producerReady ??= (async () => {
      const producer = this.kafka.producer({ allowAutoTopicCreation: false, idempotent: false });
      await producer.connect();
      return producer;
    })());
    ready.catch(() => {
      if (this.producerReady === ready) this.producerReady = undefined;
    });
    return ready;
  }

  /** A closed log must not connect again: a client created after close would retry against brokers nobody stops. */
  private assertOpen(): void {
    if (this.closed) throw new Error('the kafkajs log is closed');
  }

  async ensureTopic(topic: string, config: TopicConfig): Promise<void> {
    const admin = await this.admin();
    if ((await admin.listTopics()).includes(topic)) return;
    try {
      await admin.createTopics({
        waitForLeaders: true,
        topics: [
          {
            topic,
            numPartitions: config.partitions,
            ...(config.compacted ? { configEntries: [{ name: 'cleanup.policy', value: 'compact' }] } : {}),
          },
        ],
      });
    } catch (error) {
      throw new Error(`cannot create topic ${topic}`, { cause: error });
    }
  }

  async partitionCount(topic: string): Promise<number> {
    const known = this.partitionCounts.get(topic);
    if (known !== undefined) return known;
    const admin = await this.admin();
    const metadata = await admin.fetchTopicMetadata({ topics: [topic] });
    const count = metadata.topics[0]?.partitions.length ?? 0;
    if (count === 0) throw new Error(`topic ${topic} does not exist`);
    this.partitionCounts.set(topic, count);
    return count;
  }

  async append(topic: string, records: readonly ProducerRecord[]): Promise<AppendResult[]> {
    if (records.length === 0) return [];
    const [producer, count] = await Promise.all([this.producer(), this.partitionCount(topic)]);
    const partitions = records.map((r) =>
      r.partition ?? (r.key === null ? Math.floor(Math.random() * count) : partitionForKey(r.key, count)),
    );
    const replies = await producer.send({
      topic,
      acks: -1,
      messages: records.map((r, i) => ({
        key: r.key,
        value: valueText(r.value),
        partition: partitions[i]!,
        ...(r.timestamp !== undefined ? { timestamp: String(r.timestamp) } : {}),
      })),
    });
    // Records of one partition travel in one batch, in order, so each gets the base offset plus its rank.
    const nextOffset = new Map(replies.map((r) => [r.partition, Number(r.baseOffset)]));
    return partitions.map((partition) => {
      const offset = nextOffset.get(partition);
      if (offset === undefined) throw new Error(`no produce reply for ${topic}/${partition}`);
      nextOffset.set(partition, offset + 1);
      return { topic, partition, offset };
    });
  }

  async offsets(topic: string): Promise<{ partition: number; low: number; high: number }[]> {
    const admin = await this.admin();
    const offsets = await admin.fetchTopicOffsets(topic);
    return offsets
      .map((o) => ({ partition: o.partition, low: Number(o.low), high: Number(o.high) }))
      .sort((a, b) => a.partition - b.partition);
  }

  consumer(options: ConsumerOptions): LogConsumer {
    this.assertOpen();
    const consumer = new KafkajsConsumer(this, options, () => this.consumers.delete(consumer));
    this.consumers.add(consumer);
    return consumer;
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.consumers].map((c) => c.close()));
    const producer = this.producerReady;
    const admin = this.adminReady;
    this.producerReady = undefined;
    this.adminReady = undefined;
    // A client whose connect failed has nothing to disconnect.
    await Promise.all([
      producer?.then((p) => p.disconnect(), () => undefined),
      admin?.then((a) => a.disconnect(), () => undefined),
    ]);
  }
}

/**
 * kafkajs pushes batches into `eachBatch` and has no rebalance listener. Each batch waits in `eachBatch` until
 * `next()` takes it, so the fetch loop holds at most one undelivered batch. Revoking is tied to the JoinGroup request
 * itself: the group coordinator's `joinGroup` is wrapped (through the cluster kafkajs hands to partition assigners) so
 * that this member rejoins only after `onRevoke` has resolved, and the group cannot move its partitions before that.
 *
 * kafkajs restarts its group member by itself only after retriable errors; any other error while joining or fetching
 * stops the member for good. This consumer then revokes everything and runs the member again, up to
 * `MAX_MEMBER_RESTARTS` times in a row, before `next()` reports the failure. (A SyncGroup refused with INVALID_REQUEST
 * does not get that far: `revokeBeforeJoin` turns it into a fresh join.)
 */
class KafkajsConsumer extends GroupConsumer {
  private readonly consumer: Consumer;
  /** Starting, then each restart of the group member; `close` waits for it to settle before disconnecting. */
  private lifecycle: Promise<void>;
  private closing = false;
  private restartsInARow = 0;
  private readonly lastCommitted = new Map<string, number>();
  /**
   * Whether the kafkajs member has joined and begun fetching. Until then (at the first join, and after a crash until
   * the member is running again) kafkajs drops a commit without a word.
   */
  private fetching = false;
  private crashes = 0;

  constructor(
    private readonly log: KafkajsLog,
    options: ConsumerOptions,
    private readonly onClosed: () => void,
  ) {
    super(options);
    const timings = log.options;
    this.consumer = log.kafka.consumer({
      groupId: options.group,
      sessionTimeout: timings.sessionTimeoutMs ?? 10_000,
      heartbeatInterval: timings.heartbeatIntervalMs ?? 500,
      rebalanceTimeout: timings.rebalanceTimeoutMs ?? 30_000,
      maxWaitTimeInMs: Math.min(options.pollTimeoutMs ?? 100, 500),
      allowAutoTopicCreation: false,
      partitionAssigners: [this.revokeBeforeJoin],
      // Once closing, kafkajs must not restart the member after a retriable crash: it would reconnect for ever.
      retry: { restartOnFailure: async () => !this.closing },
    });
    const { GROUP_JOIN, REBALANCING, CRASH, FETCH_START } = this.consumer.events;
    this.consumer.on(FETCH_START, () => {
      if (this.fetching) return;
      this.fetching = true;
      this.wake();
    });
    this.consumer.on(REBALANCING, () => void this.revokeAll().catch(() => undefined));
    this.consumer.on(GROUP_JOIN, ({ payload }) => {
      const partitions = Object.entries(payload.memberAssignment).flatMap(([topic, ps]) =>
        (ps ?? []).map((partition) => ({ topic, partition })),
      );
      this.restartsInARow = 0;
      if (this.assigned.length > 0) void this.revokeAll().catch(() => undefined);
      void this.assignAll(partitions).catch(() => undefined);
    });
    this.consumer.on(CRASH, ({ payload }) => {
      this.fetching = false;
      this.crashes++;
      // The member is gone from the group (kafkajs has disconnected it): its partitions are no longer this consumer's.
      void this.revokeAll().catch(() => undefined);
      if (!payload.restart && !this.closing) this.restartMember(payload.error);
      this.wake();
    });
    this.lifecycle = this.start().catch((error: unknown) => {
      this.failure ??= new Error(`kafkajs consumer ${options.group} could not start`, { cause: error });
      this.wake();
    });
  }

  private readonly runConfig: ConsumerRunConfig = {
    autoCommit: false,
    eachBatchAutoResolve: false,
    partitionsConsumedConcurrently: 1,
    eachBatch: (payload) => this.handOff(payload),
  };

  private async start(): Promise<void> {
    await this.consumer.connect();
    await this.consumer.subscribe({ topics: [...this.options.topics], fromBeginning: this.options.fromBeginning ?? true });
    await this.consumer.run(this.runConfig);
  }

  /** Runs the stopped kafkajs member again (it keeps its subscription), or fails the consumer after too many tries. */
  private restartMember(cause: unknown): void {
    if (this.restartsInARow >= MAX_MEMBER_RESTARTS) {
      this.failure ??= new Error(`kafkajs consumer ${this.group} stopped after ${this.restartsInARow} restarts`, { cause });
      return;
    }
    const backoffMs = MEMBER_RESTART_BACKOFF_MS * 2 ** this.restartsInARow;
    this.restartsInARow++;
    this.lifecycle = this.lifecycle.then(async () => {
      const until = performance.now() + backoffMs;
      while (!this.closing && performance.now() < until) await this.waitForWake(until - performance.now());
      if (this.closing) return;
      try {
        await this.consumer.connect();
        if (this.closing) return;
        await this.consumer.run(this.runConfig);
      } catch (error) {
        this.failure ??= new Error(`kafkajs consumer ${this.group} could not restart`, { cause: error });
        this.wake();
      }
    });
  }

  protected poll(timeoutMs: number): Promise<void> {
    return this.waitForWake(timeoutMs);
  }

  /**
   * Kafka's round robin assignment, plus the hooks that make every (re)join wait for the revoke and turn a SyncGroup
   * refused with INVALID_REQUEST into a fresh join. librdkafka's mock answers INVALID_REQUEST when the group has
   * emptied while this member was syncing (every member's session ran out, which happens on a loaded machine);
   * kafkajs takes that error as fatal and stops the member, where joining again as a new member is the way on.
   */
  private readonly revokeBeforeJoin: PartitionAssigner = (config) => {
    const { cluster } = config;
    const findCoordinator = cluster.findGroupCoordinator.bind(cluster);
    const wrapped = new WeakSet<Broker>();
    cluster.findGroupCoordinator = async (group) => {
      const coordinator = await findCoordinator(group);
      const member = coordinator as Broker & {
        joinGroup?: (request: unknown) => Promise<unknown>;
        syncGroup?: (request: unknown) => Promise<unknown>;
      };
      const join = member.joinGroup?.bind(coordinator);
      const sync = member.syncGroup?.bind(coordinator);
      if (join && sync && !wrapped.has(coordinator)) {
        wrapped.add(coordinator);
        member.joinGroup = async (request) => {
          await this.revokeAll().catch(() => undefined);
          return join(request);
        };
        member.syncGroup = async (request) => {
          try {
            return await sync(request);
          } catch (error) {
            if ((error as { type?: string }).type !== 'INVALID_REQUEST') throw error;
            throw new MemberUnknownError(`group ${this.group} refused the sync of this member`, { cause: error });
          }
        };
      }
      return coordinator;
    };
    return PartitionAssigners.roundRobin(config);
  };

  /** Hands the fetched batch over in chunks of at most `maxBatchRecords`, each once the previous was taken. */
  private async handOff(payload: EachBatchPayload): Promise<void> {
    const { batch } = payload;
    if (batch.isEmpty() || payload.isStale()) return;
    const { topic, partition } = batch;
    const records: LogRecord[] = batch.messages.map((m) => ({
      topic,
      partition,
      offset: Number(m.offset),
      key: m.key ? m.key.toString() : null,
      value: m.value ? m.value.toString() : '',
      timestamp: Number(m.timestamp),
    }));
    const chunk = this.options.maxBatchRecords ?? DEFAULT_MAX_BATCH_RECORDS;
    const id = partitionId(batch);
    for (let start = 0; start < records.length; start += chunk) {
      const part = records.slice(start, start + chunk);
      let outcome: boolean | undefined;
      this.enqueue({
        batch: { topic, partition, records: part, highWatermark: Number(batch.highWatermark) },
        isStale: () => payload.isStale(),
        settle: (delivered) => {
          outcome = delivered;
          this.wake();
        },
      });
      // A batch of a paused partition stays buffered while the fetch loop moves on to other partitions.
      while (outcome === undefined && !this.closing && !this.paused.has(id)) await this.waitForWake(1000);
      if (outcome === false || this.closing) return;
      payload.resolveOffset(String(part[part.length - 1]!.offset));
      if (outcome === undefined) return;
    }
  }

  async commit(positions: readonly (TopicPartition & { offset: number })[]): Promise<void> {
    const forward = positions.filter((p) => (this.lastCommitted.get(partitionId(p)) ?? -1) < p.offset);
    if (forward.length === 0) return;
    if (!this.fetching) {
      this.log.options.onWarning?.(`group ${this.group} could not take a commit: its member is not running`, undefined);
      return;
    }
    try {
      await this.consumer.commitOffsets(forward.map((p) => ({ topic: p.topic, partition: p.partition, offset: String(p.offset) })));
    } catch (error) {
      if (!isGenerationError(error)) throw new Error(`commit for group ${this.group} failed`, { cause: error });
      this.log.options.onWarning?.(`group ${this.group} refused a commit during a rebalance`, error);
      return;
    }
    for (const p of forward) this.lastCommitted.set(partitionId(p), p.offset);
  }

  /** At a member's first join, onAssign runs before kafkajs has begun fetching, when it would drop the commit. */
  protected override async commitRestored(positions: readonly (TopicPartition & { offset: number })[]): Promise<void> {
    const crashes = this.crashes;
    while (!this.fetching && !this.closing && this.crashes === crashes) await this.waitForWake(100);
    if (this.fetching) await this.commit(positions);
  }

  async committed(partitions: readonly TopicPartition[]): Promise<(number | undefined)[]> {
    const admin = await this.log.admin();
    const topics = [...new Set(partitions.map((p) => p.topic))];
    const offsets = await admin.fetchOffsets({ groupId: this.group, topics });
    return partitions.map((p) => {
      const raw = offsets.find((t) => t.topic === p.topic)?.partitions.find((o) => o.partition === p.partition)?.offset;
      const offset = raw === undefined ? -1 : Number(raw);
      return offset >= 0 ? offset : undefined;
    });
  }

  protected seekClient(partition: TopicPartition, offset: number): void {
    this.consumer.seek({ topic: partition.topic, partition: partition.partition, offset: String(offset) });
    this.dropBuffered([partition]);
  }

  protected pauseClient(partitions: readonly TopicPartition[]): void {
    this.consumer.pause(groupByTopic(partitions));
  }

  protected resumeClient(partitions: readonly TopicPartition[]): void {
    this.consumer.resume(groupByTopic(partitions));
  }

  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    this.wake();
    await this.lifecycle;
    await this.revokeAll().catch(() => undefined);
    this.closed = true;
    this.wake();
    await this.consumer.disconnect();
    this.onClosed();
  }
}

function groupByTopic(partitions: readonly TopicPartition[]): { topic: string; partitions: number[] }[] {
  const byTopic = new Map<string, number[]>();
  for (const p of partitions) byTopic.set(p.topic, [...(byTopic.get(p.topic) ?? []), p.partition]);
  return [...byTopic].map(([topic, ps]) => ({ topic, partitions: ps }));
}
