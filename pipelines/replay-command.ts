import cliProgress from 'cli-progress';
import type { InputEvent } from '../schema/events.js';
import { loadJsonl } from './datasets/jsonl.js';
import { loadMovieLens } from './datasets/movielens.js';
import { describeBadRows, type DatasetReport } from './datasets/problems.js';
import { replay, type ReplaySummary } from './replay.js';

/**
 * `eddy replay`: a dataset as a time-ordered event stream through the features and recall pipelines, with a
 * progress bar on stderr and a summary on stdout (`--json`: one JSON object, last line).
 */

export const REPLAY_USAGE = `usage: eddy replay --dataset movielens --ratings FILE --movies FILE [--tags FILE] [options]
       eddy replay --dataset jsonl --events FILE [options]

options:
  --dataset movielens|jsonl  input layout (default movielens)
  --ratings FILE             MovieLens ratings.csv
  --movies FILE              MovieLens movies.csv (titles and genres become item metadata)
  --tags FILE                MovieLens tags.csv
  --events FILE              JSONL events, one input event per line
  --speed N                  N times real time (60: an hour of history per minute); default as fast as possible
  --max-gap SECONDS          longest event-time gap honoured at --speed (default 3600)
  --snapshot DIR             write the feature store's snapshot to DIR
  --json                     print the summary as one JSON line, last on stdout
  --no-progress              no progress bar on stderr`;

export class ReplayArgsError extends Error {
  override readonly name = 'ReplayArgsError';
}

export interface ReplayArgs {
  readonly dataset: 'movielens' | 'jsonl';
  readonly ratings?: string;
  readonly movies?: string;
  readonly tags?: string;
  readonly events?: string;
  readonly speed: number;
  readonly maxGapMs: number;
  readonly snapshot?: string;
  readonly json: boolean;
  readonly progress: boolean;
  readonly help: boolean;
}

const VALUE_FLAGS = ['dataset', 'ratings', 'movies', 'tags', 'events', 'speed', 'max-gap', 'snapshot'] as const;
const SWITCHES = ['json', 'no-progress', 'help'] as const;

/** Parses `--flag value`, `--flag=value` and switches; every mistake names the flag. */
export function parseFlags(argv: readonly string[], valueFlags: readonly string[], switchFlags: readonly string[], error: (message: string) => Error) {
  const values = new Map<string, string>();
  const switches = new Set<string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (!arg.startsWith('--')) throw error(`unexpected argument "${arg}"; options start with --`);
    const eq = arg.indexOf('=');
    const name = arg.slice(2, eq < 0 ? undefined : eq);
    if (switchFlags.includes(name)) {
      if (eq >= 0) throw error(`--${name} takes no value`);
      switches.add(name);
      continue;
    }
    if (!valueFlags.includes(name)) throw error(`unknown option --${name}`);
    const value = eq >= 0 ? arg.slice(eq + 1) : argv[++i];
    if (value === undefined || value === '' || (eq < 0 && value.startsWith('--'))) throw error(`--${name} needs a value`);
    if (values.has(name)) throw error(`--${name} is given twice`);
    values.set(name, value);
  }
  return { values, switches };
}

/** A finite number >= `min`, or the flag's error. */
export function numberFlag(flag: string, text: string, min: number, error: (message: string) => Error): number {
  const value = Number(text);
  if (!Number.isFinite(value) || value < min || text.trim() === '') throw error(`--${flag} must be a number >= ${min}, got "${text}"`);
  return value;
}

export function parseReplayArgs(argv: readonly string[]): ReplayArgs {
  const fail = (message: string) => new ReplayArgsError(message);
  const { values, switches } = parseFlags(argv, VALUE_FLAGS, SWITCHES, fail);
  const help = switches.has('help');
  const dataset = values.get('dataset') ?? 'movielens';
  if (dataset !== 'movielens' && dataset !== 'jsonl') throw fail(`--dataset must be movielens or jsonl, got "${dataset}"`);
  if (!help) {
    if (dataset === 'movielens') {
      if (values.has('events')) throw fail('--events applies to --dataset jsonl; use --ratings');
      if (!values.has('ratings')) throw fail('--ratings FILE is required for --dataset movielens');
      if (!values.has('movies')) throw fail('--movies FILE is required for --dataset movielens');
    } else {
      for (const flag of ['ratings', 'movies', 'tags']) if (values.has(flag)) throw fail(`--${flag} applies to --dataset movielens only`);
      if (!values.has('events')) throw fail('--events FILE is required for --dataset jsonl');
    }
  }
  const optional = (flag: string) => (values.has(flag) ? { [flag]: values.get(flag)! } : {});
  return {
    dataset,
    ...optional('ratings'),
    ...optional('movies'),
    ...optional('tags'),
    ...optional('events'),
    ...optional('snapshot'),
    speed: values.has('speed') ? numberFlag('speed', values.get('speed')!, 0, fail) : 0,
    maxGapMs: values.has('max-gap') ? numberFlag('max-gap', values.get('max-gap')!, 0, fail) * 1000 : 3_600_000,
    json: switches.has('json'),
    progress: !switches.has('no-progress'),
    help,
  };
}

/** Loads the dataset the arguments name, time-ordered. */
export async function loadDataset(args: Pick<ReplayArgs, 'dataset' | 'ratings' | 'movies' | 'tags' | 'events'>): Promise<{ events: InputEvent[]; report: DatasetReport }> {
  if (args.dataset === 'jsonl') return loadJsonl(args.events!);
  return loadMovieLens({ ratingsPath: args.ratings!, moviesPath: args.movies!, tagsPath: args.tags });
}

export interface ReplayCommandOptions {
  readonly stdout?: NodeJS.WritableStream;
  readonly stderr?: NodeJS.WritableStream;
}

function describe(summary: ReplaySummary): string {
  const span = summary.firstTs !== null && summary.lastTs !== null ? `${new Date(summary.firstTs).toISOString()} .. ${new Date(summary.lastTs).toISOString()}` : 'no events';
  return [
    `replayed ${summary.events} events (${summary.behaviourEvents} behaviour, ${summary.itemEvents} item, ${summary.userEvents} user) in ${(summary.elapsedMs / 1000).toFixed(1)} s: ${Math.round(summary.eventsPerSecond)} events/s`,
    `event time ${span}${summary.achievedSpeed !== null ? `, ${summary.achievedSpeed.toFixed(0)}x real time` : ''}`,
    `features: ${summary.features.users} users, ${summary.features.items} items; recall: ${summary.recall.catalogue} catalogue items, ${summary.recall.covisitedItems} with co-visited neighbours; dead letters: ${summary.deadLetters}`,
    ...(summary.snapshotDir ? [`snapshot written to ${summary.snapshotDir}`] : []),
  ].join('\n');
}

export async function runReplayCommand(argv: readonly string[], options: ReplayCommandOptions = {}): Promise<number> {
  const stdout = options.stdout ?? process.stdout;
  const stderr = options.stderr ?? process.stderr;
  let args: ReplayArgs;
  try {
    args = parseReplayArgs(argv);
  } catch (error) {
    if (!(error instanceof ReplayArgsError)) throw error;
    stderr.write(`eddy replay: ${error.message}\n\n${REPLAY_USAGE}\n`);
    return 2;
  }
  if (args.help) {
    stdout.write(`${REPLAY_USAGE}\n`);
    return 0;
  }
  const { events, report } = await loadDataset(args);
  for (const line of describeBadRows(report)) stderr.write(`eddy replay: bad row ${line}\n`);
  for (const note of report.notes) stderr.write(`eddy replay: ${note}\n`);
  const bar = args.progress
    ? new cliProgress.SingleBar({ stream: stderr, format: 'replay [{bar}] {percentage}% | {value}/{total} events | {eventTime} | ETA {eta_formatted}', hideCursor: false }, cliProgress.Presets.shades_classic)
    : undefined;
  bar?.start(events.length, 0, { eventTime: '' });
  let summary: ReplaySummary;
  try {
    ({ summary } = await replay({
      events,
      speed: args.speed,
      maxGapMs: args.maxGapMs,
      ...(args.snapshot && { snapshotDir: args.snapshot }),
      onProgress: ({ processed, eventTs }) => bar?.update(processed, { eventTime: new Date(eventTs).toISOString().slice(0, 19) }),
    }));
  } finally {
    bar?.stop();
  }
  stdout.write(`${describe(summary)}\n`);
  if (args.json) stdout.write(`${JSON.stringify({ ...summary, badRows: report.badCount })}\n`);
  return 0;
}

/** The CLI's command module shape (`pipelines/commands.ts`). */
export async function main(argv: readonly string[]): Promise<number> {
  return runReplayCommand(argv);
}
