import { afterEach, describe, expect, it } from 'vitest';
import { EmbeddedLog } from '../connectors/embedded-log.js';
import type { DeadLetter } from '../operators/dead-letters.js';
import { TopicFeatureLog, type ServedFeatures } from '../operators/features/feature-log.js';
import { HeldImpression, MemorySamplesStateStore, readTopic, runSamples, samplesPipeline, type RunSamplesOptions, type SamplesJob } from '../pipelines/samples.js';
import type { BehaviourEvent } from '../schema/events.js';
import { parseLabelledSample, type LabelledSample } from '../schema/samples.js';

const T = 1_700_000_000_000;
const WINDOW = 60_000;
const NAMES = ['user.clicks', 'item.ctr'];

/** Writes what ServingPipeline writes for one response: impressions on `events`, served features on `feature-log`. */
async function serve(log: EmbeddedLog, requestId: string, userId: string, ts: number, items: [string, number[]][], withFeatures = true): Promise<void> {
  if (withFeatures) {
    const featureLog = new TopicFeatureLog(log);
    const entry: ServedFeatures = { requestId, userId, ts, names: NAMES, items: items.map(([itemId, values]) => ({ itemId, values })) };
    featureLog.push(entry);
    await featureLog.flush();
  }
  const impressions: BehaviourEvent[] = items.map(([itemId], position) => ({
    id: `${requestId}:${position}`,
    type: 'impression',
    userId,
    itemId,
    ts,
    requestId,
    position,
  }));
  await log.append('events', impressions.map((e) => ({ key: userId, value: JSON.stringify(e) })));
}

async function event(log: EmbeddedLog, e: Partial<BehaviourEvent> & { userId: string }): Promise<void> {
  await log.append('events', [{ key: e.userId, value: JSON.stringify(e) }]);
}

async function until(condition: () => boolean | Promise<boolean>, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}

async function samplesOn(log: EmbeddedLog): Promise<LabelledSample[]> {
  return (await readTopic(log, 'samples')).map((r) => {
    const parsed = parseLabelledSample(r.value);
    if (!parsed.ok) throw new Error(`bad sample on the topic: ${parsed.error.message}`);
    return parsed.value;
  });
}

const jobs: SamplesJob[] = [];
afterEach(async () => {
  await Promise.all(jobs.splice(0).map((j) => j.stop()));
});

async function start(log: EmbeddedLog, options: Partial<RunSamplesOptions> = {}): Promise<SamplesJob> {
  const job = await runSamples({
    log,
    attributionWindowMs: WINDOW,
    maxOutOfOrdernessMs: 1000,
    idleMs: 1e9,
    tickIntervalMs: 0,
    commitIntervalMs: 0,
    ...options,
  });
  jobs.push(job);
  return job;
}

async function newLog(partitions = 1): Promise<EmbeddedLog> {
  const log = new EmbeddedLog();
  for (const topic of ['events', 'feature-log', 'samples', 'dead-letters']) await log.ensureTopic(topic, { partitions });
  return log;
}

describe('samples pipeline', () => {
  it('labels cascade-style per request with the features logged at serving time, and accounts for every record', async () => {
    const log = await newLog();
    const job = await start(log);

    // r1: four items, the third clicked: above it negatives, below it skipped.
    await serve(log, 'r1', 'u1', T, [['a', [0, 0.1]], ['b', [0, 0.2]], ['c', [0, 0.3]], ['d', [0, 0.4]]]);
    await event(log, { id: 'k1', type: 'click', userId: 'u1', itemId: 'c', ts: T + 1000, requestId: 'r1' });
    // r2: nobody clicks: all negatives by default.
    await serve(log, 'r2', 'u2', T, [['x', [5, 0.5]], ['y', [5, 0.6]]]);
    // r3: u1 again after the click, with changed user features; e purchased (no request id), a below it.
    await serve(log, 'r3', 'u1', T + 2000, [['e', [1, 0.7]], ['a', [1, 0.1]]]);
    await event(log, { id: 'k3', type: 'purchase', userId: 'u1', itemId: 'e', ts: T + 3000 });
    // r4: served without a feature-log entry: its click cannot make a sample.
    await serve(log, 'r4', 'u3', T + 2500, [['m', [0, 0]]], false);
    await event(log, { id: 'k4', type: 'click', userId: 'u3', itemId: 'm', ts: T + 2600, requestId: 'r4' });
    // Noise: an organic click, a view, malformed records.
    await event(log, { id: 'k9', type: 'click', userId: 'u9', itemId: 'z', ts: T + 2700 });
    await event(log, { id: 'v1', type: 'view', userId: 'u1', itemId: 'a', ts: T + 20 });
    await log.append('events', [{ key: 'u1', value: '{not json' }]);
    await event(log, { id: 'bad-imp', type: 'impression', userId: 'u1', itemId: 'a', ts: T + 30 });
    await log.append('feature-log', [{ key: 'u1', value: JSON.stringify({ requestId: 'r5', userId: 'u1', ts: T, names: ['f'], items: ['a'], values: Buffer.from(new Float32Array([1, 2]).buffer).toString('base64') }) }]);
    // Far in the future: moves the watermark past every window above.
    await serve(log, 'later', 'u8', T + 10 * WINDOW, [['q', [0, 0]]]);

    await until(() => job.stats.samples + job.stats.skipped + job.stats.missingFeatures >= 9);
    await until(async () => (await samplesOn(log)).length === 6);
    const samples = await samplesOn(log);
    const byId = new Map(samples.map((s) => [s.id, s]));
    const labels = Object.fromEntries(samples.map((s) => [`${s.requestId}/${s.itemId}`, s.label]));
    expect(labels).toEqual({ 'r1/a': 0, 'r1/b': 0, 'r1/c': 1, 'r2/x': 0, 'r2/y': 0, 'r3/e': 1 });
    expect(byId.has('r1:3')).toBe(false);
    expect(byId.has('r3:1')).toBe(false);

    // Point in time: the values of each request, not the user's later ones (as float32, the precision served).
    expect(byId.get('r1:2')!.values).toEqual([0, Math.fround(0.3)]);
    expect(byId.get('r3:0')!.values).toEqual([1, Math.fround(0.7)]);
    expect(byId.get('r1:0')!.values).toEqual([0, Math.fround(0.1)]);
    expect(byId.get('r1:0')!.names).toEqual(NAMES);
    expect(byId.get('r3:0')).toMatchObject({ converted: 1, outcomes: ['purchase'], featuresTs: T + 2000, position: 0, userId: 'u1' });
    expect(byId.get('r1:2')).toMatchObject({ converted: 0, outcomes: ['click'] });

    const s = job.stats;
    expect(s).toMatchObject({ positives: 2, negatives: 4, samples: 6, skipped: 2, missingFeatures: 1, invalid: 3, ignored: 1, unattributedOutcomes: 1 });
    // Every record is parsed into the join, ignored or dead-lettered.
    const records = (await readTopic(log, 'events')).length + (await readTopic(log, 'feature-log')).length;
    expect(s.received).toBe(records);
    expect(s.impressions + s.outcomes + s.servedRequests + s.ignored + s.invalid).toBe(records);
    // Every impression is a sample, skipped, or dead-lettered; the one still in its window is held.
    expect(s.samples + s.skipped + s.missingFeatures + s.late + 1).toBe(s.impressions);

    await until(async () => (await readTopic(log, 'dead-letters')).length === s.invalid + s.missingFeatures);
    const letters = (await readTopic(log, 'dead-letters')).map((r) => JSON.parse(r.value) as DeadLetter);
    const reasons = letters.map((l) => l.reason).join('\n');
    expect(reasons).toMatch(/malformed JSON/);
    expect(reasons).toMatch(/impression needs requestId/);
    expect(reasons).toMatch(/values: 8 bytes for 1 items of 1 float32 features/);
    expect(reasons).toMatch(/no served features logged for request r4 item m/);
    expect(letters.find((l) => l.reason.startsWith('no served'))!.source.topic).toBe('events');
  });

  it('keeps an impression\'s event time exactly, however it is held', () => {
    for (const ts of [0, 1, 2 ** 30 - 1, 2 ** 30, T, T + 0.5, 8.64e15, -5]) {
      const held = new HeldImpression('r:0', 'u', 'i', ts, 'r', 0, 'events', 0, 7);
      expect(held.ts).toBe(ts);
      expect(held.toJSON().event.ts).toBe(ts);
    }
  });

  it("holds served features and outcomes that name a request only with that request's impression", async () => {
    const log = await newLog();
    const job = await start(log);
    await serve(log, 'r1', 'u1', T, [['a', [1, 0.1]]]);
    // r2 served the same user the same item, but its impression never came; then a click names r2.
    const featureLog = new TopicFeatureLog(log);
    featureLog.push({ requestId: 'r2', userId: 'u1', ts: T + 1000, names: NAMES, items: [{ itemId: 'a', values: [2, 0.2] }] });
    await featureLog.flush();
    await event(log, { id: 'k2', type: 'click', userId: 'u1', itemId: 'a', ts: T + 1500, requestId: 'r2' });
    await serve(log, 'later', 'u8', T + 10 * WINDOW, [['q', [0, 0]]]);

    await until(() => job.stats.samples === 1 && job.stats.unusedFeatures === 1);
    const [sample] = await samplesOn(log);
    expect(sample).toMatchObject({ requestId: 'r1', itemId: 'a', label: 0, outcomes: [], values: [1, Math.fround(0.1)] });
    // Neither belonged to r1's impression: r2's features went unused and its click unattributed.
    expect(job.stats).toMatchObject({ unusedFeatures: 1, unattributedOutcomes: 1, missingFeatures: 0 });
  });

  it('dead-letters a malformed feature-log record with the field at fault, even after valid records with the same names', async () => {
    const log = await newLog();
    const job = await start(log);
    await serve(log, 'r1', 'u1', T, [['a', [1, 1]]]);
    const block = (values: number[]) => Buffer.from(new Float32Array(values).buffer).toString('base64');
    const valid = { requestId: 'r2', userId: 'u1', ts: T, names: NAMES, items: ['a'], values: block([1, 2]) };
    const malformed: [Record<string, unknown>, RegExp][] = [
      [{ ...valid, names: [NAMES[0], ''] }, /^names\.1: expected a string of 1 to/],
      [{ ...valid, names: [NAMES[0], 7] }, /^names\.1: expected a string/],
      [{ ...valid, names: 'user.clicks' }, /^names: expected an array/],
      [{ ...valid, items: ['a', 3] }, /^items\.1: expected a string/],
      [{ ...valid, requestId: '' }, /^requestId: expected a string/],
      [{ ...valid, userId: 'x'.repeat(300) }, /^userId: expected a string of 1 to 256/],
      [{ ...valid, ts: 1.5 }, /^ts: expected a whole number/],
      [{ ...valid, values: 12 }, /^values: expected a base64 string/],
      [{ ...valid, extra: true }, /^extra: not a field/],
      [{ ...valid, values: block([1, Number.NaN]) }, /^values: item\.ctr of a is not finite/],
    ];
    await log.append('feature-log', [
      ...malformed.map(([record]) => ({ key: 'u1', value: JSON.stringify(record) })),
      { key: 'u1', value: '[1]' },
      // Other names than the records before: each one is checked.
      { key: 'u1', value: JSON.stringify({ ...valid, requestId: 'r3', names: ['only'], values: block([5]) }) },
    ]);
    await until(() => job.stats.invalid === malformed.length + 1 && job.stats.servedRequests === 2);
    await until(async () => (await readTopic(log, 'dead-letters')).length === malformed.length + 1);
    const reasons = (await readTopic(log, 'dead-letters')).map((r) => (JSON.parse(r.value) as DeadLetter).reason);
    malformed.forEach(([, reason], i) => expect(reasons[i]).toMatch(reason));
    expect(reasons.at(-1)).toBe('entry: expected an object');
  });

  it('labels below the last click and clickless requests as the policy says', async () => {
    const log = await newLog();
    const job = await start(log, { labelling: { belowLastClick: 'negative', noClick: 'skip' } });
    await serve(log, 'r1', 'u1', T, [['a', [1, 1]], ['b', [1, 1]], ['c', [1, 1]]]);
    await event(log, { id: 'k1', type: 'click', userId: 'u1', itemId: 'b', ts: T + 5, requestId: 'r1' });
    // A click on c for another request does not count for r1.
    await event(log, { id: 'k2', type: 'click', userId: 'u1', itemId: 'c', ts: T + 6, requestId: 'other' });
    await serve(log, 'r2', 'u2', T, [['x', [1, 1]]]);
    await serve(log, 'later', 'u8', T + 10 * WINDOW, [['q', [0, 0]]]);
    await until(async () => (await samplesOn(log)).length === 3);
    const labels = Object.fromEntries((await samplesOn(log)).map((s) => [s.id, s.label]));
    expect(labels).toEqual({ 'r1:0': 0, 'r1:1': 1, 'r1:2': 0 });
    expect(job.stats.skipped).toBe(1);
  });

  it('dead-letters a click that arrives after the watermark passed it', async () => {
    const log = await newLog();
    const job = await start(log);
    await serve(log, 'r1', 'u1', T, [['a', [1, 1]]]);
    await serve(log, 'later', 'u8', T + 10 * WINDOW, [['q', [0, 0]]]);
    await until(() => job.stats.samples === 1);
    await event(log, { id: 'k1', type: 'click', userId: 'u1', itemId: 'a', ts: T + 5, requestId: 'r1' });
    await until(() => job.stats.late === 1);
    await until(async () => (await readTopic(log, 'dead-letters')).some((r) => (JSON.parse(r.value) as DeadLetter).reason.startsWith('late outcome')));
  });

  it('attaches served features that come after their impressions, and dead-letters those that come late', async () => {
    const log = await newLog();
    const job = await start(log);
    await serve(log, 'r1', 'u1', T, [['a', [1, 2]], ['b', [3, 4]]], false);
    await until(() => job.stats.impressions === 2);
    const featureLog = new TopicFeatureLog(log);
    featureLog.push({ requestId: 'r1', userId: 'u1', ts: T, names: NAMES, items: [{ itemId: 'a', values: [1, 2] }, { itemId: 'b', values: [3, 4] }] });
    await featureLog.flush();
    await event(log, { id: 'k1', type: 'click', userId: 'u1', itemId: 'b', ts: T + 10, requestId: 'r1' });
    await serve(log, 'later', 'u8', T + 10 * WINDOW, [['q', [0, 0]]]);
    await until(() => job.stats.samples === 2);
    const samples = await samplesOn(log);
    expect(Object.fromEntries(samples.map((x) => [x.id, [x.label, x.values]]))).toEqual({ 'r1:0': [0, [1, 2]], 'r1:1': [1, [3, 4]] });
    // Features of a request the watermark has passed: each item's are dead-lettered as late.
    featureLog.push({ requestId: 'r0', userId: 'u1', ts: T - 1, names: NAMES, items: [{ itemId: 'x', values: [0, 0] }, { itemId: 'y', values: [0, 0] }] });
    await featureLog.flush();
    await until(() => job.stats.late === 2);
    await until(async () => (await readTopic(log, 'dead-letters')).filter((r) => (JSON.parse(r.value) as DeadLetter).reason.startsWith('late served')).length === 2);
    expect(job.stats).toMatchObject({ missingFeatures: 0, unusedFeatures: 0 });
  });

  it('restores a checkpoint written when served features were joined item by item', async () => {
    const log = await newLog();
    const plainImpression = (requestId: string, itemId: string, position: number, offset: number) => ({
      kind: 'impression',
      event: { id: `${requestId}:${position}`, type: 'impression', userId: 'u1', itemId, ts: T, requestId, position },
      requestId,
      position,
      source: { topic: 'events', partition: 0, offset },
    });
    const plainServed = (requestId: string, itemId: string, values: number[], ts = T) => ({
      kind: 'served', userId: 'u1', itemId, requestId, ts, names: NAMES, values, source: { topic: 'feature-log', partition: 0, offset: 0 },
    });
    // As the join held it: r1's impression of `a` with its own features and those of r2 (served the same item
    // later), r1's impression of `b` with its features; r2's features for `c` still held unmatched.
    const checkpoint = {
      positions: [],
      eventTime: { watermark: T - 1000, partitions: [] },
      watermark: T - 1000,
      join: {
        watermark: T - 1000,
        entries: [
          { side: 'left', item: plainImpression('r1', 'a', 0, 0), seq: 0, matched: true, matches: [plainServed('r1', 'a', [1, 1]), plainServed('r2', 'a', [9, 9], T + 5)] },
          { side: 'left', item: plainImpression('r1', 'b', 1, 1), seq: 1, matched: true, matches: [plainServed('r1', 'b', [2, 2])] },
          { side: 'right', item: plainServed('r2', 'c', [3, 3], T + 5), seq: 2, matched: false },
        ],
        stats: { left: 2, right: 4, ignored: 0, emitted: 0, late: 0, unmatched: 0, stateFull: 0, invalid: 0 },
      },
      stats: { ...samplesPipeline({ sink: { append: async () => undefined }, deadLetters: { push: () => undefined } }).stats },
    };
    const state = new MemorySamplesStateStore();
    await state.save(checkpoint as unknown as Parameters<MemorySamplesStateStore['save']>[0]);
    const job = await start(log, { state });
    expect(job.heldItems()).toBe(2);
    // r2's impression of `c` arrives now and takes the features held for it.
    await log.append('events', [{ key: 'u1', value: JSON.stringify({ id: 'r2:0', type: 'impression', userId: 'u1', itemId: 'c', ts: T + 5, requestId: 'r2', position: 0 }) }]);
    await event(log, { id: 'k1', type: 'click', userId: 'u1', itemId: 'b', ts: T + 10, requestId: 'r1' });
    await serve(log, 'later', 'u8', T + 10 * WINDOW, [['q', [0, 0]]]);
    await until(() => job.stats.samples === 3);
    const samples = await samplesOn(log);
    expect(Object.fromEntries(samples.map((x) => [x.id, [x.label, x.values]]))).toEqual({ 'r1:0': [0, [1, 1]], 'r1:1': [1, [2, 2]], 'r2:0': [0, [3, 3]] });
  });

  it('lets samples out when traffic stops: within the window plus the out-of-orderness, idle and tick bounds', async () => {
    const log = await newLog(2);
    const window = 300;
    const bound = 50 + 100 + 20;
    const job = await start(log, { attributionWindowMs: window, maxOutOfOrdernessMs: 50, idleMs: 100, tickIntervalMs: 20 });
    const servedAt = Date.now();
    await serve(log, 'r1', 'u1', servedAt, [['a', [1, 1]], ['b', [1, 1]]]);
    await event(log, { id: 'k1', type: 'click', userId: 'u1', itemId: 'b', ts: servedAt + 10, requestId: 'r1' });
    await until(async () => (await samplesOn(log)).length === 2, 5000);
    const elapsed = Date.now() - servedAt;
    expect(elapsed).toBeGreaterThanOrEqual(window);
    // Slack for the test machine's scheduling; the bound itself is 470 ms.
    expect(elapsed).toBeLessThan(window + bound + 400);
    expect(job.stats.positives).toBe(1);
  });

  it('keeps held impressions across a restart through the checkpointed join state', async () => {
    const log = await newLog();
    const state = new MemorySamplesStateStore();
    const first = await start(log, { state });
    await serve(log, 'r1', 'u1', T, [['a', [2, 3]], ['b', [4, 5]]]);
    // An impression whose id is not the `requestId:position` serving gives: it keeps its own, held and checkpointed.
    await event(log, { id: 'client-chosen', type: 'impression', userId: 'u1', itemId: 'c', ts: T, requestId: 'r1', position: 2 });
    await until(() => first.stats.impressions === 3);
    await first.stop();
    // Impressions are checkpointed in their plain form, the one checkpoints written by earlier versions carry.
    const saved = (await state.load())!.join.entries.find((e) => e.side === 'left' && e.item.kind === 'impression' && e.item.position === 1);
    expect(saved?.item).toEqual({
      kind: 'impression',
      event: { id: 'r1:1', type: 'impression', userId: 'u1', itemId: 'b', ts: T, requestId: 'r1', position: 1 },
      requestId: 'r1',
      position: 1,
      source: { topic: 'events', partition: 0, offset: 1 },
    });
    const own = (await state.load())!.join.entries.find((e) => e.side === 'left' && e.item.kind === 'impression' && e.item.position === 2);
    expect(own?.item).toMatchObject({ event: { id: 'client-chosen', requestId: 'r1', position: 2 } });

    const second = await start(log, { state });
    await event(log, { id: 'k1', type: 'click', userId: 'u1', itemId: 'b', ts: T + 100, requestId: 'r1' });
    await serve(log, 'later', 'u8', T + 10 * WINDOW, [['q', [0, 0]]]);
    await until(async () => (await samplesOn(log)).length === 2);
    const samples = await samplesOn(log);
    expect(Object.fromEntries(samples.map((s) => [s.id, [s.label, s.values]]))).toEqual({ 'r1:0': [0, [2, 3]], 'r1:1': [1, [4, 5]] });
    // The first run's impressions were not read again: the second run resumed from the checkpoint's positions.
    expect(second.stats.impressions).toBe(4);
  });

  it('at its item bound, labels the oldest requests early and keeps the features and clicks newer ones need', async () => {
    const log = await newLog();
    const job = await start(log, { maxStateItems: 150 });
    const requests = 100;
    for (let r = 0; r < requests; r++) {
      const ts = T + r * 100;
      await serve(log, `r${r}`, `u${r}`, ts, [[`a${r}`, [r, 0]], [`b${r}`, [r, 1]], [`c${r}`, [r, 2]]]);
      await event(log, { id: `click${r}`, type: 'click', userId: `u${r}`, itemId: `b${r}`, ts: ts + 50 });
      // Live traffic: the job keeps up, rather than catching up on a backlog of one topic before the other.
      await until(() => job.stats.received === (r + 1) * 5);
    }
    const s = job.stats;
    // Ten requests a second fill the bound with impressions long before their window of a minute ends.
    expect(s.closedEarly).toBeGreaterThanOrEqual(3 * 40);
    expect(s).toMatchObject({ missingFeatures: 0, evicted: 0, late: 0, skipped: s.closedEarly / 3 });
    const samples = await samplesOn(log);
    expect(samples).toHaveLength((s.closedEarly / 3) * 2);
    for (const sample of samples) {
      const r = Number(sample.requestId.slice(1));
      expect(sample.label, sample.id).toBe(sample.position === 1 ? 1 : 0);
      expect(sample.values).toEqual([r, sample.position]);
    }
    expect(await readTopic(log, 'dead-letters')).toEqual([]);
  });

  it('describes itself with its sources, sink and dead-letter side output', () => {
    const { pipeline } = samplesPipeline({ sink: { append: async () => undefined }, deadLetters: { push: () => undefined } });
    const topology = pipeline.describe();
    const ids = topology.nodes.map((n) => n.id);
    expect(ids).toEqual(expect.arrayContaining(['source:topic:events', 'source:topic:feature-log', 'sink:topic:samples', 'sink:topic:dead-letters']));
    expect(topology.nodes.find((n) => n.kind === 'interval-join')).toMatchObject({ params: { mode: 'grouped', upperMs: 1_800_000, flushOnComplete: false } });
    expect(topology.edges.filter((e) => e.output === 'dead-letters').length).toBeGreaterThanOrEqual(2);
  });
});
