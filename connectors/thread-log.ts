/**
 * The Log seam across a `MessagePort`, so stream jobs can run on a thread of their own against their process's log.
 * V8 gives each thread its own heap: the samples job's hundreds of megabytes of held impressions are then marked and
 * compacted on that thread, and a major collection of them no longer stops the thread that answers requests.
 *
 * `serveLog` answers on the log's side of the port; `ThreadLog` is the `Log` the other side uses. Requests and
 * answers are matched by id. Seek, pause and resume are sync in the seam, so they cross without an answer; a port
 * delivers in order, so they take effect before anything asked after them. A consumer's `onAssign` and `onRevoke`
 * run on the consumer's side, and the log waits for them as it would in one thread. Batches cross in columns (their
 * offsets and times as transferred typed arrays, their keys and values as arrays of strings): cloning thousands of
 * small record objects would cost the log's thread more than the records do.
 */
import type { MessagePort } from 'node:worker_threads';
import { valueText, type AppendResult, type ConsumerOptions, type Log, type LogConsumer, type LogRecord, type ProducerRecord, type RecordBatch, type TopicConfig, type TopicPartition } from './log.js';

type Position = TopicPartition & { offset: number };
type WireConsumerOptions = Omit<ConsumerOptions, 'onAssign' | 'onRevoke'> & { readonly assignHandler: boolean; readonly revokeHandler: boolean };

type Request =
  | { readonly op: 'ensureTopic'; readonly id: number; readonly topic: string; readonly config: TopicConfig }
  | { readonly op: 'partitionCount' | 'offsets'; readonly id: number; readonly topic: string }
  | { readonly op: 'append'; readonly id: number; readonly topic: string; readonly records: readonly TextRecord[] }
  | { readonly op: 'consumer'; readonly id: number; readonly consumer: number; readonly options: WireConsumerOptions }
  | { readonly op: 'next' | 'close'; readonly id: number; readonly consumer: number }
  | { readonly op: 'commit'; readonly id: number; readonly consumer: number; readonly positions: readonly Position[] }
  | { readonly op: 'committed'; readonly id: number; readonly consumer: number; readonly partitions: readonly TopicPartition[] }
  | { readonly op: 'seek'; readonly consumer: number; readonly partition: TopicPartition; readonly offset: number }
  | { readonly op: 'pause' | 'resume'; readonly consumer: number; readonly partitions: readonly TopicPartition[] }
  | { readonly op: 'rebalanced'; readonly id: number; readonly error?: WireError };

type Answer =
  | { readonly kind: 'answer'; readonly id: number; readonly value: unknown; readonly assignment?: readonly TopicPartition[] }
  | { readonly kind: 'failed'; readonly id: number; readonly error: WireError }
  | {
      readonly kind: 'rebalance';
      readonly id: number;
      readonly consumer: number;
      readonly event: 'assign' | 'revoke';
      readonly partitions: readonly TopicPartition[];
      readonly assignment: readonly TopicPartition[];
    };

export interface WireError {
  readonly name: string;
  readonly message: string;
  readonly stack?: string;
}

type TextRecord = ProducerRecord & { readonly value: string };

interface WireBatch extends TopicPartition {
  readonly highWatermark: number;
  readonly offsets: Float64Array;
  readonly timestamps: Float64Array;
  readonly keys: readonly (string | null)[];
  readonly values: readonly string[];
}

export function wireError(error: unknown): WireError {
  if (error instanceof Error) return { name: error.name, message: error.message, ...(error.stack ? { stack: error.stack } : {}) };
  return { name: 'Error', message: String(error) };
}

/** The error as the other thread raised it, named and with its stack, so a failure reads as if it were local. */
export function remoteError(wire: WireError): Error {
  const error = new Error(wire.message);
  error.name = wire.name;
  if (wire.stack) error.stack = wire.stack;
  return error;
}

function toWire(batch: RecordBatch): WireBatch {
  const n = batch.records.length;
  const offsets = new Float64Array(n);
  const timestamps = new Float64Array(n);
  const keys = new Array<string | null>(n);
  const values = new Array<string>(n);
  for (let i = 0; i < n; i++) {
    const record = batch.records[i]!;
    offsets[i] = record.offset;
    timestamps[i] = record.timestamp;
    keys[i] = record.key;
    values[i] = record.value;
  }
  return { topic: batch.topic, partition: batch.partition, highWatermark: batch.highWatermark, offsets, timestamps, keys, values };
}

function fromWire(wire: WireBatch): RecordBatch {
  const { topic, partition } = wire;
  const records = new Array<LogRecord>(wire.values.length);
  for (let i = 0; i < records.length; i++) {
    records[i] = { topic, partition, offset: wire.offsets[i]!, key: wire.keys[i]!, value: wire.values[i]!, timestamp: wire.timestamps[i]! };
  }
  return { topic, partition, records, highWatermark: wire.highWatermark };
}

export interface ServedLog {
  /** Closes the consumers the other side left open and the port; the log itself stays open. */
  close(): Promise<void>;
}

/** Answers a `ThreadLog` on the other end of `port` from `log`. */
export function serveLog(log: Log, port: MessagePort): ServedLog {
  const consumers = new Map<number, LogConsumer>();
  const rebalances = new Map<number, { resolve: () => void; reject: (error: Error) => void }>();
  let nextRebalance = 0;
  let closed = false;

  const rebalance = (consumer: number, event: 'assign' | 'revoke', partitions: readonly TopicPartition[]) =>
    new Promise<void>((resolve, reject) => {
      const id = nextRebalance++;
      rebalances.set(id, { resolve, reject });
      const assignment = consumers.get(consumer)?.assignment() ?? [];
      post({ kind: 'rebalance', id, consumer, event, partitions: [...partitions], assignment: [...assignment] });
    });

  const post = (answer: Answer, transfer: ArrayBuffer[] = []) => {
    if (!closed) port.postMessage(answer, transfer);
  };

  const consumerOf = (id: number): LogConsumer => {
    const consumer = consumers.get(id);
    if (!consumer) throw new Error(`no consumer ${id} on this log`);
    return consumer;
  };

  async function answer(request: Exclude<Request, { op: 'seek' | 'pause' | 'resume' | 'rebalanced' }>): Promise<void> {
    switch (request.op) {
      case 'ensureTopic':
        return post({ kind: 'answer', id: request.id, value: await log.ensureTopic(request.topic, request.config) });
      case 'partitionCount':
        return post({ kind: 'answer', id: request.id, value: await log.partitionCount(request.topic) });
      case 'offsets':
        return post({ kind: 'answer', id: request.id, value: await log.offsets(request.topic) });
      case 'append':
        return post({ kind: 'answer', id: request.id, value: await log.append(request.topic, request.records) });
      case 'consumer': {
        const { assignHandler, revokeHandler, ...options } = request.options;
        consumers.set(
          request.consumer,
          log.consumer({
            ...options,
            ...(assignHandler ? { onAssign: (partitions) => rebalance(request.consumer, 'assign', partitions) } : {}),
            ...(revokeHandler ? { onRevoke: (partitions) => rebalance(request.consumer, 'revoke', partitions) } : {}),
          }),
        );
        return post({ kind: 'answer', id: request.id, value: undefined });
      }
      case 'next': {
        const consumer = consumerOf(request.consumer);
        const batch = await consumer.next();
        const assignment = [...consumer.assignment()];
        if (!batch) return post({ kind: 'answer', id: request.id, value: batch, assignment });
        const wire = toWire(batch);
        return post({ kind: 'answer', id: request.id, value: wire, assignment }, [wire.offsets.buffer as ArrayBuffer, wire.timestamps.buffer as ArrayBuffer]);
      }
      case 'commit':
        return post({ kind: 'answer', id: request.id, value: await consumerOf(request.consumer).commit(request.positions) });
      case 'committed':
        return post({ kind: 'answer', id: request.id, value: await consumerOf(request.consumer).committed(request.partitions) });
      case 'close': {
        const consumer = consumers.get(request.consumer);
        consumers.delete(request.consumer);
        await consumer?.close();
        return post({ kind: 'answer', id: request.id, value: undefined });
      }
    }
  }

  port.on('message', (request: Request) => {
    switch (request.op) {
      case 'seek':
        return consumers.get(request.consumer)?.seek(request.partition, request.offset);
      case 'pause':
        return consumers.get(request.consumer)?.pause(request.partitions);
      case 'resume':
        return consumers.get(request.consumer)?.resume(request.partitions);
      case 'rebalanced': {
        const waiting = rebalances.get(request.id);
        rebalances.delete(request.id);
        if (request.error) waiting?.reject(remoteError(request.error));
        else waiting?.resolve();
        return;
      }
      default:
        answer(request).catch((error: unknown) => post({ kind: 'failed', id: request.id, error: wireError(error) }));
    }
  });

  return {
    async close() {
      const open = [...consumers.values()];
      consumers.clear();
      await Promise.all(open.map((consumer) => consumer.close()));
      for (const waiting of rebalances.values()) waiting.reject(new Error('the log thread closed during a rebalance'));
      rebalances.clear();
      closed = true;
      port.close();
    },
  };
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;
type Call = DistributiveOmit<Exclude<Request, { op: 'seek' | 'pause' | 'resume' | 'rebalanced' }>, 'id'>;

/** A `Log` whose every call is answered by `serveLog` on the other end of `port`. */
export class ThreadLog implements Log {
  private readonly pending = new Map<number, { resolve: (answer: Extract<Answer, { kind: 'answer' }>) => void; reject: (error: Error) => void }>();
  private readonly consumers = new Map<number, ThreadConsumer>();
  private nextId = 0;
  private nextConsumer = 0;
  /** Why calls fail from now on: this side was closed, or the other side went away. */
  private ended: Error | undefined;

  /** `kind` is that of the log on the other side, whose semantics this one has. */
  constructor(
    private readonly port: MessagePort,
    readonly kind: Log['kind'] = 'embedded',
  ) {
    port.on('message', (answer: Answer) => this.receive(answer));
    port.on('close', () => this.end(new Error('the log thread went away')));
  }

  /** Sends a request and resolves with its answer. */
  call(request: Call): Promise<Extract<Answer, { kind: 'answer' }>> {
    if (this.ended) return Promise.reject(this.ended);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.port.postMessage({ ...request, id });
    });
  }

  /** Sends what needs no answer. */
  send(request: Extract<Request, { op: 'seek' | 'pause' | 'resume' | 'rebalanced' }>): void {
    if (!this.ended) this.port.postMessage(request);
  }

  async ensureTopic(topic: string, config: TopicConfig): Promise<void> {
    await this.call({ op: 'ensureTopic', topic, config });
  }

  async partitionCount(topic: string): Promise<number> {
    return (await this.call({ op: 'partitionCount', topic })).value as number;
  }

  async append(topic: string, records: readonly ProducerRecord[]): Promise<AppendResult[]> {
    // A deferred value's object would cross as a copy no consumer there could share: the other thread gets text.
    const text = records.map((record): TextRecord => (typeof record.value === 'string' ? (record as TextRecord) : { ...record, value: valueText(record.value) }));
    return (await this.call({ op: 'append', topic, records: text })).value as AppendResult[];
  }

  async offsets(topic: string): Promise<{ partition: number; low: number; high: number }[]> {
    return (await this.call({ op: 'offsets', topic })).value as { partition: number; low: number; high: number }[];
  }

  consumer(options: ConsumerOptions): LogConsumer {
    const id = this.nextConsumer++;
    const { onAssign, onRevoke, ...rest } = options;
    const consumer = new ThreadConsumer(this, id, options);
    this.consumers.set(id, consumer);
    consumer.created = this.call({ op: 'consumer', consumer: id, options: { ...rest, assignHandler: onAssign !== undefined, revokeHandler: onRevoke !== undefined } }).then(() => undefined);
    consumer.created.catch(() => undefined);
    return consumer;
  }

  forget(consumer: number): void {
    this.consumers.delete(consumer);
  }

  /** Closes this side's consumers and the port; the log on the other side stays open. */
  async close(): Promise<void> {
    await Promise.all([...this.consumers.values()].map((consumer) => consumer.close()));
    this.end(new Error('the thread log is closed'));
    this.port.close();
  }

  private receive(answer: Answer): void {
    if (answer.kind === 'rebalance') {
      const consumer = this.consumers.get(answer.consumer);
      const done = consumer ? consumer.rebalance(answer.event, answer.partitions, answer.assignment) : Promise.resolve();
      done.then(
        () => this.send({ op: 'rebalanced', id: answer.id }),
        (error: unknown) => this.send({ op: 'rebalanced', id: answer.id, error: wireError(error) }),
      );
      return;
    }
    const waiting = this.pending.get(answer.id);
    this.pending.delete(answer.id);
    if (answer.kind === 'failed') waiting?.reject(remoteError(answer.error));
    else waiting?.resolve(answer);
  }

  private end(reason: Error): void {
    this.ended ??= reason;
    for (const waiting of this.pending.values()) waiting.reject(this.ended);
    this.pending.clear();
  }
}

class ThreadConsumer implements LogConsumer {
  created: Promise<void> = Promise.resolve();
  private assigned: readonly TopicPartition[] = [];
  private closing: Promise<void> | undefined;

  constructor(
    private readonly log: ThreadLog,
    private readonly id: number,
    private readonly options: ConsumerOptions,
  ) {}

  get group(): string {
    return this.options.group;
  }

  async next(): Promise<RecordBatch | null | undefined> {
    if (this.closing) return undefined;
    await this.created;
    const answer = await this.log.call({ op: 'next', consumer: this.id });
    if (answer.assignment) this.assigned = answer.assignment;
    const batch = answer.value as WireBatch | null | undefined;
    return batch ? fromWire(batch) : batch;
  }

  async commit(positions: readonly Position[]): Promise<void> {
    await this.created;
    await this.log.call({ op: 'commit', consumer: this.id, positions: positions.map((p) => ({ topic: p.topic, partition: p.partition, offset: p.offset })) });
  }

  async committed(partitions: readonly TopicPartition[]): Promise<(number | undefined)[]> {
    await this.created;
    const answer = await this.log.call({ op: 'committed', consumer: this.id, partitions: partitions.map((p) => ({ topic: p.topic, partition: p.partition })) });
    return answer.value as (number | undefined)[];
  }

  seek(partition: TopicPartition, offset: number): void {
    this.log.send({ op: 'seek', consumer: this.id, partition: { topic: partition.topic, partition: partition.partition }, offset });
  }

  assignment(): readonly TopicPartition[] {
    return this.assigned;
  }

  pause(partitions: readonly TopicPartition[]): void {
    this.log.send({ op: 'pause', consumer: this.id, partitions: partitions.map((p) => ({ topic: p.topic, partition: p.partition })) });
  }

  resume(partitions: readonly TopicPartition[]): void {
    this.log.send({ op: 'resume', consumer: this.id, partitions: partitions.map((p) => ({ topic: p.topic, partition: p.partition })) });
  }

  /** Runs this side's handler for a rebalance the log has begun, with the assignment as the log sees it. */
  async rebalance(event: 'assign' | 'revoke', partitions: readonly TopicPartition[], assignment: readonly TopicPartition[]): Promise<void> {
    this.assigned = assignment;
    if (event === 'assign') await this.options.onAssign?.(partitions);
    else await this.options.onRevoke?.(partitions);
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      await this.created.catch(() => undefined);
      await this.log.call({ op: 'close', consumer: this.id }).catch(() => undefined);
      this.log.forget(this.id);
    })();
    return this.closing;
  }
}
