/**
 * `serve`: `POST /v1/recommend` under load, on the embedded default (`eddy all`: embedded log, in-memory feature
 * store) with a DeepFM-size ONNX ranker (the 40 default features as dense input, the hashed item id over 10,000 slots
 * as its one field, embedding dimension 8, MLP 256-128) scoring the 100 recalled candidates of every request.
 *
 * The server runs in this process; the load comes from a separate process (bench/_serve-load.ts), after seeding a
 * catalogue and behaviour for a few thousand users and a warm-up. `fixedRate` is an open-loop load at a fixed rate
 * whose latencies count from when each request was due; `max` is closed-loop at full speed. Both report the CPU the
 * generator itself spent per request (`generatorCpuUsPerRequest`), as it shares the server's cores. The top-level
 * rps, p50Ms, p99Ms and errors are the fixed-rate run's (the sustained-rate target), errors being non-2xx answers,
 * connection errors and timeouts.
 *
 * Options (`--key=value`): items (5000), users (3000), eventsPerUser (10), rate (1500), seconds (180, the fixed-rate
 * run), maxSeconds (10, the max run), pacedConnections (64), connections (16, for max), freshnessTrials (50),
 * pushDebounceMs (0: proactive pushes off), sloProbes (6), sloProbeSeconds (20), samplesMaxItems (the server's
 * EDDY_SAMPLES_MAX_ITEMS), samplesThread (the server's EDDY_SAMPLES_THREAD), logRetentionBytes (the server's
 * EDDY_LOG_RETENTION_BYTES), scorerThread (worker: where the ONNX ranker runs, `worker` or `main`), v8PoolSize (1, as
 * the image and `npm start` ship it: V8's threads for collections; the suite starts again under `--v8-pool-size`).
 *
 * Sustained means three minutes, not seconds: every request leaves ten impressions, which the embedded log keeps to
 * its retention (reached in about 7 s at this rate) and the samples job holds for its attribution window, so the
 * heaps grow through the run and their major collections come every 10-20 s. At about 67 s the join reaches its
 * bound of a million items, and from then on every impression leaves as a sample for the trainer: the heaviest state,
 * which a one-minute run never reached. `fixedRate.windowP99Ms` gives the p99 of each 10 s of the run.
 *
 * sustainedRps: the target rate when it meets p99 <= 20 ms with no errors; otherwise the highest rate a bisection
 * of `sloProbes` paced runs below it found meeting that (0 if none did).
 *
 * fixedRate.server: what the server's main thread went through during the fixed-rate run, where a latency tail comes
 * from: garbage-collection pauses (count, total and longest) and event-loop delay (p99 and max), the time a ready
 * callback waited for the thread; and `stageMeanUs`, the mean time a request spent in each serving stage (recall,
 * features, rank, rerank) from the server's `eddy_recommend_stage_seconds`. Rank includes the wait for the scoring
 * thread.
 *
 * freshnessP99Ms: a user the server has never seen asks for recommendations, then clicks the top item; from just
 * before `POST /v1/events` of the click, this process asks again in a tight loop until an answer reflects the click
 * (the clicked item, now in the user's history, is no longer recommended). Measured with the server otherwise idle.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { monitorEventLoopDelay, PerformanceObserver } from 'node:perf_hooks';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BenchSuite } from './run.js';
import type { LoadOptions, LoadResult } from './_serve-load.js';
import { exportOnnx } from '../models/rankers/export.js';
import { Ranker } from '../models/rankers/ranker.js';
import { mulberry32 } from '../models/random.js';
import { DEFAULT_FEATURE_NAMES } from '../operators/features/config.js';
import { startEddy, type RunningEddy } from '../pipelines/app.js';
import { loadConfig } from '../pipelines/config.js';

const here = dirname(fileURLToPath(import.meta.url));
const GENRES = ['drama', 'comedy', 'horror', 'scifi', 'romance', 'thriller', 'documentary', 'animation'];
const POST_BATCH = 1000;
/** The latency objective of the target: p99 at or under this many ms. */
const SLO_P99_MS = 20;

interface Recommended {
  readonly items: { readonly itemId: string }[];
}

function percentile(values: readonly number[], q: number): number {
  const sorted = Float64Array.from(values).sort();
  return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!;
}

const round = (x: number, digits = 2) => Math.round(x * 10 ** digits) / 10 ** digits;

/** A keep-alive JSON client for the calls this process makes itself (seeding, freshness probes). */
function jsonClient(base: string) {
  const agent = new Agent({ keepAlive: true, maxSockets: 4 });
  return {
    post<T>(path: string, body: unknown): Promise<{ status: number; body: T }> {
      const payload = JSON.stringify(body);
      return new Promise((resolve, reject) => {
        const req = request(
          new URL(path, base),
          { agent, method: 'POST', headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } },
          (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (chunk: Buffer) => chunks.push(chunk));
            res.on('end', () => {
              try {
                resolve({ status: res.statusCode ?? 0, body: JSON.parse(Buffer.concat(chunks).toString('utf8')) as T });
              } catch (error) {
                reject(new Error(`POST ${path}: answer is not JSON`, { cause: error }));
              }
            });
            res.on('error', reject);
          },
        );
        req.on('error', (error) => reject(new Error(`POST ${path} failed`, { cause: error })));
        req.end(payload);
      });
    },
    close: () => agent.destroy(),
  };
}

type Client = ReturnType<typeof jsonClient>;

/** Per serving stage, the request count and total seconds the server's `eddy_recommend_stage_seconds` holds. */
async function stageTotals(base: string): Promise<Map<string, { count: number; seconds: number }>> {
  const text = await (await fetch(new URL('/metrics', base))).text();
  const totals = new Map<string, { count: number; seconds: number }>();
  for (const [, part, stage, value] of text.matchAll(/^eddy_recommend_stage_seconds_(sum|count)\{stage="(\w+)"\} (\S+)$/gm)) {
    const total = totals.get(stage!) ?? { count: 0, seconds: 0 };
    if (part === 'sum') total.seconds = Number(value);
    else total.count = Number(value);
    totals.set(stage!, total);
  }
  return totals;
}

/** Mean µs per request in each stage between two `stageTotals`. */
function stageMeansUs(before: Map<string, { count: number; seconds: number }>, after: Map<string, { count: number; seconds: number }>): Record<string, number> {
  const means: Record<string, number> = {};
  for (const [stage, { count, seconds }] of after) {
    const earlier = before.get(stage) ?? { count: 0, seconds: 0 };
    if (count > earlier.count) means[stage] = Math.round(((seconds - earlier.seconds) / (count - earlier.count)) * 1e6);
  }
  return means;
}

async function postAll(client: Client, events: readonly unknown[]): Promise<void> {
  for (let i = 0; i < events.length; i += POST_BATCH) {
    const { status, body } = await client.post<{ accepted: number; rejected: unknown[] }>('/v1/events', events.slice(i, i + POST_BATCH));
    if (status < 200 || status >= 300 || body.rejected.length > 0) throw new Error(`seeding rejected: ${status} ${JSON.stringify(body).slice(0, 300)}`);
  }
}

async function waitUntil(what: string, probe: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!probe()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Waits until `count` has not changed for `quietMs`. */
async function waitForQuiet(count: () => number, quietMs: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = count();
  let since = Date.now();
  while (Date.now() - since < quietMs) {
    if (Date.now() > deadline) throw new Error('timed out waiting for the pipelines to settle');
    await new Promise((resolve) => setTimeout(resolve, 50));
    const now = count();
    if (now !== last) {
      last = now;
      since = Date.now();
    }
  }
}

/** A catalogue of `items` items over eight genres, and `perUser` views and clicks for each of `users` users, mostly in two favourite genres. */
function seedEvents(items: number, users: number, perUser: number) {
  const random = mulberry32(7);
  const now = Date.now();
  const catalogue = Array.from({ length: items }, (_, n) => ({
    type: 'item',
    itemId: `i${n}`,
    ts: now - 86_400_000,
    fields: { genres: [GENRES[n % GENRES.length]!], title: `Item ${n}` },
  }));
  const behaviour = [];
  for (let u = 0; u < users; u++) {
    const favourites = [u % GENRES.length, (u * 3 + 1) % GENRES.length];
    for (let k = 0; k < perUser; k++) {
      const genre = random() < 0.8 ? favourites[k % 2]! : Math.floor(random() * GENRES.length);
      // Squaring skews choices toward low indices, so some items are popular and most are not.
      const slot = Math.floor(random() ** 2 * Math.floor(items / GENRES.length));
      behaviour.push({
        id: `seed-${u}-${k}`,
        type: random() < 0.25 ? 'click' : 'view',
        userId: `u${u}`,
        itemId: `i${slot * GENRES.length + genre}`,
        ts: now - 3_600_000 + Math.floor(random() * 3_500_000),
      });
    }
  }
  behaviour.sort((a, b) => a.ts - b.ts);
  return { catalogue, behaviour };
}

/** Garbage-collection pauses and event-loop delay on this thread while `work` runs. */
async function watchMainThread<T>(work: () => Promise<T>) {
  const pauses: number[] = [];
  const observer = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) pauses.push(entry.duration);
  });
  observer.observe({ entryTypes: ['gc'] });
  const delay = monitorEventLoopDelay({ resolution: 1 });
  delay.enable();
  try {
    const result = await work();
    return {
      result,
      server: {
        gcPauses: pauses.length,
        gcTotalMs: round(pauses.reduce((a, b) => a + b, 0), 1),
        gcMaxMs: round(Math.max(0, ...pauses), 1),
        gcOver5Ms: pauses.filter((ms) => ms > 5).length,
        eventLoopDelayP99Ms: round(delay.percentile(99) / 1e6, 1),
        eventLoopDelayMaxMs: round(delay.max / 1e6, 1),
      },
    };
  } finally {
    observer.disconnect();
    delay.disable();
  }
}

function runLoad(options: LoadOptions): Promise<LoadResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', join(here, '_serve-load.ts'), JSON.stringify(options)], {
      cwd: join(here, '..'),
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString('utf8')));
    child.on('error', (error) => reject(new Error('cannot start the load generator', { cause: error })));
    child.on('exit', (code) => {
      const last = out.trim().split('\n').pop() ?? '';
      if (code !== 0) return reject(new Error(`load generator exited with ${code}: ${out.slice(-500)}`));
      try {
        resolve(JSON.parse(last) as LoadResult);
      } catch (error) {
        reject(new Error(`load generator printed no result: ${out.slice(-500)}`, { cause: error }));
      }
    });
  });
}

/** Milliseconds from posting a fresh user's click on their top item until an answer no longer recommends it. */
async function freshnessTrial(client: Client, userId: string, timeoutMs: number): Promise<number> {
  const before = await client.post<Recommended>('/v1/recommend', { userId, count: 10 });
  const clicked = before.body.items[0]?.itemId;
  if (!clicked) throw new Error(`no recommendations for ${userId}`);
  const started = performance.now();
  const posted = await client.post<{ accepted: number }>('/v1/events', { id: `${userId}-click`, type: 'click', userId, itemId: clicked, ts: Date.now() });
  if (posted.body.accepted !== 1) throw new Error(`click of ${userId} was not accepted`);
  for (;;) {
    const { body } = await client.post<Recommended>('/v1/recommend', { userId, count: 10 });
    const elapsed = performance.now() - started;
    if (!body.items.some((item) => item.itemId === clicked)) return elapsed;
    if (elapsed > timeoutMs) return Infinity;
  }
}

/** What the Dockerfile's NODE_OPTIONS and `npm start` pass. */
const SHIPPED_V8_POOL_SIZE = 1;

export const nodeFlags: BenchSuite['nodeFlags'] = (args) => [`--v8-pool-size=${Number(args.v8PoolSize ?? SHIPPED_V8_POOL_SIZE)}`];

export const run: BenchSuite['run'] = async ({ args, log }) => {
  const items = Number(args.items ?? 5000);
  const users = Number(args.users ?? 3000);
  const perUser = Number(args.eventsPerUser ?? 10);
  const rate = Number(args.rate ?? 1500);
  const durationMs = Number(args.seconds ?? 180) * 1000;
  const maxDurationMs = Number(args.maxSeconds ?? 10) * 1000;
  const pacedConnections = Number(args.pacedConnections ?? 64);
  const maxConnections = Number(args.connections ?? 16);
  const trials = Number(args.freshnessTrials ?? 50);
  const sloProbes = Number(args.sloProbes ?? 6);
  const sloProbeMs = Number(args.sloProbeSeconds ?? 20) * 1000;
  const timeoutMs = 10_000;
  // Off by default: with pushes on, the seeded behaviour of every user makes one refreshed list per user after the
  // debounce, thousands of recommendations at once before the load starts. The load itself (requests, impressions)
  // triggers no pushes either way.
  const pushDebounceMs = args.pushDebounceMs ?? '0';

  const dir = mkdtempSync(join(tmpdir(), 'eddy-serve-bench-'));
  const ranker = new Ranker({
    kind: 'deepfm',
    denseFeatures: DEFAULT_FEATURE_NAMES,
    categoricalFields: [{ name: 'item', vocabularySize: 10_000 }],
    embeddingDim: 8,
    hidden: [256, 128],
  });
  const modelFile = join(dir, 'deepfm.onnx');
  const model = exportOnnx(ranker);
  writeFileSync(modelFile, model);
  log(`model: deepfm, ${DEFAULT_FEATURE_NAMES.length} dense features, item field x 10000, dim 8, MLP 256-128, ${(model.length / 1e6).toFixed(2)} MB`);

  let eddy: RunningEddy | undefined;
  let client: Client | undefined;
  try {
    const config = loadConfig({
      PORT: '0',
      HOST: '127.0.0.1',
      LOG_LEVEL: 'warn',
      EDDY_DATA_DIR: '',
      EDDY_MODEL_FILE: modelFile,
      EDDY_PUSH_DEBOUNCE_MS: pushDebounceMs,
      EDDY_SCORER_THREAD: args.scorerThread ?? 'worker',
      ...(args.samplesMaxItems ? { EDDY_SAMPLES_MAX_ITEMS: args.samplesMaxItems } : {}),
      ...(args.samplesThread ? { EDDY_SAMPLES_THREAD: args.samplesThread } : {}),
      ...(args.logRetentionBytes ? { EDDY_LOG_RETENTION_BYTES: args.logRetentionBytes } : {}),
    });
    eddy = await startEddy({
      config,
      role: 'all',
      onError: (error) => log(`background work failed: ${String((error as Error)?.stack ?? error)}`),
    });
    const url = eddy.url!;
    client = jsonClient(url);
    const runners = eddy.runners;
    const recordsOf = (name: string) => runners.get(name)?.stats.records ?? 0;

    const { catalogue, behaviour } = seedEvents(items, users, perUser);
    const seeding = performance.now();
    const progress = setInterval(() => log(`  seeding: features ${recordsOf('features')}, serving-state ${recordsOf('serving-state')} records in`), 10_000);
    await postAll(client, catalogue);
    await postAll(client, behaviour);
    const seeded = catalogue.length + behaviour.length;
    await waitUntil('the pipelines to take in the seed', () => recordsOf('features') >= seeded && recordsOf('serving-state') >= seeded, 120_000);
    // Seeded behaviour makes the proactive pusher refresh each seeded user once its debounce passes; the load starts
    // after that burst, and the impressions it logged, are taken in.
    await new Promise((resolve) => setTimeout(resolve, config.pushDebounceMs + 500));
    await waitForQuiet(() => recordsOf('features') + recordsOf('serving-state'), 1000, 300_000);
    clearInterval(progress);
    log(`seeded ${catalogue.length} items and ${behaviour.length} events of ${users} users in ${round((performance.now() - seeding) / 1000, 1)} s`);

    // Asking for 100 items shows that recall finds the 100 candidates each request of the load has ranked.
    const probe = await client.post<Recommended & { model: string }>('/v1/recommend', { userId: 'u1', count: 100 });
    if (probe.status !== 200 || !probe.body.model.startsWith('onnx@')) throw new Error(`recommend is not served by the ONNX ranker: ${JSON.stringify(probe.body).slice(0, 300)}`);
    if (probe.body.items.length < 100) log(`warning: only ${probe.body.items.length} candidates recalled for u1`);

    const common = { url, users, count: 10, timeoutMs };
    const warmUp = await runLoad({ ...common, mode: 'paced', rate: Math.min(rate, 500), durationMs: 3000, connections: pacedConnections });
    log(`warm-up: ${warmUp.ok} requests, p99 ${warmUp.p99Ms} ms`);
    // The impressions the warm-up logged are taken in first, so the clicks do not queue behind them.
    await waitForQuiet(() => recordsOf('features') + recordsOf('serving-state'), 500, 300_000);

    const freshness: number[] = [];
    for (let t = 0; t < trials; t++) {
      freshness.push(await freshnessTrial(client, `fresh-${t}-${Date.now()}`, 5000));
      // A random pause, so the clicks do not fall in step with the pipelines' polling.
      await new Promise((resolve) => setTimeout(resolve, 5 + Math.random() * 20));
    }
    const freshnessP99Ms = round(percentile(freshness, 0.99));
    log(`freshness (${trials} clicks): p50 ${round(percentile(freshness, 0.5))} ms, p99 ${freshnessP99Ms} ms, max ${round(Math.max(...freshness))} ms`);

    const loadBefore = loadavg()[0]!;
    const stagesBefore = await stageTotals(url);
    const { result: fixedRate, server } = await watchMainThread(() => runLoad({ ...common, mode: 'paced', rate, durationMs, connections: pacedConnections }));
    const stageMeanUs = stageMeansUs(stagesBefore, await stageTotals(url));
    log(`fixed rate ${rate}/s: ${fixedRate.rps} req/s, p50 ${fixedRate.p50Ms} ms, p99 ${fixedRate.p99Ms} ms, non-2xx ${fixedRate.non2xx}, errors ${fixedRate.errors}, timeouts ${fixedRate.timeouts}`);
    log(`  p99 per 10 s: ${fixedRate.windowP99Ms!.map((p) => `${p} ms`).join(', ')}`);
    log(
      `  server: ${server.gcPauses} GC pauses (${server.gcOver5Ms} over 5 ms, longest ${server.gcMaxMs} ms, ${server.gcTotalMs} ms in all); ` +
        `event-loop delay p99 ${server.eventLoopDelayP99Ms} ms, max ${server.eventLoopDelayMaxMs} ms; mean per request (µs): ` +
        Object.entries(stageMeanUs).map(([stage, us]) => `${stage} ${us}`).join(', '),
    );
    // When the target rate misses the latency objective, the highest rate that meets it says how far off it is:
    // a bisection over paced rates, each run long enough for a queue to show.
    let sustained: { rate: number; p99Ms: number } | undefined;
    if (fixedRate.p99Ms > SLO_P99_MS || fixedRate.non2xx + fixedRate.errors + fixedRate.timeouts > 0) {
      let low = 0;
      let high = rate;
      for (let probe = 0; probe < sloProbes; probe++) {
        const trial = Math.round((low + high) / 2 / 10) * 10;
        if (trial <= low || trial >= high) break;
        await waitForQuiet(() => recordsOf('features') + recordsOf('serving-state'), 500, 300_000);
        const result = await runLoad({ ...common, mode: 'paced', rate: trial, durationMs: sloProbeMs, connections: pacedConnections });
        const met = result.p99Ms <= SLO_P99_MS && result.non2xx + result.errors + result.timeouts === 0;
        log(`  ${trial}/s for ${sloProbeMs / 1000} s: p99 ${result.p99Ms} ms ${met ? 'meets' : 'misses'} ${SLO_P99_MS} ms`);
        if (met) {
          low = trial;
          sustained = { rate: trial, p99Ms: result.p99Ms };
        } else high = trial;
      }
      log(`highest rate found with p99 <= ${SLO_P99_MS} ms: ${sustained ? `${sustained.rate}/s (p99 ${sustained.p99Ms} ms)` : 'none'}`);
    }
    await waitForQuiet(() => recordsOf('features') + recordsOf('serving-state'), 500, 300_000);
    const max = await runLoad({ ...common, mode: 'max', durationMs: maxDurationMs, connections: maxConnections });
    log(`max (${maxConnections} connections): ${max.rps} req/s, p50 ${max.p50Ms} ms, p99 ${max.p99Ms} ms, non-2xx ${max.non2xx}, errors ${max.errors}, timeouts ${max.timeouts}`);
    const loadAfter = loadavg()[0]!;
    log(`load average (1 min) ${round(loadBefore)} before, ${round(loadAfter)} after the load runs, on ${availableParallelism()} cores`);

    return {
      suite: 'serve',
      rps: fixedRate.rps,
      p50Ms: fixedRate.p50Ms,
      p99Ms: fixedRate.p99Ms,
      errors: fixedRate.non2xx + fixedRate.errors + fixedRate.timeouts,
      freshnessP99Ms,
      sustainedRps: fixedRate.p99Ms <= SLO_P99_MS && fixedRate.non2xx + fixedRate.errors + fixedRate.timeouts === 0 ? rate : (sustained?.rate ?? 0),
      freshnessP50Ms: round(percentile(freshness, 0.5)),
      fixedRate: { ...fixedRate, server: { ...server, stageMeanUs } },
      max: { ...max, errorsTotal: max.non2xx + max.errors + max.timeouts },
      candidates: 100,
      seed: { items: catalogue.length, users, events: behaviour.length },
      loadAverage: { before: round(loadBefore), after: round(loadAfter), cores: availableParallelism() },
      nodeFlags: process.execArgv.filter((flag) => flag.startsWith('--v8')),
    };
  } finally {
    client?.close();
    await eddy?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
};
