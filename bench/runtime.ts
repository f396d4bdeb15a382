/**
 * Suite `runtime`: clicks per item per 1-minute tumbling window, slightly out of order, through the runtime operators
 * (eventTime + tumblingWindow over batches), and the same aggregation as a hand-written loop in the same run. Both
 * must give the same results, late items included.
 *
 * Options: --events=2000000 --keys=100000 --batch=4096 --runs=3 --jitterMs=3000 --outOfOrderMs=2000 --latenessMs=500
 */
import { from } from 'rxjs';
import { mulberry32 } from '../models/random.js';
import { batchOf, type Batch } from '../operators/batch.js';
import { eventTime } from '../operators/event-time.js';
import { tumblingWindow } from '../operators/aligned-windows.js';
import { count, type WindowResult } from '../operators/windows.js';

interface Click {
  readonly type: 'click';
  readonly userId: string;
  readonly itemId: string;
  readonly ts: number;
}

interface Settings {
  readonly events: number;
  readonly keys: number;
  readonly batch: number;
  readonly runs: number;
  readonly jitterMs: number;
  readonly outOfOrderMs: number;
  readonly latenessMs: number;
}

const WINDOW_MS = 60_000;
/** Ten minutes of clicks, whatever their number, so each window holds most keys. */
const SPAN_MS = 10 * WINDOW_MS;
const BASE_TS = 1_700_000_000_000;

/** The outcome of one run: the newest value per `start:key`, and the items found late. */
interface Outcome {
  readonly seconds: number;
  /** CPU time of the whole process (GC and compiler threads included), less sensitive to other load on the machine. */
  readonly cpuSeconds: number;
  readonly counts: Map<string, number>;
  readonly late: number;
  readonly results: number;
}

export async function run({ args, log }: { args: Record<string, string>; log: (line: string) => void }): Promise<Record<string, unknown>> {
  const settings: Settings = {
    events: Number(args.events ?? 2_000_000),
    keys: Number(args.keys ?? 100_000),
    batch: Number(args.batch ?? 4096),
    runs: Number(args.runs ?? 3),
    jitterMs: Number(args.jitterMs ?? 3000),
    outOfOrderMs: Number(args.outOfOrderMs ?? 2000),
    latenessMs: Number(args.latenessMs ?? 500),
  };
  log(`generating ${settings.events} clicks over ${settings.keys} items`);
  const clicks = generate(settings);

  const runtimeTimes: number[] = [];
  const loopTimes: number[] = [];
  let runtimeOutcome: Outcome | undefined;
  let loopOutcome: Outcome | undefined;
  // The first round warms the JIT and is not counted.
  for (let round = 0; round <= settings.runs; round++) {
    // Alternate which goes first, so neither always pays for collecting the other's garbage.
    let viaLoop: Outcome | undefined;
    if (round % 2 === 1) viaLoop = runLoop(clicks, settings);
    const viaRuntime = await runRuntime(clicks, settings);
    viaLoop ??= runLoop(clicks, settings);
    if (round === 0) {
      log(`warm-up: runtime ${rate(clicks.length, viaRuntime.seconds)}/s, loop ${rate(clicks.length, viaLoop.seconds)}/s`);
      continue;
    }
    runtimeTimes.push(viaRuntime.seconds);
    loopTimes.push(viaLoop.seconds);
    runtimeOutcome = viaRuntime;
    loopOutcome = viaLoop;
    log(
      `run ${round}: runtime ${rate(clicks.length, viaRuntime.seconds)}/s (cpu ${rate(clicks.length, viaRuntime.cpuSeconds)}/s), ` +
        `loop ${rate(clicks.length, viaLoop.seconds)}/s (cpu ${rate(clicks.length, viaLoop.cpuSeconds)}/s)`,
    );
  }
  if (!runtimeOutcome || !loopOutcome) throw new Error('--runs must be at least 1');

  const mismatch = compare(runtimeOutcome, loopOutcome);
  const counted = [...loopOutcome.counts.values()].reduce((a, b) => a + b, 0);
  log(`results: ${loopOutcome.counts.size} (window, item) counts, ${loopOutcome.late} late clicks, ${counted} counted`);
  if (counted + loopOutcome.late !== clicks.length) throw new Error(`counted ${counted} + late ${loopOutcome.late} != ${clicks.length} clicks`);
  if (mismatch) throw new Error(`runtime and hand-written loop disagree: ${mismatch}`);

  const eventsPerSec = clicks.length / Math.min(...runtimeTimes);
  const baselineEventsPerSec = clicks.length / Math.min(...loopTimes);
  log(`best of ${settings.runs}: runtime ${Math.round(eventsPerSec)}/s, loop ${Math.round(baselineEventsPerSec)}/s`);
  log(`median: runtime ${Math.round(clicks.length / median(runtimeTimes))}/s, loop ${Math.round(clicks.length / median(loopTimes))}/s`);
  return {
    suite: 'runtime',
    events: clicks.length,
    eventsPerSec: Math.round(eventsPerSec),
    baselineEventsPerSec: Math.round(baselineEventsPerSec),
    ratio: Number((eventsPerSec / baselineEventsPerSec).toFixed(3)),
    resultsMatch: true,
  };
}

/** Clicks in time order, each jittered up to `jitterMs` into the past, on uniformly drawn items. Seeded. */
function generate(settings: Settings): Click[] {
  const random = mulberry32(42);
  const itemIds = Array.from({ length: settings.keys }, (_, i) => `item-${i}`);
  const userIds = Array.from({ length: 1000 }, (_, i) => `user-${i}`);
  const step = SPAN_MS / settings.events;
  const clicks = new Array<Click>(settings.events);
  for (let i = 0; i < settings.events; i++) {
    clicks[i] = {
      type: 'click',
      userId: userIds[Math.floor(random() * userIds.length)]!,
      itemId: itemIds[Math.floor(random() * itemIds.length)]!,
      ts: Math.floor(BASE_TS + i * step - random() * settings.jitterMs),
    };
  }
  return clicks;
}

async function runRuntime(clicks: readonly Click[], settings: Settings): Promise<Outcome> {
  const batches: Batch<Click>[] = [];
  for (let i = 0; i < clicks.length; i += settings.batch) batches.push(batchOf(clicks.slice(i, i + settings.batch)));
  let late = 0;
  const windows = tumblingWindow<Click, string, number>({
    sizeMs: WINDOW_MS,
    key: (click) => click.itemId,
    timestamp: (click) => click.ts,
    aggregate: count(),
    allowedLatenessMs: settings.latenessMs,
    late: { push: () => void late++ },
  });
  const results: WindowResult<string, number>[][] = [];
  const started = startClock();
  await new Promise<void>((resolve, reject) => {
    from(batches)
      .pipe(eventTime<Click>({ timestamp: (click) => click.ts, maxOutOfOrdernessMs: settings.outOfOrderMs }), windows)
      .subscribe({
        next: (batch) => {
          results.push(batch.items as WindowResult<string, number>[]);
          batch.ticket.done();
        },
        error: reject,
        complete: resolve,
      });
  });
  const { seconds, cpuSeconds } = elapsed(started);
  const counts = new Map<string, number>();
  let emitted = 0;
  for (const batch of results) {
    for (const r of batch) counts.set(`${r.start}:${r.key}`, r.value);
    emitted += batch.length;
  }
  return { seconds, cpuSeconds, counts, late, results: emitted };
}

interface LoopWindow {
  readonly start: number;
  readonly counts: Map<string, number>;
  fired: boolean;
  readonly changed: Set<string>;
}

interface Row {
  readonly key: string;
  readonly start: number;
  readonly end: number;
  readonly value: number;
  readonly update: boolean;
}

interface LoopState {
  readonly open: LoopWindow[];
  readonly rows: Row[];
  watermark: number;
  newest: number;
  late: number;
}

/**
 * The same job written by hand for this one case: a watermark taken every `batch` clicks, counts per window start,
 * windows fired in start order once the watermark passes their end, re-fired for late clicks within the lateness.
 */
function runLoop(clicks: readonly Click[], settings: Settings): Outcome {
  const started = startClock();
  const state: LoopState = { open: [], rows: [], watermark: -Infinity, newest: -Infinity, late: 0 };
  for (let from = 0; from < clicks.length; from += settings.batch) {
    countClicks(state, clicks, from, Math.min(clicks.length, from + settings.batch), settings.latenessMs);
    advance(state, settings);
  }
  for (const w of state.open) emitRows(state.rows, w, w.fired ? w.changed : w.counts.keys(), w.fired);
  const { seconds, cpuSeconds } = elapsed(started);
  const counts = new Map<string, number>();
  for (const row of state.rows) counts.set(`${row.start}:${row.key}`, row.value);
  return { seconds, cpuSeconds, counts, late: state.late, results: state.rows.length };
}

function countClicks(state: LoopState, clicks: readonly Click[], from: number, to: number, latenessMs: number): void {
  const horizon = state.watermark - latenessMs;
  let newest = state.newest;
  let current: LoopWindow | undefined;
  for (let i = from; i < to; i++) {
    const click = clicks[i]!;
    const ts = click.ts;
    if (ts > newest) newest = ts;
    const start = ts - (ts % WINDOW_MS);
    if (start + WINDOW_MS <= horizon) {
      state.late++;
      continue;
    }
    if (current === undefined || current.start !== start) current = windowAt(state.open, start);
    const counts = current.counts;
    const before = counts.get(click.itemId);
    counts.set(click.itemId, before === undefined ? 1 : before + 1);
    if (current.fired) current.changed.add(click.itemId);
  }
  state.newest = newest;
}

function windowAt(open: LoopWindow[], start: number): LoopWindow {
  let w = open.find((candidate) => candidate.start === start);
  if (w === undefined) {
    w = { start, counts: new Map(), fired: false, changed: new Set() };
    open.push(w);
    open.sort((a, b) => a.start - b.start);
  }
  return w;
}

function advance(state: LoopState, settings: Settings): void {
  const { open, rows } = state;
  if (state.newest - settings.outOfOrderMs > state.watermark) state.watermark = state.newest - settings.outOfOrderMs;
  for (const w of open) {
    if (w.start + WINDOW_MS > state.watermark) break;
    if (!w.fired) {
      emitRows(rows, w, w.counts.keys(), false);
      w.fired = true;
    } else if (w.changed.size > 0) {
      emitRows(rows, w, w.changed, true);
      w.changed.clear();
    }
  }
  while (open.length > 0 && open[0]!.start + WINDOW_MS + settings.latenessMs <= state.watermark) open.shift();
}

function emitRows(rows: Row[], w: LoopWindow, keys: Iterable<string>, update: boolean): void {
  for (const key of keys) rows.push({ key, start: w.start, end: w.start + WINDOW_MS, value: w.counts.get(key)!, update });
}

function compare(a: Outcome, b: Outcome): string | undefined {
  if (a.late !== b.late) return `late clicks ${a.late} vs ${b.late}`;
  if (a.results !== b.results) return `results emitted ${a.results} vs ${b.results}`;
  if (a.counts.size !== b.counts.size) return `(window, item) counts ${a.counts.size} vs ${b.counts.size}`;
  for (const [key, value] of a.counts) {
    if (b.counts.get(key) !== value) return `${key}: ${value} vs ${b.counts.get(key)}`;
  }
  return undefined;
}

function startClock(): { wall: number; cpu: NodeJS.CpuUsage } {
  return { wall: performance.now(), cpu: process.cpuUsage() };
}

function elapsed(start: { wall: number; cpu: NodeJS.CpuUsage }): { seconds: number; cpuSeconds: number } {
  const cpu = process.cpuUsage(start.cpu);
  return { seconds: (performance.now() - start.wall) / 1000, cpuSeconds: (cpu.user + cpu.system) / 1e6 };
}

function rate(events: number, seconds: number): string {
  return Math.round(events / seconds).toLocaleString('en');
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}
