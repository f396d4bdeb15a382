/**
 * The load generator of the `serve` suite, run as its own process so its CPU is not the server's event loop. It
 * takes one JSON argument and prints one JSON line of figures.
 *
 * `paced` is an open-loop generator at a fixed rate: request n is due at start + n / rate, is sent then over a pool
 * of keep-alive connections (undici) whether or not earlier ones have answered, and its latency counts from when it was due,
 * so a stalled server is charged for the requests it delayed (no coordinated omission). autocannon's own rate limit
 * lets each connection send its per-second quota back to back and then idle until the next second, which measures
 * bursts, not a sustained rate. `max` is autocannon closed-loop: every connection sends its next request as soon as
 * the previous one is answered.
 */
import { createRequire } from 'node:module';
import { Pool } from 'undici';

export interface LoadOptions {
  readonly mode: 'paced' | 'max';
  readonly url: string;
  readonly durationMs: number;
  readonly connections: number;
  /** Requests per second (`paced` only). */
  readonly rate?: number;
  /** Seeded users `u0` .. `u<users-1>` to ask for; one request in ten is for a user the server has never seen. */
  readonly users: number;
  /** Items per recommendation. */
  readonly count: number;
  /** Per-request timeout. */
  readonly timeoutMs: number;
  /** `paced`: time at the target rate before the counted requests. Default 1000. */
  readonly warmUpMs?: number;
}

export interface LoadResult {
  readonly mode: 'paced' | 'max';
  readonly connections: number;
  readonly targetRate?: number;
  readonly durationS: number;
  readonly requests: number;
  readonly ok: number;
  readonly rps: number;
  readonly p50Ms: number;
  readonly p90Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
  readonly non2xx: number;
  readonly errors: number;
  readonly timeouts: number;
  /** CPU time the load generator itself spent per counted request, in µs (`paced`; it shares the server's cores). */
  readonly generatorCpuUsPerRequest?: number;
}

interface AutocannonResult {
  duration: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  '2xx': number;
}

interface AutocannonInstance extends PromiseLike<AutocannonResult> {
  on(event: 'response', listener: (client: unknown, statusCode: number, bytes: number, responseTimeMs: number) => void): void;
}

type Autocannon = (options: Record<string, unknown>) => AutocannonInstance;

function summarise(latenciesMs: number[]): { p50Ms: number; p90Ms: number; p99Ms: number; maxMs: number } {
  const sorted = Float64Array.from(latenciesMs).sort();
  const at = (q: number) => (sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!);
  const round = (x: number) => Math.round(x * 100) / 100;
  return { p50Ms: round(at(0.5)), p90Ms: round(at(0.9)), p99Ms: round(at(0.99)), maxMs: round(at(1)) };
}

function paced(options: LoadOptions): Promise<LoadResult> {
  const rate = options.rate!;
  // undici's pool costs the generator about half the CPU per request of node:http's agent, and the generator shares
  // the machine's two cores with the server.
  const pool = new Pool(options.url, { connections: options.connections, headersTimeout: options.timeoutMs, bodyTimeout: options.timeoutMs });
  const headers = { 'content-type': 'application/json' };
  // A cold generator (compiling its HTTP client, opening connections) is late with its first requests by up to a few
  // hundred ms, even against a server that answers at once: the first `warmUpMs` of requests are sent but not counted.
  const warmUp = Math.round((rate * (options.warmUpMs ?? 1000)) / 1000);
  const total = Math.round((rate * options.durationMs) / 1000);
  const latencies: number[] = [];
  let sent = 0;
  let settled = 0;
  let non2xx = 0;
  let errors = 0;
  let timeouts = 0;
  let lastAnswer = 0;
  let cpuAtMeasure: NodeJS.CpuUsage | undefined;
  const start = performance.now();
  const measuredFrom = start + (warmUp * 1000) / rate;

  return new Promise((resolve) => {
    const finish = () => {
      if (++settled < warmUp + total) return;
      const durationS = (lastAnswer - measuredFrom) / 1000;
      const cpu = process.cpuUsage(cpuAtMeasure);
      void pool.close();
      resolve({
        mode: 'paced',
        connections: options.connections,
        targetRate: rate,
        durationS: Math.round(durationS * 100) / 100,
        requests: total,
        ok: latencies.length,
        rps: Math.round(latencies.length / durationS),
        ...summarise(latencies),
        non2xx,
        errors,
        timeouts,
        generatorCpuUsPerRequest: Math.round((cpu.user + cpu.system) / total),
      });
    };
    const fire = (due: number, body: string, counted: boolean) => {
      pool.request({ path: '/v1/recommend', method: 'POST', headers, body }).then(
        async ({ statusCode, body: answer }) => {
          await answer.dump();
          const now = performance.now();
          if (counted) {
            lastAnswer = now;
            if (statusCode >= 200 && statusCode < 300) latencies.push(now - due);
            else non2xx++;
          }
          finish();
        },
        (error: { code?: string }) => {
          if (counted) {
            lastAnswer = performance.now();
            if (error.code === 'UND_ERR_HEADERS_TIMEOUT' || error.code === 'UND_ERR_BODY_TIMEOUT') timeouts++;
            else errors++;
          }
          finish();
        },
      );
    };
    const tick = () => {
      const due = Math.min(warmUp + total, Math.floor(((performance.now() - start) * rate) / 1000) + 1);
      for (; sent < due; sent++) {
        if (sent === warmUp) cpuAtMeasure = process.cpuUsage();
        fire(start + (sent * 1000) / rate, bodies[sent % bodies.length]!, sent >= warmUp);
      }
      if (sent < warmUp + total) setTimeout(tick, 1);
    };
    tick();
  });
}

async function max(options: LoadOptions): Promise<LoadResult> {
  const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon;
  let next = 0;
  const latencies: number[] = [];
  const instance = autocannon({
    url: options.url,
    connections: options.connections,
    duration: options.durationMs / 1000,
    timeout: options.timeoutMs / 1000,
    headers: { 'content-type': 'application/json' },
    requests: [
      {
        method: 'POST',
        path: '/v1/recommend',
        setupRequest: (req: Record<string, unknown>) => ({ ...req, body: bodies[next++ % bodies.length] }),
      },
    ],
  });
  instance.on('response', (_client, statusCode, _bytes, responseTimeMs) => {
    if (statusCode >= 200 && statusCode < 300) latencies.push(responseTimeMs);
  });
  const result = await instance;
  return {
    mode: 'max',
    connections: options.connections,
    durationS: result.duration,
    requests: latencies.length + result.non2xx + result.errors + result.timeouts,
    ok: result['2xx'],
    rps: Math.round(result['2xx'] / result.duration),
    ...summarise(latencies),
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
  };
}

/** Request bodies in a fixed pseudo-random order of users, built once so the loop only picks the next one. */
function bodiesFor(options: LoadOptions): string[] {
  const bodies: string[] = [];
  let state = 0x9e3779b9;
  for (let i = 0; i < 8192; i++) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    const userId = i % 10 === 9 ? `guest-${i}` : `u${state % options.users}`;
    bodies.push(JSON.stringify({ userId, count: options.count }));
  }
  return bodies;
}

const options = JSON.parse(process.argv[2] ?? '{}') as LoadOptions;
const bodies = bodiesFor(options);
const result = options.mode === 'paced' ? await paced(options) : await max(options);
process.stdout.write(`${JSON.stringify(result)}\n`);
