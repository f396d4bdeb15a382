/**
 * One way to get each Log implementation for tests: the embedded log in memory, the embedded log across a message
 * port (as stream jobs on a thread of their own see it), or a Kafka client against a mock broker of its own, so the
 * same contract runs against all four.
 */
import { EmbeddedLog } from '../../connectors/embedded-log.js';
import { createConfluentLog } from '../../connectors/kafka/confluent-log.js';
import { KafkajsLog } from '../../connectors/kafka/kafkajs-log.js';
import type { Log, LogConsumer, LogRecord, RecordBatch, TopicPartition } from '../../connectors/log.js';
import { serveLog, ThreadLog } from '../../connectors/thread-log.js';
import { MessageChannel } from 'node:worker_threads';
import { MockBroker } from './broker.js';

export type LogKind = Log['kind'] | 'thread';
export const LOG_KINDS: readonly LogKind[] = ['embedded', 'thread', 'kafkajs', 'confluent'];
export const KAFKA_KINDS: readonly LogKind[] = ['kafkajs', 'confluent'];

export interface LogUnderTest {
  readonly log: Log;
  /** Absent for the embedded log. */
  readonly broker?: MockBroker;
  /** Creates a topic (the mock broker has no CreateTopics API, so its launcher does it). */
  topic(name: string, partitions: number): Promise<string>;
  close(): Promise<void>;
}

/** Fast group timings so rebalances in tests take seconds, not tens of seconds. */
export const TEST_TIMINGS = { sessionTimeoutMs: 6000, heartbeatIntervalMs: 300 } as const;

export async function kafkaLog(kind: LogKind, bootstrap: string): Promise<Log> {
  const connection = { brokers: bootstrap.split(','), clientId: `eddy-test-${kind}` };
  if (kind === 'kafkajs') return new KafkajsLog({ connection, ...TEST_TIMINGS });
  if (kind === 'confluent') return createConfluentLog({ connection, ...TEST_TIMINGS });
  throw new Error(`${kind} is not a Kafka client`);
}

export async function logUnderTest(kind: LogKind, topics: Readonly<Record<string, number>> = {}): Promise<LogUnderTest> {
  if (kind === 'embedded' || kind === 'thread') {
    const embedded = new EmbeddedLog();
    for (const [name, partitions] of Object.entries(topics)) await embedded.ensureTopic(name, { partitions });
    const channel = kind === 'thread' ? new MessageChannel() : undefined;
    const served = channel ? serveLog(embedded, channel.port1) : undefined;
    const log = channel ? new ThreadLog(channel.port2) : embedded;
    return {
      log,
      topic: async (name, partitions) => {
        await log.ensureTopic(name, { partitions });
        return name;
      },
      close: async () => {
        if (log !== embedded) await log.close();
        await served?.close();
        await embedded.close();
      },
    };
  }
  const broker = await MockBroker.start({ topics });
  const log = await kafkaLog(kind, broker.bootstrap);
  return {
    log,
    broker,
    topic: async (name, partitions) => {
      await broker.createTopic(name, partitions);
      return name;
    },
    close: async () => {
      await log.close();
      await broker.stop();
    },
  };
}

/** Reads until `predicate` holds over everything read, or fails after `timeoutMs`. */
export async function readUntil(
  consumer: LogConsumer,
  predicate: (records: readonly LogRecord[]) => boolean,
  timeoutMs = 20_000,
  onBatch?: (batch: RecordBatch) => void,
): Promise<LogRecord[]> {
  const records: LogRecord[] = [];
  const deadline = Date.now() + timeoutMs;
  while (!predicate(records)) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms with ${records.length} records read`);
    const batch = await consumer.next();
    if (batch === undefined) throw new Error('consumer closed while reading');
    if (batch === null) continue;
    onBatch?.(batch);
    records.push(...batch.records);
  }
  return records;
}

export async function waitFor(condition: () => boolean, timeoutMs = 20_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

export function byPartition(records: readonly LogRecord[]): Map<number, LogRecord[]> {
  const out = new Map<number, LogRecord[]>();
  for (const r of records) out.set(r.partition, [...(out.get(r.partition) ?? []), r]);
  return out;
}

export function tp(topic: string, partition: number): TopicPartition {
  return { topic, partition };
}
