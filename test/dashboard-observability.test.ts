import { Writable } from 'node:stream';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { Registry } from 'prom-client';
import { createHttpServer, type EddyService } from '../connectors/http.js';
import { dashboardPlugin } from '../connectors/dashboard/plugin.js';
import { histogramQuantile, metricsDashboardSource } from '../connectors/dashboard/metrics-source.js';
import type { DashboardSnapshot } from '../connectors/dashboard/snapshot.js';
import { createMetrics } from '../connectors/observability/metrics.js';
import { createLogger, httpLoggerOptions } from '../connectors/observability/logger.js';
import { metricsTap } from '../operators/metrics.js';

const idleService: EddyService = {
  ingest: async () => ({ accepted: 0, rejected: [] }),
  recommend: async (request) => ({ requestId: request.requestId, userId: request.userId, items: [], model: 'm', variant: 'control', tookMs: 0 }),
  similar: async () => undefined,
  experiment: () => undefined,
  readiness: async () => ({ ready: true, checks: {} }),
  metrics: async () => ({ contentType: 'text/plain', body: '' }),
};

function lines(): { stream: Writable; records: Record<string, unknown>[] } {
  const records: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString('utf8').split('\n').filter(Boolean)) records.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  return { stream, records };
}

describe('metrics', () => {
  it('defines each metric once per registry, alongside the operator metrics tap', async () => {
    const registry = new Registry();
    metricsTap('features', registry);
    const metrics = createMetrics(registry);
    expect(createMetrics(registry)).toBe(metrics);
    expect(metrics.operatorLatency).toBe(registry.getSingleMetric('eddy_operator_batch_latency_seconds'));
    metrics.eventsIn.inc({ topic: 'events' }, 3);
    const text = await registry.metrics();
    expect(text).toContain('eddy_events_in_total{topic="events"} 3');
    expect(createMetrics(new Registry())).not.toBe(metrics);
  });

  it('keeps one serving version per model, dropping the previous version with its online metrics', async () => {
    const metrics = createMetrics(new Registry());
    metrics.setServingVersion('ftrl', 'v1');
    metrics.onlineAuc.set({ model: 'ftrl', version: 'v1' }, 0.7);
    metrics.setServingVersion('ftrl', 'v2');
    metrics.onlineAuc.set({ model: 'ftrl', version: 'v2' }, 0.72);
    const versions = (await metrics.modelVersion.get()).values.map((v) => v.labels.version);
    expect(versions).toEqual(['v2']);
    expect((await metrics.onlineAuc.get()).values).toEqual([expect.objectContaining({ labels: { model: 'ftrl', version: 'v2' }, value: 0.72 })]);
  });

  it('derives each variant CTR from its clicks and exposures whenever it is read', async () => {
    const registry = new Registry();
    const metrics = createMetrics(registry);
    metrics.abClicks.inc({ experiment: 'exp', variant: 'unexposed' }, 3);
    metrics.abExposures.inc({ experiment: 'exp', variant: 'control' }, 200);
    metrics.abClicks.inc({ experiment: 'exp', variant: 'control' }, 10);
    metrics.abExposures.inc({ experiment: 'exp', variant: 'treatment' }, 100);
    metrics.abClicks.inc({ experiment: 'exp', variant: 'treatment' }, 10);
    const ctr = Object.fromEntries((await metrics.abCtr.get()).values.map((v) => [v.labels.variant, v.value]));
    expect(ctr).toEqual({ control: 0.05, treatment: 0.1 });
    metrics.abExposures.inc({ experiment: 'exp', variant: 'treatment' }, 100);
    expect(await registry.metrics()).toContain('eddy_ab_ctr{experiment="exp",variant="treatment"} 0.05');
  });
});

describe('histogramQuantile', () => {
  it('interpolates inside the bucket holding the rank, as Prometheus does', () => {
    // 10 observations at or below 0.01, 10 more in (0.01, 0.1].
    const buckets = new Map([[0.01, 10], [0.1, 20], [Infinity, 20]]);
    expect(histogramQuantile(0.5, buckets)).toBeCloseTo(0.01);
    expect(histogramQuantile(0.75, buckets)).toBeCloseTo(0.055);
    expect(histogramQuantile(0.25, buckets)).toBeCloseTo(0.005);
    expect(histogramQuantile(0.5, new Map([[0.01, 0], [Infinity, 0]]))).toBeNull();
    expect(histogramQuantile(0.99, new Map([[0.01, 1], [Infinity, 5]]))).toBe(0.01);
  });
});

describe('metricsDashboardSource', () => {
  it('reports rates since the previous snapshot, windowed latency percentiles, quality and CTR intervals', async () => {
    let clock = 1_000_000;
    const metrics = createMetrics(new Registry());
    const source = metricsDashboardSource(metrics, { windowMs: 2000, now: () => clock });

    metrics.eventsIn.inc({ topic: 'events' }, 100);
    for (let i = 0; i < 100; i++) metrics.recommendLatency.observe({ variant: 'a' }, 0.2);
    const first = await source.snapshot();
    expect(first.rates).toEqual([{ topic: 'events', inPerSecond: 0, outPerSecond: 0, deadLetteredPerSecond: 0 }]);
    expect(first.latency.find((l) => l.name === 'recommend')?.p50Ms).toBeGreaterThan(100);

    clock += 1000;
    metrics.eventsIn.inc({ topic: 'events' }, 50);
    metrics.eventsDeadLettered.inc({ topic: 'events' }, 5);
    for (let i = 0; i < 100; i++) metrics.recommendLatency.observe({ variant: 'b' }, 0.003);
    await source.snapshot();
    clock += 1000;
    for (let i = 0; i < 100; i++) metrics.recommendLatency.observe({ variant: 'b' }, 0.003);
    clock += 1000;
    const third: DashboardSnapshot = await source.snapshot();
    expect(third.rates[0]).toEqual({ topic: 'events', inPerSecond: 0, outPerSecond: 0, deadLetteredPerSecond: 0 });
    const recommend = third.latency.find((l) => l.name === 'recommend')!;
    // The window is the change since the reading 2 s ago: only the last 100 observations, all 3 ms, are in it.
    expect(recommend.count).toBe(100);
    expect(recommend.p99Ms).toBeLessThanOrEqual(5);
    expect(recommend.p50Ms).toBeGreaterThan(2.5);

    metrics.setServingVersion('ftrl', 'v3');
    metrics.onlineAuc.set({ model: 'ftrl', version: 'v3' }, 0.71);
    metrics.featureFreshness.set({ kind: 'user' }, 1.5);
    metrics.consumerLag.set({ group: 'eddy-samples', topic: 'events', partition: '2' }, 42);
    metrics.abExposures.inc({ experiment: 'exp', variant: 'control' }, 400);
    metrics.abClicks.inc({ experiment: 'exp', variant: 'control' }, 40);
    clock += 500;
    metrics.eventsIn.inc({ topic: 'events' }, 10);
    metrics.samplesImpressions.inc({ outcome: 'positive' }, 3);
    metrics.samplesImpressions.inc({ outcome: 'missing_features' }, 1);
    metrics.samplesClosedEarly.inc(2);
    const fourth = await source.snapshot();
    expect(fourth.samples).toEqual([
      { outcome: 'positive', perSecond: 6 },
      { outcome: 'missing features', perSecond: 2 },
      { outcome: 'closed early', perSecond: 4 },
    ]);
    metrics.samplesImpressions.inc({ outcome: 'positive' }, 1);
    clock += 1000;
    expect((await source.snapshot()).samples).toEqual([
      { outcome: 'positive', perSecond: 1 },
      { outcome: 'missing features', perSecond: 0 },
      { outcome: 'closed early', perSecond: 0 },
    ]);
    expect(fourth.rates[0]!.inPerSecond).toBeCloseTo(20);
    expect(fourth.models).toEqual([{ model: 'ftrl', version: 'v3', auc: 0.71, logloss: null }]);
    expect(fourth.freshness).toEqual([{ kind: 'user', seconds: 1.5 }]);
    expect(fourth.lag).toEqual([{ group: 'eddy-samples', topic: 'events', partition: 2, lag: 42 }]);
    const [variant] = fourth.experiments[0]!.variants;
    expect(variant).toMatchObject({ name: 'control', exposures: 400, clicks: 40 });
    expect(variant!.ctr.value).toBeCloseTo(0.1);
    expect(variant!.ctr.low).toBeGreaterThan(0.07);
    expect(variant!.ctr.high).toBeLessThan(0.135);
    expect(JSON.parse(JSON.stringify(fourth))).toEqual(fourth);
  });
});

describe('dashboard plugin over HTTP', () => {
  it('streams snapshots as Server-Sent Events, and closing the server ends open streams', async () => {
    let calls = 0;
    const source = { snapshot: () => ({ ts: ++calls, rates: [], lag: [], latency: [], freshness: [], models: [], experiments: [], samples: [] }) };
    const app = await createHttpServer(idleService, { plugins: [dashboardPlugin(source, { intervalMs: 50 })] });
    await app.listen({ port: 0, host: '127.0.0.1' });
    const base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;

    const page = await fetch(`${base}/`);
    expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    expect(await page.text()).toContain('/dashboard/uplot.min.js');
    expect((await fetch(`${base}/dashboard/snapshot`)).status).toBe(200);

    const response = await fetch(`${base}/dashboard/events`);
    expect(response.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const reader = response.body!.getReader();
    let text = '';
    while ((text.match(/event: snapshot/g) ?? []).length < 3) text += new TextDecoder().decode((await reader.read()).value);
    const timestamps = [...text.matchAll(/data: (.*)\n/g)].map((m) => (JSON.parse(m[1]!) as DashboardSnapshot).ts);
    expect(timestamps.length).toBeGreaterThanOrEqual(3);
    expect(new Set(timestamps).size).toBe(timestamps.length);

    // A browser that leaves stops the ticking once no one watches.
    const second = new AbortController();
    const other = await fetch(`${base}/dashboard/events`, { signal: second.signal });
    await other.body!.getReader().read();
    second.abort();
    await reader.cancel();
    await new Promise((resolve) => setTimeout(resolve, 100));
    const callsWhenIdle = calls;
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(calls).toBe(callsWhenIdle);

    const third = await fetch(`${base}/dashboard/events`);
    const thirdReader = third.body!.getReader();
    let thirdText = '';
    while (!thirdText.includes('event: snapshot')) thirdText += new TextDecoder().decode((await thirdReader.read()).value);
    expect(calls).toBeGreaterThan(callsWhenIdle);

    const closed = app.close();
    let ended = false;
    while (!ended) ended = (await thirdReader.read()).done;
    await closed;
    const callsAfterClose = calls;
    await new Promise((resolve) => setTimeout(resolve, 150));
    expect(calls).toBe(callsAfterClose);
  });
});

describe('logging', () => {
  it('writes JSON lines with level names and bindings, redacting credentials', () => {
    const { stream, records } = lines();
    const logger = createLogger({ level: 'debug', bindings: { role: 'features' }, destination: stream });
    logger.debug({ req: { headers: { authorization: 'Bearer sesame' } } }, 'hello');
    expect(records).toEqual([expect.objectContaining({ level: 'debug', service: 'eddy', role: 'features', msg: 'hello', req: { headers: { authorization: '[redacted]' } } })]);
    expect(typeof records[0]!.time).toBe('string');
  });

  it('tags every request log line with the request id the client sent', async () => {
    const { stream, records } = lines();
    const app = await createHttpServer(idleService, { logger: httpLoggerOptions({ level: 'info', bindings: { role: 'serve' }, destination: stream }) });
    await app.inject({ method: 'GET', url: '/healthz', headers: { 'x-request-id': 'req-42', authorization: 'Bearer sesame' } });
    await app.close();
    const requestLines = records.filter((r) => r.reqId === 'req-42');
    expect(requestLines.length).toBeGreaterThanOrEqual(2);
    expect(requestLines.every((r) => r.role === 'serve' && typeof r.level === 'string')).toBe(true);
    expect(JSON.stringify(records)).not.toContain('sesame');
  });
});
