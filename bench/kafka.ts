/**
 * `npm run bench -- kafka --json [--events=100000] [--partitions=4]`: N behaviour events on a topic of librdkafka's
 * mock cluster, consumed through a pipeline (parse + keyed count) over each client, and the same topic read raw by
 * kcat in the same run. Rates run from the first record read to the last, so group joins and process start-up are
 * left out for all three. ratio = the faster client / kcat.
 */
import { spawn } from 'node:child_process';
import { concatMap } from 'rxjs';
import type { LogKind } from '../connectors/kafka/config.js';
import type { Log, LogRecord } from '../connectors/log.js';
import { withItems } from '../operators/batch.js';
import { DeadLetterBuffer, parseRecords } from '../operators/dead-letters.js';
import { defineOperator } from '../operators/operator.js';
import { Pipeline } from '../operators/pipeline.js';
import { PipelineRunner } from '../operators/runtime.js';
import { parseBehaviourEvent, type BehaviourEvent } from '../schema/events.js';
import { MockBroker } from '../test/kafka/broker.js';
import { kafkaLog } from '../test/kafka/harness.js';

const TOPIC = 'bench-events';

async function produce(log: Log, events: number, report: (line: string) => void): Promise<void> {
  const chunk = 10_000;
  for (let start = 0; start < events; start += chunk) {
    const records = Array.from({ length: Math.min(chunk, events - start) }, (_, j) => {
      const i = start + j;
      const userId = `user-${(i * 7919) % 5000}`;
      return {
        key: userId,
        value: JSON.stringify({ id: `e${i}`, type: 'view', userId, itemId: `item-${i % 1000}`, ts: 1_700_000_000_000 + i }),
      };
    });
    await log.append(TOPIC, records);
  }
  report(`produced ${events} events`);
}

/** Events per second through parse + a keyed count over one client, first record to last. */
async function throughPipeline(kind: LogKind, bootstrap: string, events: number): Promise<number> {
  const log = await kafkaLog(kind, bootstrap);
  const counts = new Map<string, number>();
  const deadLetters = new DeadLetterBuffer();
  let seen = 0;
  let firstAt = 0;
  let lastAt = 0;
  let finish!: () => void;
  const finished = new Promise<void>((resolve) => (finish = resolve));
  const keyedCount = defineOperator<BehaviourEvent, never>({ name: 'count-per-user', kind: 'aggregate' }, (source$) =>
    source$.pipe(
      concatMap(async (batch) => {
        for (const e of batch.items) counts.set(e.userId, (counts.get(e.userId) ?? 0) + 1);
        return withItems(batch, []);
      }),
    ),
  );
  const countRecords = defineOperator<LogRecord, LogRecord>({ name: 'meter', kind: 'meter' }, (source$) =>
    source$.pipe(
      concatMap(async (batch) => {
        if (firstAt === 0) firstAt = performance.now();
        seen += batch.items.length;
        if (seen >= events && lastAt === 0) {
          lastAt = performance.now();
          queueMicrotask(finish);
        }
        return batch;
      }),
    ),
  );
  const pipeline = Pipeline.from<LogRecord>(`bench-${kind}`)
    .pipe(countRecords)
    .pipe(parseRecords(parseBehaviourEvent, deadLetters))
    .pipe(keyedCount);
  const runner = new PipelineRunner(pipeline, {
    log,
    group: `bench-${kind}`,
    topics: [TOPIC],
    commitIntervalMs: 1000,
    maxInFlight: 4,
  }).start();
  await Promise.race([finished, runner.done]);
  await runner.stop();
  await log.close();
  const total = [...counts.values()].reduce((a, b) => a + b, 0);
  if (total + deadLetters.total !== events) throw new Error(`${kind}: counted ${total} + ${deadLetters.total} dead of ${events}`);
  return Math.round(events / ((lastAt - firstAt) / 1000));
}

/** Events per second kcat reads (and prints) from the same topic, first record to exit at the end. */
function throughKcat(bootstrap: string, events: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn('kcat', ['-C', '-b', bootstrap, '-t', TOPIC, '-o', 'beginning', '-e', '-q', '-f', '%s\n'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let lines = 0;
    let firstAt = 0;
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => {
      if (firstAt === 0) firstAt = performance.now();
      for (let i = chunk.indexOf(10); i !== -1; i = chunk.indexOf(10, i + 1)) lines++;
    });
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.once('error', (error) => reject(new Error('cannot run kcat (Debian package kcat)', { cause: error })));
    child.once('exit', (code) => {
      const seconds = (performance.now() - firstAt) / 1000;
      if (code !== 0 || lines !== events) reject(new Error(`kcat exited ${code} after ${lines} of ${events} records: ${stderr}`));
      else resolve(Math.round(events / seconds));
    });
  });
}

export async function run({ args, log: report }: { args: Record<string, string>; log: (line: string) => void }) {
  const events = Number(args.events ?? 100_000);
  const partitions = Number(args.partitions ?? 4);
  if (events / partitions > 90_000) throw new Error('the mock broker keeps about 100,000 records per partition');
  const broker = await MockBroker.start({ topics: { [TOPIC]: partitions } });
  try {
    const producer = await kafkaLog('confluent', broker.bootstrap).catch(() => kafkaLog('kafkajs', broker.bootstrap));
    await produce(producer, events, report);
    await producer.close();

    const kcatEventsPerSec = await throughKcat(broker.bootstrap, events);
    report(`kcat: ${kcatEventsPerSec} events/s`);
    const kafkajsEventsPerSec = await throughPipeline('kafkajs', broker.bootstrap, events);
    report(`kafkajs pipeline: ${kafkajsEventsPerSec} events/s`);
    const confluentEventsPerSec = await throughPipeline('confluent', broker.bootstrap, events);
    report(`confluent pipeline: ${confluentEventsPerSec} events/s`);
    const ratio = Math.max(kafkajsEventsPerSec, confluentEventsPerSec) / kcatEventsPerSec;
    return {
      suite: 'kafka',
      events,
      kafkajsEventsPerSec,
      confluentEventsPerSec,
      kcatEventsPerSec,
      ratio: Math.round(ratio * 100) / 100,
    };
  } finally {
    await broker.stop();
  }
}
