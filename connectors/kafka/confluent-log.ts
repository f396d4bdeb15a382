import type {
  Assignment,
  DeliveryReport,
  KafkaConsumer,
  LibrdKafkaError,
  Message,
  Metadata,
  Producer,
  TopicPartitionOffset,
} from '@confluentinc/kafka-javascript';
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
import { GroupConsumer } from './group-consumer.js';
import type { GroupTimings, KafkaConnection } from './kafkajs-log.js';

type ConfluentModule = typeof import('@confluentinc/kafka-javascript');

export interface ConfluentLogOptions extends GroupTimings {
  readonly connection: KafkaConnection;
  /** Told about commits a rebalance made the group refuse (the offsets stored with the state stay the truth). */
  readonly onWarning?: (message: string, error: unknown) => void;
  /** Extra librdkafka properties, applied last. */
  readonly librdkafka?: Readonly<Record<string, string | number | boolean>>;
}

/**
 * Loads the optional native client. Eddy runs without it; only choosing `KAFKA_CLIENT=confluent` needs it.
 */
export async function loadConfluent(): Promise<ConfluentModule> {
  try {
    const loaded = (await import('@confluentinc/kafka-javascript')) as ConfluentModule & { default?: ConfluentModule };
    return loaded.default ?? loaded;
  } catch (error) {
    throw new Error(
      'KAFKA_CLIENT=confluent needs the optional package @confluentinc/kafka-javascript; install it with ' +
        '`npm i -E @confluentinc/kafka-javascript@1.10.1` or choose KAFKA_CLIENT=kafkajs',
      { cause: error },
    );
  }
}

/** librdkafka properties for the connection settings. */
function connectionProperties(connection: KafkaConnection): Record<string, string | boolean> {
  const properties: Record<string, string | boolean> = {
    'bootstrap.servers': connection.brokers.join(','),
    'client.id': connection.clientId,
  };
  if (connection.sasl) properties['security.protocol'] = connection.tls ? 'sasl_ssl' : 'sasl_plaintext';
  else if (connection.tls) properties['security.protocol'] = 'ssl';
  if (connection.sasl) {
    properties['sasl.mechanisms'] = connection.sasl.mechanism.toUpperCase();
    properties['sasl.username'] = connection.sasl.username;
    properties['sasl.password'] = connection.sasl.password;
  }
  if (connection.tls) {
    if (connection.tls.ca) properties['ssl.ca.pem'] = connection.tls.ca;
    properties['enable.ssl.certificate.verification'] = connection.tls.rejectUnauthorized;
  }
  return properties;
}

function call<T>(fn: (cb: (err: LibrdKafkaError | null | undefined, value: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) => fn((err, value) => (err ? reject(err) : resolve(value))));
}

/** Codes meaning this member's generation is over: a rebalance has started or has already moved on. */
function isGenerationError(kafka: ConfluentModule, error: unknown): boolean {
  const codes = kafka.CODES.ERRORS;
  const code = (error as { code?: number } | undefined)?.code;
  return (
    code === codes.ERR_REBALANCE_IN_PROGRESS ||
    code === codes.ERR_ILLEGAL_GENERATION ||
    code === codes.ERR_UNKNOWN_MEMBER_ID ||
    code === codes.ERR__STATE
  );
}

export async function createConfluentLog(options: ConfluentLogOptions): Promise<ConfluentLog> {
  return new ConfluentLog(await loadConfluent(), options);
}

/** The Log seam over @confluentinc/kafka-javascript (librdkafka). */
export class ConfluentLog implements Log {
  readonly kind = 'confluent' as const;
  private producerReady: Promise<Producer> | undefined;
  private readonly partitionCounts = new Map<string, number>();
  private readonly consumers = new Set<ConfluentConsumer>();
  private readonly deliveries = new Map<number, (err: LibrdKafkaError | null, report: DeliveryReport) => void>();
  private nextDeliveryId = 0;

  constructor(
    readonly kafka: ConfluentModule,
    readonly options: ConfluentLogOptions,
  ) {}

  /** @internal */
  properties(): Record<string, string | number | boolean> {
    return { ...connectionProperties(this.options.connection), ...this.options.librdkafka };
  }

  private producer(): Promise<Producer> {
    this.producerReady ??= (async () => {
      const producer = new this.kafka.Producer({
        ...this.properties(),
        dr_cb: true,
        // Kafka's default partitioner, so keys land where the embedded log and the Java clients put them.
        partitioner: 'murmur2_random',
        'enable.idempotence': false,
        acks: -1,
        'linger.ms': 5,
        'queue.buffering.max.messages': 1_000_000,
      } as never);
      producer.on('delivery-report', (err, report) => {
        const id = report.opaque as number;
        const settle = this.deliveries.get(id);
        this.deliveries.delete(id);
        settle?.(err ?? null, report);
      });
      await call<unknown>((cb) => producer.connect({}, cb));
      producer.setPollInBackground(true);
      return producer;
    })();
    return this.producerReady;
  }

  private async metadata(): Promise<Metadata> {
    const producer = await this.producer();
    return call<Metadata>((cb) => producer.getMetadata({ timeout: 10_000 }, cb));
  }

  async ensureTopic(topic: string, config: TopicConfig): Promise<void> {
    const metadata = await this.metadata();
    if (metadata.topics.some((t) => t.name === topic && t.partitions.length > 0)) return;
    const admin = this.kafka.AdminClient.createFrom(await this.producer());
    try {
      await call<void>((cb) =>
        admin.createTopic(
          {
            topic,
            num_partitions: config.partitions,
            replication_factor: -1,
            ...(config.compacted ? { config: { 'cleanup.policy': 'compact' } } : {}),
          },
          10_000,
          (err) => cb(err, undefined),
        ),
      );
    } catch (error) {
      throw new Error(`cannot create topic ${topic}`, { cause: error });
    }
  }

  async partitionCount(topic: string): Promise<number> {
    const known = this.partitionCounts.get(topic);
    if (known !== undefined) return known;
    const count = (await this.metadata()).topics.find((t) => t.name === topic)?.partitions.length ?? 0;
    if (count === 0) throw new Error(`topic ${topic} does not exist`);
    this.partitionCounts.set(topic, count);
    return count;
  }

  async append(topic: string, records: readonly ProducerRecord[]): Promise<AppendResult[]> {
    if (records.length === 0) return [];
    const producer = await this.producer();
    const queueFull = this.kafka.CODES.ERRORS.ERR__QUEUE_FULL;
    const delivered: Promise<AppendResult>[] = [];
    for (const record of records) {
      const id = this.nextDeliveryId++;
      delivered.push(
        new Promise((resolve, reject) =>
          this.deliveries.set(id, (err, report) =>
            err
              ? reject(new Error(`append to ${topic} failed`, { cause: err }))
              : resolve({ topic, partition: report.partition, offset: report.offset }),
          ),
        ),
      );
      for (;;) {
        try {
          producer.produce(topic, record.partition ?? null, Buffer.from(valueText(record.value)), record.key ?? undefined, record.timestamp ?? null, id);
          break;
        } catch (error) {
          if ((error as { code?: number }).code !== queueFull) {
            this.deliveries.delete(id);
            throw new Error(`append to ${topic} failed`, { cause: error });
          }
          // The local queue is bounded; wait for deliveries to drain it.
          await new Promise((resolve) => setTimeout(resolve, 5));
        }
      }
    }
    return Promise.all(delivered);
  }

  async offsets(topic: string): Promise<{ partition: number; low: number; high: number }[]> {
    const producer = await this.producer();
    const count = await this.partitionCount(topic);
    return Promise.all(
      Array.from({ length: count }, async (_, partition) => {
        const w = await call<{ lowOffset: number; highOffset: number }>((cb) =>
          producer.queryWatermarkOffsets(topic, partition, 10_000, cb),
        );
        return { partition, low: w.lowOffset, high: w.highOffset };
      }),
    );
  }

  consumer(options: ConsumerOptions): LogConsumer {
    const consumer = new ConfluentConsumer(this, options, () => this.consumers.delete(consumer));
    this.consumers.add(consumer);
    return consumer;
  }

  /** @internal */
  isGenerationError(error: unknown): boolean {
    return isGenerationError(this.kafka, error);
  }

  async close(): Promise<void> {
    await Promise.all([...this.consumers].map((c) => c.close()));
    const ready = this.producerReady;
    this.producerReady = undefined;
    if (!ready) return;
    const producer = await ready;
    await call<void>((cb) => producer.flush(10_000, (err) => cb(err, undefined))).catch(() => undefined);
    producer.setPollInBackground(false);
    await call<unknown>((cb) => producer.disconnect(cb));
  }
}

/**
 * librdkafka's pull consumer. Its rebalance callback only reports: the partitions change hands when this consumer
 * calls `assign`/`unassign`, which it does after `onAssign`/`onRevoke` have resolved, so seeks made in `onAssign`
 * become the assignment's start offsets.
 */
class ConfluentConsumer extends GroupConsumer {
  private readonly consumer: KafkaConsumer;
  private readonly started: Promise<void>;
  private consuming: Promise<void> | undefined;
  private seeking: Promise<unknown> = Promise.resolve();
  /** Seeks made while `onAssign` runs, applied as the assignment's start offsets. */
  private startOffsets: Map<string, number> | undefined;
  private closing = false;
  private readonly lastCommitted = new Map<string, number>();

  constructor(
    private readonly log: ConfluentLog,
    options: ConsumerOptions,
    private readonly onClosed: () => void,
  ) {
    super(options);
    const codes = log.kafka.CODES.ERRORS;
    this.consumer = new log.kafka.KafkaConsumer(
      {
        ...log.properties(),
        'group.id': options.group,
        'enable.auto.commit': false,
        'enable.auto.offset.store': false,
        'partition.assignment.strategy': 'roundrobin',
        'session.timeout.ms': log.options.sessionTimeoutMs ?? 10_000,
        'heartbeat.interval.ms': log.options.heartbeatIntervalMs ?? 500,
        // librdkafka sends this as the JoinGroup rebalance timeout.
        'max.poll.interval.ms': Math.max(log.options.rebalanceTimeoutMs ?? 30_000, log.options.sessionTimeoutMs ?? 10_000),
        'fetch.wait.max.ms': 100,
        rebalance_cb: (err: LibrdKafkaError, assignment: Assignment[]) => {
          if (err.code === codes.ERR__ASSIGN_PARTITIONS) this.onAssigned(assignment);
          else if (err.code === codes.ERR__REVOKE_PARTITIONS) this.onRevoked();
          else this.failure ??= new Error(`consumer group ${options.group}: rebalance failed`, { cause: err });
        },
      } as never,
      { 'auto.offset.reset': options.fromBeginning === false ? 'latest' : 'earliest' },
    );
    (this.consumer as unknown as { setDefaultIsTimeoutOnlyForFirstMessage(on: boolean): void }).setDefaultIsTimeoutOnlyForFirstMessage(true);
    this.started = this.start().catch((error: unknown) => {
      this.failure ??= new Error(`confluent consumer ${options.group} could not start`, { cause: error });
      this.wake();
    });
  }

  private async start(): Promise<void> {
    await call<unknown>((cb) => this.consumer.connect({}, cb));
    this.consumer.subscribe([...this.options.topics]);
  }

  private onAssigned(assignment: Assignment[]): void {
    const startOffsets = new Map<string, number>();
    this.startOffsets = startOffsets;
    const partitions = assignment.map((a) => ({ topic: a.topic, partition: a.partition }));
    void this.assignAll(partitions, () => {
      this.startOffsets = undefined;
      if (this.closing) return;
      this.consumer.assign(
        partitions.map((p) => {
          const offset = startOffsets.get(partitionId(p));
          return offset === undefined ? p : { ...p, offset };
        }),
      );
    }).catch(() => undefined);
  }

  private onRevoked(): void {
    void this.revokeAll(() => {
      if (this.consumer.isConnected()) this.consumer.unassign();
    }).catch(() => undefined);
  }

  protected async poll(timeoutMs: number): Promise<void> {
    await this.started;
    if (this.failure || this.closed) return;
    if (this.consuming || this.deliverableCount() > 0) return this.waitForWake(timeoutMs);
    await this.seeking;
    this.consuming = new Promise<void>((resolve) => {
      this.consumer.setDefaultConsumeTimeout(Math.max(1, Math.min(Math.round(timeoutMs), 100)));
      this.consumer.consume(this.options.maxBatchRecords ?? DEFAULT_MAX_BATCH_RECORDS, (err, messages) => {
        this.consuming = undefined;
        if (err) {
          if (err.code !== this.log.kafka.CODES.ERRORS.ERR__TIMED_OUT) {
            this.failure ??= new Error(`confluent consumer ${this.group}: consume failed`, { cause: err });
          }
        } else this.buffered(messages);
        this.wake();
        resolve();
      });
    });
    await this.consuming;
  }

  /** One batch per partition, records in offset order. */
  private buffered(messages: Message[]): void {
    const byPartition = new Map<string, LogRecord[]>();
    for (const m of messages) {
      const id = `${m.topic}/${m.partition}`;
      let records = byPartition.get(id);
      if (!records) byPartition.set(id, (records = []));
      records.push({
        topic: m.topic,
        partition: m.partition,
        offset: m.offset,
        key: m.key === undefined || m.key === null ? null : m.key.toString(),
        value: m.value ? m.value.toString() : '',
        timestamp: m.timestamp ?? Date.now(),
      });
    }
    for (const records of byPartition.values()) {
      const first = records[0]!;
      let high = records[records.length - 1]!.offset + 1;
      try {
        high = Math.max(high, this.consumer.getWatermarkOffsets(first.topic, first.partition).highOffset);
      } catch {
        // No watermark cached yet: the batch's own end is the best known end.
      }
      this.enqueue({ batch: { topic: first.topic, partition: first.partition, records, highWatermark: high } });
    }
  }

  async commit(positions: readonly (TopicPartition & { offset: number })[]): Promise<void> {
    const forward = positions.filter((p) => (this.lastCommitted.get(partitionId(p)) ?? -1) < p.offset);
    if (forward.length === 0) return;
    await this.started;
    try {
      // commitCb (untyped in 1.10.1) commits on a worker thread and reports the broker's answer.
      const consumer = this.consumer as unknown as {
        commitCb(offsets: TopicPartitionOffset[], cb: (err: LibrdKafkaError | null) => void): void;
      };
      await call<void>((cb) =>
        consumer.commitCb(
          forward.map((p) => ({ topic: p.topic, partition: p.partition, offset: p.offset })),
          (err) => cb(err, undefined),
        ),
      );
    } catch (error) {
      if (!this.log.isGenerationError(error)) throw new Error(`commit for group ${this.group} failed`, { cause: error });
      this.log.options.onWarning?.(`group ${this.group} refused a commit during a rebalance`, error);
      return;
    }
    for (const p of forward) this.lastCommitted.set(partitionId(p), p.offset);
  }

  async committed(partitions: readonly TopicPartition[]): Promise<(number | undefined)[]> {
    await this.started;
    const offsets = await call<TopicPartitionOffset[]>((cb) =>
      this.consumer.committed(
        partitions.map((p) => ({ topic: p.topic, partition: p.partition })),
        10_000,
        cb,
      ),
    );
    return partitions.map((p) => {
      const offset = offsets.find((o) => o.topic === p.topic && o.partition === p.partition)?.offset;
      return offset !== undefined && offset >= 0 ? offset : undefined;
    });
  }

  protected seekClient(partition: TopicPartition, offset: number): void {
    this.dropBuffered([partition]);
    if (this.startOffsets) {
      this.startOffsets.set(partitionId(partition), offset);
      return;
    }
    const done = call<void>((cb) =>
      this.consumer.seek({ topic: partition.topic, partition: partition.partition, offset }, 5_000, (err) => cb(err, undefined)),
    ).catch((error: unknown) => {
      this.failure ??= new Error(`seek ${partitionId(partition)} to ${offset} failed`, { cause: error });
    });
    this.seeking = Promise.all([this.seeking, done]);
  }

  protected pauseClient(partitions: readonly TopicPartition[]): void {
    if (this.consumer.isConnected()) this.consumer.pause(partitions.map((p) => ({ topic: p.topic, partition: p.partition })));
  }

  protected resumeClient(partitions: readonly TopicPartition[]): void {
    if (this.consumer.isConnected()) this.consumer.resume(partitions.map((p) => ({ topic: p.topic, partition: p.partition })));
  }

  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    await this.started;
    await this.revokeAll(() => {
      if (this.consumer.isConnected()) this.consumer.unassign();
    }).catch(() => undefined);
    this.closed = true;
    this.wake();
    await this.consuming;
    await call<unknown>((cb) => this.consumer.disconnect(cb)).catch(() => undefined);
    this.onClosed();
  }
}
