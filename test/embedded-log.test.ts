import { describe, expect, it } from 'vitest';
import { EmbeddedLog, type ExpiredUnread } from '../connectors/embedded-log.js';
import { murmur2, partitionForKey } from '../connectors/partitioner.js';
import { DeferredJson, type LogConsumer, type RecordBatch, type TopicPartition } from '../connectors/log.js';

const encode = (s: string) => new TextEncoder().encode(s);

async function drain(consumer: LogConsumer, expected: number): Promise<RecordBatch[]> {
  const batches: RecordBatch[] = [];
  let seen = 0;
  while (seen < expected) {
    const batch = await consumer.next();
    if (batch === undefined) break;
    if (batch === null) continue;
    batches.push(batch);
    seen += batch.records.length;
  }
  return batches;
}

describe('Kafka default partitioner', () => {
  it('matches the murmur2 values of Kafka’s own test suite', () => {
    // org.apache.kafka.common.utils.UtilsTest#testMurmur2
    expect(murmur2(encode('21'))).toBe(-973932308);
    expect(murmur2(encode('foobar'))).toBe(-790332482);
    expect(murmur2(encode('a-little-bit-long-string'))).toBe(-985981536);
    expect(murmur2(encode('a-little-bit-longer-string'))).toBe(-1486304829);
    expect(murmur2(encode('lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8'))).toBe(-58897971);
    expect(murmur2(encode('abc'))).toBe(479470107);
  });

  it('agrees with kafkajs’s DefaultPartitioner', async () => {
    const { Partitioners } = (await import('kafkajs')).default;
    const kafkajsPartition = Partitioners.DefaultPartitioner();
    for (let i = 0; i < 2000; i++) {
      const key = `user-${(i * 7919).toString(36)}-${i % 13}`;
      const partitions = 1 + (i % 31);
      const partitionMetadata = Array.from({ length: partitions }, (_, partitionId) => ({
        partitionId,
        leader: 0,
        partitionErrorCode: 0,
        replicas: [0],
        isr: [0],
      }));
      expect(partitionForKey(key, partitions)).toBe(kafkajsPartition({ topic: 't', partitionMetadata, message: { key, value: null } }));
    }
  });
});

describe('EmbeddedLog', () => {
  it('appends with increasing offsets and places keys by the default partitioner', async () => {
    const log = new EmbeddedLog();
    await log.ensureTopic('events', { partitions: 8 });
    const results = await log.append('events', [
      { key: 'u1', value: '1' },
      { key: 'u2', value: '2' },
      { key: 'u1', value: '3' },
    ]);
    expect(results[0]!.partition).toBe(partitionForKey('u1', 8));
    expect(results[2]!.partition).toBe(results[0]!.partition);
    expect(results[2]!.offset).toBe(results[0]!.offset + 1);
    const offsets = await log.offsets('events');
    expect(offsets.reduce((sum, o) => sum + o.high, 0)).toBe(3);
  });

  it('delivers a partition in offset order and resumes a group from its committed offsets', async () => {
    const log = new EmbeddedLog();
    await log.ensureTopic('t', { partitions: 1 });
    await log.append('t', Array.from({ length: 10 }, (_, i) => ({ key: 'k', value: String(i) })));
    const first = log.consumer({ group: 'g', topics: ['t'], maxBatchRecords: 4, pollTimeoutMs: 10 });
    const batch = (await first.next())!;
    expect(batch.records.map((r) => r.value)).toEqual(['0', '1', '2', '3']);
    await first.commit([{ topic: 't', partition: 0, offset: 4 }]);
    await first.close();

    const second = log.consumer({ group: 'g', topics: ['t'], pollTimeoutMs: 10 });
    const rest = await drain(second, 6);
    expect(rest.flatMap((b) => b.records.map((r) => r.value))).toEqual(['4', '5', '6', '7', '8', '9']);
    expect(await second.committed([{ topic: 't', partition: 0 }])).toEqual([4]);
    await second.close();
  });

  it('never moves a committed offset backwards', async () => {
    const log = new EmbeddedLog();
    const consumer = log.consumer({ group: 'g', topics: ['t'], pollTimeoutMs: 10 });
    await consumer.commit([{ topic: 't', partition: 0, offset: 7 }]);
    await consumer.commit([{ topic: 't', partition: 0, offset: 3 }]);
    expect(await consumer.committed([{ topic: 't', partition: 0 }])).toEqual([7]);
    await consumer.close();
  });

  it('seek re-reads from an offset', async () => {
    const log = new EmbeddedLog();
    await log.append('t', [{ key: null, value: 'a' }, { key: null, value: 'b' }]);
    const consumer = log.consumer({ group: 'g', topics: ['t'], pollTimeoutMs: 10 });
    await drain(consumer, 2);
    consumer.seek({ topic: 't', partition: 0 }, 1);
    expect((await consumer.next())!.records.map((r) => r.value)).toEqual(['b']);
    await consumer.close();
  });

  it('pause stops a partition from being fetched until resume', async () => {
    const log = new EmbeddedLog();
    await log.append('t', [{ key: null, value: 'a' }]);
    const consumer = log.consumer({ group: 'g', topics: ['t'], pollTimeoutMs: 20 });
    await consumer.next().then((b) => expect(b).not.toBeUndefined());
    await log.append('t', [{ key: null, value: 'b' }]);
    consumer.pause([{ topic: 't', partition: 0 }]);
    expect(await consumer.next()).toBeNull();
    consumer.resume([{ topic: 't', partition: 0 }]);
    expect((await consumer.next())!.records[0]!.value).toBe('b');
    await consumer.close();
  });

  it('wakes a waiting consumer as soon as a record is appended', async () => {
    const log = new EmbeddedLog();
    await log.ensureTopic('t', { partitions: 1 });
    const consumer = log.consumer({ group: 'g', topics: ['t'], pollTimeoutMs: 5000 });
    const started = performance.now();
    const pending = consumer.next();
    setTimeout(() => void log.append('t', [{ key: null, value: 'x' }]), 5);
    const batch = await pending;
    expect(batch!.records[0]!.value).toBe('x');
    expect(performance.now() - started).toBeLessThan(1000);
    await consumer.close();
  });

  it('splits partitions between group members and hands them over on join and leave', async () => {
    const log = new EmbeddedLog();
    await log.ensureTopic('t', { partitions: 4 });
    const events: string[] = [];
    const track = (name: string) => ({
      onAssign: (ps: readonly TopicPartition[]) => {
        events.push(`${name} +${ps.map((p) => p.partition).join(',')}`);
      },
      onRevoke: async (ps: readonly TopicPartition[]) => {
        await new Promise((resolve) => setTimeout(resolve, 5));
        events.push(`${name} -${ps.map((p) => p.partition).join(',')}`);
      },
    });
    const a = log.consumer({ group: 'g', topics: ['t'], pollTimeoutMs: 5, ...track('a') });
    await a.next();
    expect(a.assignment().map((p) => p.partition)).toEqual([0, 1, 2, 3]);
    const b = log.consumer({ group: 'g', topics: ['t'], pollTimeoutMs: 5, ...track('b') });
    await b.next();
    const owned = [...a.assignment(), ...b.assignment()].map((p) => p.partition).sort();
    expect(owned).toEqual([0, 1, 2, 3]);
    expect(a.assignment()).toHaveLength(2);
    // Eager rebalancing: a gives everything up before anyone is assigned again.
    expect(events.indexOf('a -0,1,2,3')).toBeLessThan(events.findIndex((e) => e.startsWith('b +')));
    await b.close();
    await a.next();
    expect(a.assignment()).toHaveLength(4);
    await a.close();
  });

  it('bounds each partition by its retention and compacts by key', async () => {
    const log = new EmbeddedLog();
    await log.ensureTopic('plain', { partitions: 1, retentionRecords: 100 });
    await log.ensureTopic('compacted', { partitions: 1, retentionRecords: 10, compacted: true });
    for (let i = 0; i < 1000; i++) {
      await log.append('plain', [{ key: null, value: String(i) }]);
      await log.append('compacted', [{ key: `k${i % 5}`, value: String(i) }]);
    }
    const [plain] = await log.offsets('plain');
    expect(plain!.high).toBe(1000);
    expect(plain!.high - plain!.low).toBeLessThanOrEqual(125);
    const consumer = log.consumer({ group: 'g', topics: ['compacted'], pollTimeoutMs: 10 });
    const batch = (await consumer.next())!;
    const latest = new Map(batch.records.map((r) => [r.key, r.value]));
    for (let k = 0; k < 5; k++) expect(latest.get(`k${k}`)).toBe(String(995 + k));
    expect(batch.records.length).toBeLessThanOrEqual(12);
    await consumer.close();
  });

  it("never drops a key's newest record from a compacted topic, however far past its retention the keys go", async () => {
    // 10 records and about 11 records' bytes of retention, against 200 keys: a catalogue larger than its budget.
    const log = new EmbeddedLog({ retentionBytes: 12_000 });
    await log.ensureTopic('items', { partitions: 1, retentionRecords: 10, compacted: true });
    const value = (i: number) => `${i}:${'x'.repeat(1000)}`;
    for (let round = 0; round < 3; round++) {
      for (let k = 0; k < 200; k++) await log.append('items', [{ key: `item-${k}`, value: value(round * 200 + k) }]);
    }
    await log.append('items', [{ key: null, value: 'first without a key' }, { key: null, value: 'second without a key' }]);
    for (let k = 0; k < 200; k++) await log.append('items', [{ key: `item-${k}`, value: value(600 + k) }]);
    const reader = log.consumer({ group: 'g', topics: ['items'], pollTimeoutMs: 10 });
    const latest = new Map<string | null, string[]>();
    for (let batch = await reader.next(); batch; batch = await reader.next()) {
      for (const r of batch.records) latest.set(r.key, [...(latest.get(r.key) ?? []), r.value]);
    }
    for (let k = 0; k < 200; k++) expect(latest.get(`item-${k}`)?.at(-1)).toBe(value(600 + k));
    expect(latest.get(null)).toEqual(['second without a key']);
    // Compaction ran: at most the records of the last round and the one before it are kept per key.
    const [items] = await log.offsets('items');
    expect(items!.high).toBe(802);
    expect([...latest.values()].reduce((sum, values) => sum + values.length, 0)).toBeLessThanOrEqual(2 * 201);
    await reader.close();
  });

  it('hands a reader every record with its key, value and time once, in order, while it grows, trims and compacts', async () => {
    const log = new EmbeddedLog();
    await log.ensureTopic('plain', { partitions: 1, retentionRecords: 700 });
    await log.ensureTopic('compacted', { partitions: 1, retentionRecords: 5000, compacted: true });
    const reader = log.consumer({ group: 'g', topics: ['plain'], pollTimeoutMs: 10 });
    const seen: string[] = [];
    let total = 0;
    for (let i = 0; i < 6000; ) {
      const size = 1 + ((i * 7) % 13);
      await log.append('plain', Array.from({ length: size }, (_, k) => ({ key: `k${i + k}`, value: `v${i + k}`, timestamp: 1000 + i + k })));
      await log.append('compacted', Array.from({ length: size }, (_, k) => ({ key: `k${(i + k) % 300}`, value: `v${i + k}` })));
      i += size;
      total = i;
      if (i % 5 === 0) for (let batch = await reader.next(); batch; batch = await reader.next()) for (const r of batch.records) seen.push(`${r.offset}:${r.key}:${r.value}:${r.timestamp}`);
    }
    for (let batch = await reader.next(); batch; batch = await reader.next()) for (const r of batch.records) seen.push(`${r.offset}:${r.key}:${r.value}:${r.timestamp}`);
    expect(seen).toEqual(Array.from({ length: seen.length }, (_, n) => `${n}:k${n}:v${n}:${1000 + n}`));
    expect(seen).toHaveLength(total);
    const [plain] = await log.offsets('plain');
    expect(plain!.high - plain!.low).toBeLessThanOrEqual(875);
    const latest = new Map<string | null, string>();
    const fresh = log.consumer({ group: 'fresh', topics: ['compacted'], pollTimeoutMs: 10 });
    for (let batch = await fresh.next(); batch; batch = await fresh.next()) for (const r of batch.records) latest.set(r.key, r.value);
    expect(latest.size).toBe(300);
    for (let k = 0; k < 300; k++) expect(latest.get(`k${k}`)).toBe(`v${total - 1 - ((total - 1 - k) % 300)}`);
    await reader.close();
    await fresh.close();
  });

  it('answers a next waiting for records with undefined as soon as the consumer closes, not at its poll timeout', async () => {
    const log = new EmbeddedLog();
    await log.ensureTopic('quiet', { partitions: 1 });
    const consumer = log.consumer({ group: 'g', topics: ['quiet'], pollTimeoutMs: 10_000, fetchMinRecords: 10, fetchMaxWaitMs: 5_000 });
    const waiting = consumer.next();
    await new Promise((resolve) => setTimeout(resolve, 20));
    const closedAt = performance.now();
    await consumer.close();
    expect(await waiting).toBeUndefined();
    expect(performance.now() - closedAt).toBeLessThan(1000);
  });

  it('bounds each partition by bytes, oldest out, and reports what a consumer never read', async () => {
    const expired: ExpiredUnread[] = [];
    // 1,100 bytes a record with the per-record estimate: about 100 records fit in 110,000 bytes.
    const log = new EmbeddedLog({ retentionBytes: 110_000, onExpiredUnread: (e) => expired.push(e) });
    await log.ensureTopic('big', { partitions: 1 });
    const value = 'x'.repeat(1000);
    const reader = log.consumer({ group: 'reader', topics: ['big'], pollTimeoutMs: 10 });
    await log.append('big', Array.from({ length: 50 }, () => ({ key: null, value })));
    const first = (await reader.next())!;
    expect(first.records.map((r) => r.offset)).toEqual(Array.from({ length: 50 }, (_, i) => i));
    for (let i = 0; i < 1000; i++) await log.append('big', [{ key: null, value }]);
    const [big] = await log.offsets('big');
    expect(big!.high).toBe(1050);
    const kept = big!.high - big!.low;
    expect(kept).toBeGreaterThanOrEqual(100);
    expect(kept).toBeLessThanOrEqual(125);
    expect(expired).toEqual([]);
    const next = (await reader.next())!;
    expect(next.records[0]!.offset).toBe(big!.low);
    expect(expired).toEqual([{ group: 'reader', topic: 'big', partition: 0, from: 50, to: big!.low }]);
    // Reported once: the reader goes on from the oldest record kept.
    while ((await reader.next()) !== null);
    expect(expired).toHaveLength(1);
    // A group that starts afresh begins at the oldest record kept and has lost nothing.
    const fresh = log.consumer({ group: 'fresh', topics: ['big'], pollTimeoutMs: 10 });
    expect((await fresh.next())!.records[0]!.offset).toBe(big!.low);
    expect(expired).toHaveLength(1);
    await reader.close();
    await fresh.close();
  });
});

describe('EmbeddedLog deferred values', () => {
  /** A deferred value that counts its encodings. */
  class CountedJson extends DeferredJson {
    encoded = 0;
    override encode(): string {
      this.encoded++;
      return super.encode();
    }
  }

  it("hands a consumer the producer's object, and writes the text only when the record's value is read", async () => {
    const log = new EmbeddedLog();
    await log.ensureTopic('samples', { partitions: 1 });
    const sample = { id: 's1', values: [0.1, 2.5e-7, 3] };
    const deferred = new CountedJson(sample, 40);
    await log.append('samples', [{ key: 'u1', value: deferred }, { key: 'u2', value: '{"id":"s2"}' }]);
    const consumer = log.consumer({ group: 'g', topics: ['samples'], pollTimeoutMs: 10 });
    const [first, second] = (await consumer.next())!.records;
    expect(first!.payload).toBe(sample);
    expect(deferred.encoded).toBe(0);
    expect(second!.payload).toBeUndefined();
    expect(second!.value).toBe('{"id":"s2"}');
    // The text is the object's JSON, written once however often it is read, and a copy of the record carries it.
    expect(JSON.parse(first!.value)).toEqual(sample);
    expect(first!.value).toBe(JSON.stringify(sample));
    expect({ ...first! }.value).toBe(JSON.stringify(sample));
    expect(deferred.encoded).toBe(1);
    await consumer.close();
  });

  it('counts a deferred value by its estimated length for retention by bytes, without encoding it', async () => {
    // 1,100 bytes a record with the per-record estimate, as the text records of the test above: about 100 fit.
    const log = new EmbeddedLog({ retentionBytes: 110_000 });
    await log.ensureTopic('big', { partitions: 1 });
    const values = Array.from({ length: 1050 }, (_, i) => new CountedJson({ i }, 1000));
    for (const value of values) await log.append('big', [{ key: null, value }]);
    const [big] = await log.offsets('big');
    const kept = big!.high - big!.low;
    expect(kept).toBeGreaterThanOrEqual(100);
    expect(kept).toBeLessThanOrEqual(125);
    expect(values.reduce((sum, v) => sum + v.encoded, 0)).toBe(0);
  });
});

describe('EmbeddedLog fetch batching', () => {
  it('once caught up, waits for fetchMinRecords or fetchMaxWaitMs before returning records', async () => {
    const log = new EmbeddedLog();
    await log.ensureTopic('t', { partitions: 2 });
    const consumer = log.consumer({ group: 'g', topics: ['t'], pollTimeoutMs: 1000, fetchMinRecords: 10, fetchMaxWaitMs: 200 });
    const appendSoon = (from: number, count: number, afterMs: number) =>
      setTimeout(() => void log.append('t', Array.from({ length: count }, (_, i) => ({ key: `k${from + i}`, value: String(from + i) }))), afterMs);

    // Ten records arrive in steps: nothing is returned until all ten are there.
    const started = performance.now();
    appendSoon(0, 4, 10);
    appendSoon(4, 6, 60);
    const first = [(await consumer.next())!];
    const waitedMs = performance.now() - started;
    expect(waitedMs).toBeGreaterThanOrEqual(55);
    expect(waitedMs).toBeLessThan(190);
    // Reading on across the partitions does not wait again until the consumer has caught up.
    const readingOn = performance.now();
    const rest = await drain(consumer, 10 - first[0]!.records.length);
    expect(performance.now() - readingOn).toBeLessThan(150);
    expect([...first, ...rest].flatMap((b) => b.records.map((r) => Number(r.value))).sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);

    // Too few records: they come after fetchMaxWaitMs, not at the poll timeout.
    const lingered = performance.now();
    appendSoon(10, 3, 0);
    const late = (await consumer.next())!;
    const lingeredMs = performance.now() - lingered;
    expect(late.records.length).toBeGreaterThan(0);
    expect(lingeredMs).toBeGreaterThanOrEqual(190);
    expect(lingeredMs).toBeLessThan(900);
    await consumer.close();
  });
});

describe('EmbeddedLog.continueFrom', () => {
  it('numbers new records after positions restored from a snapshot', async () => {
    const log = new EmbeddedLog();
    await log.ensureTopic('events', { partitions: 2 });
    log.continueFrom([{ topic: 'events', partition: 1, offset: 500 }]);
    const [result] = await log.append('events', [{ key: null, value: 'x', partition: 1 }]);
    expect(result!.offset).toBe(500);
    const [other] = await log.append('events', [{ key: null, value: 'y', partition: 0 }]);
    expect(other!.offset).toBe(0);
  });
});
