import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EmbeddedLog } from '../connectors/embedded-log.js';
import type { LogRecord } from '../connectors/log.js';
import { startEddy, type RunningEddy } from '../pipelines/app.js';
import { loadConfig } from '../pipelines/config.js';
import type { RecommendationResponse } from '../schema/events.js';
import { decodeServedFeatures } from '../operators/features/feature-log.js';

const GENRES = ['drama', 'comedy', 'horror', 'scifi'];
const T0 = Date.now() - 3_600_000;

async function waitFor<T>(probe: () => T | undefined | Promise<T | undefined>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

async function readTopic(log: EmbeddedLog, topic: string): Promise<LogRecord[]> {
  const consumer = log.consumer({ group: `probe-${Math.random()}`, topics: [topic], pollTimeoutMs: 20 });
  const records: LogRecord[] = [];
  for (;;) {
    const batch = await consumer.next();
    if (!batch) break;
    records.push(...batch.records);
  }
  await consumer.close();
  return records;
}

describe('eddy all (embedded)', () => {
  let eddy: RunningEddy;
  let log: EmbeddedLog;
  let url: string;
  const post = async (path: string, body: unknown) => {
    const response = await fetch(`${url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    return { status: response.status, body: (await response.json()) as any };
  };

  beforeAll(async () => {
    const dir = mkdtempSync(join(tmpdir(), 'eddy-app-'));
    const experiments = join(dir, 'experiments.json');
    writeFileSync(experiments, JSON.stringify([{ id: 'ranker-test', variants: [{ name: 'control', share: 1 }, { name: 'treatment', share: 1 }] }]));
    log = new EmbeddedLog();
    eddy = await startEddy({
      config: loadConfig({ PORT: '0', HOST: '127.0.0.1', EDDY_DATA_DIR: '', EDDY_PUSH_DEBOUNCE_MS: '50', EDDY_EXPLORATION_SHARE: '0', EDDY_EXPERIMENTS_FILE: experiments }),
      role: 'all',
      log,
    });
    url = eddy.url!;
    const items = Array.from({ length: 80 }, (_, i) => ({ type: 'item', itemId: `m${i}`, ts: T0, fields: { genres: [GENRES[i % 4]!], title: `Movie ${i}` } }));
    expect((await post('/v1/events', items)).body.accepted).toBe(80);
    // Background traffic: many users watch across all genres, so popularity alone has no genre.
    const views = [];
    for (let u = 0; u < 40; u++) for (let k = 0; k < 6; k++) views.push({ id: `v${u}-${k}`, type: 'view', userId: `bg${u}`, itemId: `m${(u * 7 + k * 13) % 80}`, ts: T0 + u * 1000 + k });
    expect((await post('/v1/events', views)).body.accepted).toBe(views.length);
    await waitFor(() => (eddy.runners.get('serving-state')!.stats.records >= 80 + views.length ? true : undefined));
  });

  afterAll(() => eddy.stop());

  it('answers with ranked items, each tagged with its source, and explains them when asked', async () => {
    const { status, body } = await post('/v1/recommend', { userId: 'newcomer', count: 5, explain: true });
    expect(status).toBe(200);
    expect(body.items).toHaveLength(5);
    for (const item of body.items) {
      expect(item.source).toEqual(expect.any(String));
      expect(item.explain).toMatchObject({ rankerScore: expect.any(Number), adjustments: expect.any(Array), features: expect.any(Object) });
    }
    expect(body.model).toMatch(/^ftrl@/);
    expect(body.variant).toMatch(/^ranker-test\/(control|treatment)$/);
  });

  it('shifts a user toward a genre within milliseconds of their clicks on it', async () => {
    const userId = 'fan';
    const share = (response: { items: { itemId: string }[] }) =>
      response.items.filter((i) => GENRES[Number(i.itemId.slice(1)) % 4] === 'horror').length / response.items.length;
    const before = (await post('/v1/recommend', { userId, count: 10 })).body;
    const clicks = [2, 6, 10, 14].map((n, k) => ({ id: `fan-${k}`, type: 'click', userId, itemId: `m${n}`, ts: Date.now() + k }));
    const clickedAt = performance.now();
    expect((await post('/v1/events', clicks)).body.accepted).toBe(4);
    const after = await waitFor(async () => {
      const response = (await post('/v1/recommend', { userId, count: 10 })).body;
      return share(response) > share(before) + 0.2 ? response : undefined;
    });
    const freshnessMs = performance.now() - clickedAt;
    expect(share(after)).toBeGreaterThanOrEqual(0.5);
    expect(freshnessMs).toBeLessThan(2000);
  });

  it('never returns consumed, excluded or filtered-out items', async () => {
    const userId = 'picky';
    await post('/v1/events', [0, 1, 2].map((n) => ({ id: `p${n}`, type: 'purchase', userId, itemId: `m${n}`, ts: Date.now() })));
    await waitFor(async () => ((await post('/v1/recommend', { userId, count: 40 })).body.items.some((i: { itemId: string }) => ['m0', 'm1', 'm2'].includes(i.itemId)) ? undefined : true));
    for (let trial = 0; trial < 5; trial++) {
      const exclude = [`m${4 + trial}`, `m${9 + trial}`];
      const { body } = await post('/v1/recommend', { userId, count: 30, filters: { excludeItems: exclude, fields: { genres: 'comedy' } } });
      expect(body.items.length).toBeGreaterThan(0);
      for (const item of body.items) {
        expect(['m0', 'm1', 'm2', ...exclude]).not.toContain(item.itemId);
        expect(GENRES[Number(item.itemId.slice(1)) % 4]).toBe('comedy');
      }
    }
  });

  it('logs what it served as impressions with positions, and the features they were scored with', async () => {
    const { body } = await post('/v1/recommend', { userId: 'logged', count: 3, requestId: 'req-logged' });
    const impressions = await waitFor(async () => {
      const found = (await readTopic(log, 'events')).map((r) => JSON.parse(r.value)).filter((e) => e.requestId === 'req-logged');
      return found.length === 3 ? found : undefined;
    });
    expect(impressions.map((e) => [e.type, e.itemId, e.position])).toEqual(body.items.map((i: { itemId: string }, p: number) => ['impression', i.itemId, p]));
    const features = (await readTopic(log, 'feature-log')).map((r) => JSON.parse(r.value)).find((e) => e.requestId === 'req-logged');
    const served = decodeServedFeatures(features);
    expect(served.items.map((i) => i.itemId)).toEqual(body.items.map((i: { itemId: string }) => i.itemId));
    expect(served.items[0]!.values).toHaveLength(served.names.length);
  });

  it('answers recommendation requests from the log on the recommendations topic', async () => {
    await log.append('recommendation-requests', [
      { key: 'via-log', value: JSON.stringify({ requestId: 'log-1', userId: 'via-log', count: 4 }) },
      { key: 'via-log', value: '{"requestId": 7}' },
    ]);
    const response = await waitFor(async () =>
      (await readTopic(log, 'recommendations')).map((r) => JSON.parse(r.value) as RecommendationResponse).find((r) => r.requestId === 'log-1'),
    );
    expect(response.items).toHaveLength(4);
    const letters = await waitFor(async () => {
      const found = (await readTopic(log, 'dead-letters')).map((r) => JSON.parse(r.value)).filter((l) => l.source.topic === 'recommendation-requests');
      return found.length > 0 ? found : undefined;
    });
    expect(letters[0].reason).toMatch(/requestId/);
  });

  it('pushes a refreshed list after a user acts', async () => {
    await post('/v1/events', { id: 'push-1', type: 'click', userId: 'pushed', itemId: 'm3', ts: Date.now() });
    const push = await waitFor(async () =>
      (await readTopic(log, 'recommendations')).map((r) => JSON.parse(r.value)).find((r) => r.userId === 'pushed' && r.push === true),
    );
    expect(push.items.length).toBeGreaterThan(0);
  });

  it('reports the experiment with exposures per variant', async () => {
    const report = (await (await fetch(`${url}/v1/experiments/ranker-test`)).json()) as any;
    expect(report.variants.map((v: { name: string }) => v.name)).toEqual(['control', 'treatment']);
    expect(report.variants.reduce((s: number, v: { exposures: number }) => s + v.exposures, 0)).toBeGreaterThan(5);
    expect(report.srm).toMatchObject({ mismatch: expect.any(Boolean) });
  });

  it('times every serving stage in /metrics', async () => {
    const before = await stageCounts();
    await post('/v1/recommend', { userId: 'timed', count: 5 });
    const after = await stageCounts();
    // Proactive pushes may serve too, so at least this request, and every request in all four stages.
    expect(after.recall! - (before.recall ?? 0)).toBeGreaterThanOrEqual(1);
    for (const stage of ['features', 'rank', 'rerank']) expect(after[stage]).toBe(after.recall);
  });

  async function stageCounts(): Promise<Record<string, number>> {
    const text = await (await fetch(`${url}/metrics`)).text();
    return Object.fromEntries([...text.matchAll(/^eddy_recommend_stage_seconds_count\{stage="(\w+)"\} (\d+)$/gm)].map((m) => [m[1]!, Number(m[2])]));
  }

  it('describes the pipelines it runs', () => {
    const names = eddy.pipelines.map((p) => p.describe().pipeline);
    expect(names).toEqual(expect.arrayContaining(['serving-state', 'requests']));
  });
});

// The samples job and the trainer run on a thread of their own by default, reporting their statistics back, and on
// the event loop with EDDY_SAMPLES_THREAD=main: the same behaviour either way.
describe.each(['worker', 'main'] as const)('eddy all at the samples job bound, the job on %s', (thread) => {
  let eddy: RunningEddy;

  beforeAll(async () => {
    eddy = await startEddy({
      config: loadConfig({ PORT: '0', HOST: '127.0.0.1', EDDY_DATA_DIR: '', EDDY_PUSH_DEBOUNCE_MS: '0', EDDY_EXPLORATION_SHARE: '0', EDDY_SAMPLES_MAX_ITEMS: '30', EDDY_SAMPLES_THREAD: thread }),
      role: 'all',
      log: new EmbeddedLog(),
    });
  });

  afterAll(() => eddy.stop());

  it('holds at most EDDY_SAMPLES_MAX_ITEMS items, labels the oldest impressions early, and counts them in /metrics', async () => {
    const post = async (path: string, body: unknown) =>
      (await fetch(`${eddy.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })).json() as Promise<any>;
    const items = Array.from({ length: 20 }, (_, i) => ({ type: 'item', itemId: `m${i}`, ts: T0, fields: { genres: [GENRES[i % 4]!] } }));
    expect((await post('/v1/events', items)).accepted).toBe(20);
    await waitFor(() => (eddy.runners.get('serving-state')!.stats.records >= 20 ? true : undefined));
    // Three impressions and a click per request go into the join (their served features are attached to the
    // impressions): 4 items, against a bound of 30.
    for (let r = 0; r < 12; r++) {
      const response = await post('/v1/recommend', { userId: `bound-${r}`, count: 3 });
      expect((await post('/v1/events', { id: `bound-click-${r}`, type: 'click', userId: `bound-${r}`, itemId: response.items[0].itemId, ts: Date.now() })).accepted).toBe(1);
    }
    const metrics = async () => {
      const text = await (await fetch(`${eddy.url}/metrics`)).text();
      const value = (pattern: RegExp) => Number(text.match(pattern)?.[1] ?? 0);
      const outcomes = ['positive', 'negative', 'skipped', 'missing_features'].map((o) => value(new RegExp(`^eddy_samples_impressions_total\\{outcome="${o}"\\} (\\d+)$`, 'm')));
      return {
        closedEarly: value(/^eddy_samples_closed_early_total (\d+)$/m),
        labelled: outcomes.reduce((a, b) => a + b, 0),
        held: value(/^eddy_samples_join_items (\d+)$/m),
      };
    };
    // The window is 30 minutes: every impression labelled so far was labelled early, so the two counts agree. (Which
    // outcome each gets depends on timing here: a bound this small is below the served features and clicks of the
    // last five seconds, so impressions may leave before their click; the samples tests check labels at the bound.)
    const seen = await waitFor(async () => {
      const m = await metrics();
      // 36 impressions cannot all be held among 30 items, whatever else has left by then.
      return m.closedEarly >= 6 && m.labelled === m.closedEarly ? m : undefined;
    });
    // Without the setting the join would hold up to all 48 items it was given.
    expect(seen.held).toBeLessThanOrEqual(30);
    expect(eddy.pipelines.map((p) => p.describe().pipeline)).toContain('samples');
    expect(eddy.runners.get('samples')!.stats.records).toBeGreaterThanOrEqual(36);
    expect(eddy.runners.get('samples')!.failed).toBe(false);
  });
});

describe.each(['worker', 'main'] as const)('eddy all learning online, the jobs on %s', (thread) => {
  let eddy: RunningEddy;
  const AUTH = { authorization: 'Bearer ops' };
  const post = async (path: string, body: unknown) =>
    (await fetch(`${eddy.url}${path}`, { method: 'POST', headers: { ...AUTH, 'content-type': 'application/json' }, body: JSON.stringify(body) })).json() as Promise<any>;
  const get = async (path: string) => (await fetch(`${eddy.url}${path}`, { headers: AUTH })).json() as Promise<any>;

  beforeAll(async () => {
    eddy = await startEddy({
      config: loadConfig({
        PORT: '0',
        HOST: '127.0.0.1',
        EDDY_DATA_DIR: '',
        EDDY_PUSH_DEBOUNCE_MS: '0',
        EDDY_EXPLORATION_SHARE: '0',
        EDDY_ATTRIBUTION_WINDOW_MS: '1000',
        EDDY_PUBLISH_INTERVAL_MS: '100',
        EDDY_SAMPLES_THREAD: thread,
        EDDY_AUTH_TOKEN: 'ops',
      }),
      role: 'all',
      log: new EmbeddedLog(),
    });
  });

  afterAll(() => eddy.stop());

  it('learns the served impressions and clicks, serves the versions it publishes, and answers the model admin API', { timeout: 90_000 }, async () => {
    const items = Array.from({ length: 40 }, (_, i) => ({ type: 'item', itemId: `m${i}`, ts: T0, fields: { genres: [GENRES[i % 4]!] } }));
    expect((await post('/v1/events', items)).accepted).toBe(40);
    await waitFor(() => (eddy.runners.get('serving-state')!.stats.records >= 40 ? true : undefined));
    const labelled = async () => {
      const text = await (await fetch(`${eddy.url}/metrics`)).text();
      const [positive, negative] = ['positive', 'negative'].map((o) => Number(text.match(new RegExp(`^eddy_samples_impressions_total\\{outcome="${o}"\\} (\\d+)$`, 'm'))?.[1] ?? 0));
      return { positive: positive!, negative: negative! };
    };
    // Ten users are served; half click their top item, half click nothing. An event `closeAfterMs` later closes every
    // attribution window once the partitions without it fall idle (the samples job's idleMs, 5 s).
    const round = async (first: number, closeAfterMs: number) => {
      const served: RecommendationResponse[] = [];
      for (let u = first; u < first + 10; u++) served.push(await post('/v1/recommend', { requestId: `req-${u}`, userId: `u${u}`, count: 5 }));
      const clicks = served
        .filter((_, u) => u % 2 === 0)
        .map((r) => ({ id: `click-${r.userId}`, type: 'click', userId: r.userId, itemId: r.items[0]!.itemId, ts: Date.now(), requestId: r.requestId, position: 0 }));
      const later = { id: `later-${first}`, type: 'view', userId: 'late-user', itemId: 'm0', ts: Date.now() + closeAfterMs };
      expect((await post('/v1/events', [...clicks, later])).accepted).toBe(6);
    };

    await round(0, 3_600_000);
    // Every sample the samples job emits (impressions labelled positive or negative) is learned into a serving version.
    const listed = await waitFor(async () => {
      const { positive, negative } = await labelled();
      const { versions } = (await get('/v1/models')) as { versions: { model: string; version: string; samplesSeen: number; status: string }[] };
      return positive > 0 && negative > 0 ? versions.find((v) => v.samplesSeen === positive + negative && v.status === 'serving') : undefined;
    }, 30_000);
    expect(listed.model).toBe('ranker');
    expect(eddy.runners.get('trainer')!.stats.records).toBe(listed.samplesSeen);
    expect(eddy.runners.get('trainer')!.failed).toBe(false);
    expect(eddy.pipelines.map((p) => p.describe().pipeline)).toContain('trainer');
    // Serving follows the published version.
    await waitFor(async () => ((await post('/v1/recommend', { userId: 'after-learning', count: 3 })).model === `ftrl@${listed.version}` ? true : undefined));

    expect(await post('/v1/models/ranker/pin', { version: listed.version })).toMatchObject({ model: 'ranker', version: listed.version, pinned: true });
    const unknown = await fetch(`${eddy.url}/v1/models/ranker/pin`, { method: 'POST', headers: { ...AUTH, 'content-type': 'application/json' }, body: JSON.stringify({ version: 'v-none' }) });
    expect(unknown.status).toBe(404);
    expect(await unknown.json()).toMatchObject({ field: 'version' });

    // The pinned version keeps serving while the trainer scores the next samples with it before learning them: its
    // online quality reaches /metrics, with the version as a label.
    await round(10, 7_200_000);
    await waitFor(async () => ((await (await fetch(`${eddy.url}/metrics`)).text()).match(new RegExp(`^eddy_model_online_logloss\\{model="ranker",version="${listed.version}"\\} [0-9.]+$`, 'm')) ? true : undefined), 30_000);
    expect(await post('/v1/models/ranker/unpin', {})).toMatchObject({ serving: { model: 'ranker', pinned: false } });
  });
});
