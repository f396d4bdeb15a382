/**
 * What the Log contract does not cover of `ThreadLog`: failures on the log's side, a consumer closed while it waits,
 * and the log's side going away. (The contract itself runs against it in kafka-log.test.ts.)
 */
import { MessageChannel } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { EmbeddedLog } from '../connectors/embedded-log.js';
import { DeferredJson, type Log } from '../connectors/log.js';
import { serveLog, ThreadLog } from '../connectors/thread-log.js';

function across(log: Log) {
  const channel = new MessageChannel();
  return { channel, served: serveLog(log, channel.port1), client: new ThreadLog(channel.port2) };
}

/** A consumer across the port, 50 ms into a `next` on a topic nothing is appended to. */
async function waitingOnQuietTopic() {
  const embedded = new EmbeddedLog();
  await embedded.ensureTopic('t', { partitions: 1 });
  const sides = across(embedded);
  const consumer = sides.client.consumer({ group: 'g', topics: ['t'], pollTimeoutMs: 10_000 });
  const waiting = consumer.next().then(
    (batch) => batch,
    (error: Error) => error.message,
  );
  await new Promise((resolve) => setTimeout(resolve, 50));
  return { ...sides, embedded, consumer, waiting };
}

describe('ThreadLog', () => {
  it("rejects a call with the log side's error, named and with its message, and goes on serving", async () => {
    const embedded = new EmbeddedLog();
    const failing: Log = Object.assign(Object.create(embedded) as Log, {
      append: async () => {
        throw new RangeError('record too large for topic big');
      },
    });
    const { served, client } = across(failing);
    const error = await client.append('big', [{ key: 'k', value: 'v' }]).catch((e: unknown) => e as Error);
    expect(error).toBeInstanceOf(Error);
    expect(error).toMatchObject({ name: 'RangeError', message: 'record too large for topic big' });
    await client.ensureTopic('other', { partitions: 3 });
    expect(await client.partitionCount('other')).toBe(3);
    await client.close();
    await served.close();
  });

  it('answers a consumer waiting for records with undefined once it is closed, and its log side forgets it', async () => {
    const { embedded, served, client, consumer, waiting } = await waitingOnQuietTopic();
    await consumer.close();
    expect(await waiting).toBeUndefined();
    expect(await consumer.next()).toBeUndefined();
    // The group has no member left, so a new one is assigned the partition at once and reads from the start.
    await embedded.append('t', [{ key: 'k', value: 'after' }]);
    const next = client.consumer({ group: 'g', topics: ['t'], pollTimeoutMs: 1000 });
    expect((await next.next())?.records.map((r) => r.value)).toEqual(['after']);
    await client.close();
    await served.close();
  });

  it('closes the consumers the other side left open when the log side closes, and fails calls after that', async () => {
    const { served, client, waiting } = await waitingOnQuietTopic();
    await served.close();
    expect(await waiting).toBeUndefined();
    await expect(client.partitionCount('t')).rejects.toThrow('the log thread went away');
  });

  it("fails calls in flight when the log's side goes away without answering, rather than leaving them waiting", async () => {
    const { embedded, channel, client, waiting } = await waitingOnQuietTopic();
    channel.port1.close();
    expect(await waiting).toBe('the log thread went away');
    await expect(client.append('t', [{ key: null, value: 'v' }])).rejects.toThrow('the log thread went away');
    await embedded.close();
  });

  it("writes deferred values as text on either side of the port: a payload is for the producer's own thread", async () => {
    const embedded = new EmbeddedLog();
    await embedded.ensureTopic('t', { partitions: 1 });
    const { served, client } = across(embedded);
    await client.append('t', [{ key: 'a', value: new DeferredJson({ from: 'thread' }, 20) }]);
    await embedded.append('t', [{ key: 'b', value: new DeferredJson({ from: 'log side' }, 20) }]);
    const local = embedded.consumer({ group: 'local', topics: ['t'], pollTimeoutMs: 100 });
    const [fromThread, fromLogSide] = (await local.next())!.records;
    expect(fromThread).toMatchObject({ value: '{"from":"thread"}' });
    expect(fromThread!.payload).toBeUndefined();
    expect(fromLogSide!.payload).toEqual({ from: 'log side' });
    const remote = client.consumer({ group: 'remote', topics: ['t'], pollTimeoutMs: 1000 });
    const records = (await remote.next())!.records;
    expect(records.map((r) => r.value)).toEqual(['{"from":"thread"}', '{"from":"log side"}']);
    expect(records.map((r) => r.payload)).toEqual([undefined, undefined]);
    await local.close();
    await client.close();
    await served.close();
  });
});
