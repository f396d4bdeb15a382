/**
 * The load generator of the `serve` suite, run as its own process so its CPU is not the server's event loop. It
 * takes one JSON argument and prints one JSON line of figures.
 *
 * It shares the machine's two cores with the server, so it is a lean HTTP/1.1 client of its own, in the manner of
 * wrk: each request is a prebuilt buffer written to a keep-alive connection, and each answer is read as far as its
 * status and Content-Length (the server answers every request with a JSON body of known length). That costs the
 * generator about a tenth of the CPU per request that undici's pool or autocannon do, and the CPU it does not burn is
 * the server's. At most one request is in flight per connection (no pipelining).
 *
 * `paced` is an open-loop generator at a fixed rate: request n is due at start + n / rate and is sent then, on an idle
 * connection or, when all are busy, on the first to become free, whether or not earlier ones have answered; its
 * latency counts from when it was due, so a stalled server is charged for the requests it delayed (no coordinated
 * omission). `max` is closed-loop: every connection sends its next request as soon as the previous one is answered,
 * and latency counts from the write.
 */
import { connect, type Socket } from 'node:net';

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
  /** CPU time the load generator itself spent per counted request, in µs (it shares the server's cores). */
  readonly generatorCpuUsPerRequest: number;
  /**
   * `paced` only: the p99 of each successive 10 s of requests, by when they were due, so that a run's tail can be told
   * from a steady state (a stall or two) and placed in time.
   */
  readonly windowP99Ms?: number[];
}

const WINDOW_S = 10;

function summarise(latenciesMs: number[]): { p50Ms: number; p90Ms: number; p99Ms: number; maxMs: number } {
  const sorted = Float64Array.from(latenciesMs).sort();
  const at = (q: number) => (sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!);
  const round = (x: number) => Math.round(x * 100) / 100;
  return { p50Ms: round(at(0.5)), p90Ms: round(at(0.9)), p99Ms: round(at(0.99)), maxMs: round(at(1)) };
}

/** One request: `started` is where its latency counts from; `done` gets the status, or 0 when it failed. */
interface Exchange {
  readonly request: Buffer;
  readonly started: number;
  readonly done: (status: number, timedOut: boolean) => void;
}

const HEADER_END = Buffer.from('\r\n\r\n');

/** A keep-alive connection that carries one exchange at a time and reconnects after a failure. */
class Connection {
  private socket!: Socket;
  private pending: Buffer | undefined;
  private closed = false;
  current: Exchange | undefined;
  sentAt = 0;

  constructor(
    private readonly host: string,
    private readonly port: number,
    private readonly onIdle: (connection: Connection) => void,
  ) {
    this.open();
  }

  send(exchange: Exchange): void {
    this.current = exchange;
    this.sentAt = performance.now();
    this.socket.write(exchange.request);
  }

  /** Fails the exchange in flight (a timeout) and starts over on a new socket. */
  abort(): void {
    this.socket.destroy();
    this.open();
    this.fail(true);
  }

  close(): void {
    this.closed = true;
    this.socket.destroy();
  }

  private open(): void {
    const socket = connect({ host: this.host, port: this.port, noDelay: true });
    this.socket = socket;
    this.pending = undefined;
    socket.on('data', (chunk: Buffer) => this.read(chunk));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      if (this.socket !== socket || this.closed) return;
      // The new socket first: failing the exchange frees this connection for the next one.
      this.open();
      this.fail(false);
    });
  }

  private fail(timedOut: boolean): void {
    const exchange = this.current;
    this.current = undefined;
    if (exchange) {
      exchange.done(0, timedOut);
      this.onIdle(this);
    }
  }

  private read(chunk: Buffer): void {
    const data = this.pending ? Buffer.concat([this.pending, chunk]) : chunk;
    const headerEnd = data.indexOf(HEADER_END);
    if (headerEnd < 0) {
      this.pending = data;
      return;
    }
    const head = data.toString('latin1', 0, headerEnd);
    const length = /\r\ncontent-length:\s*(\d+)/i.exec(head);
    if (!length) {
      // Only answers with a Content-Length are expected; anything else counts as an error, on a fresh connection.
      this.socket.destroy();
      return;
    }
    const end = headerEnd + HEADER_END.length + Number(length[1]);
    if (data.length < end) {
      this.pending = data;
      return;
    }
    this.pending = undefined;
    const exchange = this.current;
    this.current = undefined;
    // An answer to no request (a server may send one, such as a 408 on an idle connection) must not free the
    // connection again: on the idle list twice, it would be handed two requests at once, and one would never settle.
    if (!exchange) return;
    exchange.done(Number(head.slice(9, 12)), false);
    this.onIdle(this);
  }
}

/** Runs `connections` connections, sending what `next` gives whenever one is idle, until `next` gives nothing. */
class Client {
  private readonly connections: Connection[];
  private readonly idle: Connection[] = [];
  private readonly sweep: NodeJS.Timeout;

  constructor(
    url: string,
    connections: number,
    timeoutMs: number,
    private readonly next: () => Exchange | undefined,
  ) {
    const { hostname, port } = new URL(url);
    this.connections = Array.from({ length: connections }, () => new Connection(hostname, Number(port), (c) => this.release(c)));
    this.idle.push(...this.connections);
    // One sweep timer rather than a timer per request: timeouts are rare, and the generator shares the server's cores.
    this.sweep = setInterval(() => {
      const now = performance.now();
      for (const connection of this.connections) if (connection.current && now - connection.sentAt > timeoutMs) connection.abort();
    }, Math.min(100, timeoutMs));
  }

  /** Sends what is ready on idle connections. */
  pump(): void {
    while (this.idle.length > 0) {
      const exchange = this.next();
      if (!exchange) return;
      this.idle.pop()!.send(exchange);
    }
  }

  close(): void {
    clearInterval(this.sweep);
    for (const connection of this.connections) connection.close();
  }

  private release(connection: Connection): void {
    const exchange = this.next();
    if (exchange) connection.send(exchange);
    else this.idle.push(connection);
  }
}

/** Prebuilt requests for the bodies, in a fixed pseudo-random order of users, so the loop only picks the next one. */
function requestsFor(options: LoadOptions): Buffer[] {
  const { host } = new URL(options.url);
  const requests: Buffer[] = [];
  let state = 0x9e3779b9;
  for (let i = 0; i < 8192; i++) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    const userId = i % 10 === 9 ? `guest-${i}` : `u${state % options.users}`;
    const body = JSON.stringify({ userId, count: options.count });
    requests.push(
      Buffer.from(
        `POST /v1/recommend HTTP/1.1\r\nhost: ${host}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
      ),
    );
  }
  return requests;
}

interface Tally {
  readonly latencies: number[];
  /** Latencies of answered requests per window of due times (`paced` only). */
  readonly windows: number[][];
  non2xx: number;
  errors: number;
  timeouts: number;
}

/** A run's figures: `requests` counted over `durationS`, and the generator's CPU time `cpu` spent on them. */
function resultOf(
  tally: Tally,
  run: Pick<LoadResult, 'mode' | 'connections' | 'targetRate'>,
  durationS: number,
  requests: number,
  cpu: NodeJS.CpuUsage,
): LoadResult {
  return {
    ...run,
    durationS: Math.round(durationS * 100) / 100,
    requests,
    ok: tally.latencies.length,
    rps: Math.round(tally.latencies.length / durationS),
    ...summarise(tally.latencies),
    non2xx: tally.non2xx,
    errors: tally.errors,
    timeouts: tally.timeouts,
    generatorCpuUsPerRequest: Math.round((cpu.user + cpu.system) / Math.max(1, requests)),
    ...(run.mode === 'paced' ? { windowP99Ms: tally.windows.map((window) => summarise(window).p99Ms) } : {}),
  };
}

function record(tally: Tally, latencyMs: number, status: number, timedOut: boolean, window?: number): void {
  if (status >= 200 && status < 300) {
    tally.latencies.push(latencyMs);
    if (window !== undefined) (tally.windows[window] ??= []).push(latencyMs);
  } else if (timedOut) tally.timeouts++;
  else if (status === 0) tally.errors++;
  else tally.non2xx++;
}

function paced(options: LoadOptions, requests: readonly Buffer[]): Promise<LoadResult> {
  const rate = options.rate!;
  // A cold generator (compiling, opening connections) is late with its first requests, even against a server that
  // answers at once: the first `warmUpMs` of requests are sent but not counted.
  const warmUp = Math.round((rate * (options.warmUpMs ?? 1000)) / 1000);
  const total = Math.round((rate * options.durationMs) / 1000);
  const tally: Tally = { latencies: [], windows: [], non2xx: 0, errors: 0, timeouts: 0 };
  const start = performance.now();
  let due = 0;
  let sent = 0;
  let settled = 0;
  let lastAnswer = 0;
  let cpuAtMeasure: NodeJS.CpuUsage | undefined;

  return new Promise((resolve) => {
    const finish = () => {
      const measuredFrom = start + (warmUp * 1000) / rate;
      const durationS = (lastAnswer - measuredFrom) / 1000;
      const cpu = process.cpuUsage(cpuAtMeasure);
      client.close();
      resolve(resultOf(tally, { mode: 'paced', connections: options.connections, targetRate: rate }, durationS, total, cpu));
    };
    // Requests that are due go out in order: on an idle connection at once, else on the next one that frees up.
    const client = new Client(options.url, options.connections, options.timeoutMs, () => {
      if (sent >= due) return undefined;
      const n = sent++;
      if (n === warmUp) cpuAtMeasure = process.cpuUsage();
      const dueAt = start + (n * 1000) / rate;
      const counted = n >= warmUp;
      return {
        request: requests[n % requests.length]!,
        started: dueAt,
        done: (status, timedOut) => {
          if (counted) {
            lastAnswer = performance.now();
            record(tally, lastAnswer - dueAt, status, timedOut, Math.floor((n - warmUp) / (rate * WINDOW_S)));
          }
          if (++settled === warmUp + total) finish();
        },
      };
    });
    // The timer sleeps until the next request is due rather than waking every millisecond: at a few hundred requests
    // a second, idle wake-ups would cost the generator more CPU than the requests do.
    const tick = () => {
      due = Math.min(warmUp + total, Math.floor(((performance.now() - start) * rate) / 1000) + 1);
      client.pump();
      if (due < warmUp + total) setTimeout(tick, Math.max(1, Math.round(start + (due * 1000) / rate - performance.now())));
    };
    tick();
  });
}

function max(options: LoadOptions, requests: readonly Buffer[]): Promise<LoadResult> {
  const tally: Tally = { latencies: [], windows: [], non2xx: 0, errors: 0, timeouts: 0 };
  const cpuAtStart = process.cpuUsage();
  const start = performance.now();
  const end = start + options.durationMs;
  let sent = 0;
  let inFlight = 0;

  return new Promise((resolve) => {
    const client = new Client(options.url, options.connections, options.timeoutMs, () => {
      const now = performance.now();
      if (now >= end) {
        if (inFlight === 0) setImmediate(finish);
        return undefined;
      }
      inFlight++;
      return {
        request: requests[sent++ % requests.length]!,
        started: now,
        done: (status, timedOut) => {
          inFlight--;
          record(tally, performance.now() - now, status, timedOut);
        },
      };
    });
    let finished = false;
    const finish = () => {
      if (finished) return;
      finished = true;
      const durationS = (performance.now() - start) / 1000;
      const cpu = process.cpuUsage(cpuAtStart);
      const requestsDone = tally.latencies.length + tally.non2xx + tally.errors + tally.timeouts;
      client.close();
      resolve(resultOf(tally, { mode: 'max', connections: options.connections }, durationS, requestsDone, cpu));
    };
    client.pump();
  });
}

const options = JSON.parse(process.argv[2] ?? '{}') as LoadOptions;
const requests = requestsFor(options);
const result = options.mode === 'paced' ? await paced(options, requests) : await max(options, requests);
process.stdout.write(`${JSON.stringify(result)}\n`);
