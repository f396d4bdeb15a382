import cliProgress from 'cli-progress';
import type { Recommender } from '../../models/evaluation/recommender.js';
import { describeBadRows } from '../datasets/problems.js';
import { runEvaluation, summarise, type EvaluationOptions, type EvaluationResult } from './evaluate.js';
import { writeReport } from './write.js';

/**
 * `eddy eval`: parses its arguments, runs the evaluation with a progress bar on stderr, writes the reports asked
 * for, and prints the headline figures (with `--json`, as one JSON object on the last line of stdout).
 */

export const EVAL_USAGE = `usage: eddy eval --dataset movielens --ratings FILE --movies FILE [--tags FILE] [--k 10] [--json]
       eddy eval --dataset movielens --train FILE --test FILE --movies FILE [--tags FILE] [--k 10] [--json]
       eddy eval --dataset jsonl --events FILE | --train FILE --test FILE [--k 10] [--json]

options:
  --dataset movielens|jsonl  input layout (default movielens)
  --ratings FILE             MovieLens ratings.csv, replayed and scored prequentially
  --movies FILE              MovieLens movies.csv (titles and genres become item metadata)
  --tags FILE                MovieLens tags.csv (tags become item metadata)
  --events FILE              JSONL events, one input event per line
  --train FILE --test FILE   learn the train stream without scoring, then score the test stream
  --k N                      list length (default 10)
  --buckets N                points in the over-time series (default 40)
  --report FILE.json         write the full result, over-time series and latency histograms included
  --html FILE.html           write the self-contained HTML report
  --json                     print the headline figures as one JSON line, last on stdout
  --no-progress              no progress bar on stderr`;

export interface EvalArgs {
  readonly dataset: 'movielens' | 'jsonl';
  readonly ratingsPath?: string;
  readonly moviesPath?: string;
  readonly tagsPath?: string;
  readonly trainPath?: string;
  readonly testPath?: string;
  readonly k: number;
  readonly buckets: number;
  readonly reportPath?: string;
  readonly htmlPath?: string;
  readonly json: boolean;
  readonly progress: boolean;
}

/** A mistake in the command line; the message says which and how to fix it. */
export class EvalArgsError extends Error {
  override readonly name = 'EvalArgsError';
}

const VALUE_FLAGS = ['dataset', 'ratings', 'movies', 'tags', 'events', 'train', 'test', 'k', 'buckets', 'report', 'html'] as const;
const SWITCHES = ['json', 'no-progress', 'help'] as const;
type ValueFlag = (typeof VALUE_FLAGS)[number];

function positiveInteger(flag: string, text: string): number {
  const value = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(value) || value < 1) throw new EvalArgsError(`--${flag} must be a positive whole number, got "${text}"`);
  return value;
}

/** Parses `eddy eval`'s arguments (without the command name). `--flag value` and `--flag=value` both work. */
export function parseEvalArgs(argv: readonly string[]): EvalArgs & { readonly help: boolean } {
  const values = new Map<ValueFlag, string>();
  const switches = new Set<string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (!arg.startsWith('--')) throw new EvalArgsError(`unexpected argument "${arg}"; options start with --`);
    const eq = arg.indexOf('=');
    const name = arg.slice(2, eq < 0 ? undefined : eq);
    if ((SWITCHES as readonly string[]).includes(name)) {
      if (eq >= 0) throw new EvalArgsError(`--${name} takes no value`);
      switches.add(name);
      continue;
    }
    if (!(VALUE_FLAGS as readonly string[]).includes(name)) throw new EvalArgsError(`unknown option --${name}`);
    const value = eq >= 0 ? arg.slice(eq + 1) : argv[++i];
    if (value === undefined || value === '' || (eq < 0 && value.startsWith('--'))) throw new EvalArgsError(`--${name} needs a value`);
    if (values.has(name as ValueFlag)) throw new EvalArgsError(`--${name} is given twice`);
    values.set(name as ValueFlag, value);
  }
  const help = switches.has('help');
  const dataset = values.get('dataset') ?? 'movielens';
  if (dataset !== 'movielens' && dataset !== 'jsonl') throw new EvalArgsError(`--dataset must be movielens or jsonl, got "${dataset}"`);
  const train = values.get('train');
  const test = values.get('test');
  const source = dataset === 'movielens' ? values.get('ratings') : values.get('events');
  const sourceFlag = dataset === 'movielens' ? '--ratings' : '--events';
  const wrongSource = dataset === 'movielens' ? 'events' : 'ratings';
  if (!help) {
    if (values.has(wrongSource)) throw new EvalArgsError(`--${wrongSource} does not apply to --dataset ${dataset}; use ${sourceFlag}`);
    if (dataset === 'jsonl') {
      for (const flag of ['movies', 'tags'] as const) if (values.has(flag)) throw new EvalArgsError(`--${flag} applies to --dataset movielens only`);
    }
    if ((train === undefined) !== (test === undefined)) throw new EvalArgsError(`--train and --test go together: ${train === undefined ? '--train' : '--test'} is missing`);
    if (train !== undefined && source !== undefined) throw new EvalArgsError(`give either ${sourceFlag} or --train and --test, not both`);
    if (train === undefined && source === undefined) throw new EvalArgsError(`${sourceFlag} FILE (or --train FILE --test FILE) is required`);
    if (dataset === 'movielens' && !values.has('movies')) throw new EvalArgsError('--movies FILE is required for --dataset movielens');
  }
  const optional = (flag: ValueFlag) => values.get(flag);
  return {
    help,
    dataset,
    ...(source !== undefined && { ratingsPath: source }),
    ...(optional('movies') !== undefined && { moviesPath: optional('movies')! }),
    ...(optional('tags') !== undefined && { tagsPath: optional('tags')! }),
    ...(train !== undefined && { trainPath: train }),
    ...(test !== undefined && { testPath: test }),
    ...(optional('report') !== undefined && { reportPath: optional('report')! }),
    ...(optional('html') !== undefined && { htmlPath: optional('html')! }),
    k: values.has('k') ? positiveInteger('k', values.get('k')!) : 10,
    buckets: values.has('buckets') ? positiveInteger('buckets', values.get('buckets')!) : 40,
    json: switches.has('json'),
    progress: !switches.has('no-progress'),
  };
}

export interface EvalCommandOptions {
  /** The models to compare. Default: the baselines. The lead adds Eddy's pipeline here. */
  readonly models?: readonly Recommender[];
  readonly stdout?: NodeJS.WritableStream;
  readonly stderr?: NodeJS.WritableStream;
}

function table(result: EvaluationResult): string {
  const names = Object.keys(result.models);
  const width = Math.max(5, ...names.map((n) => n.length));
  const head = `${'model'.padEnd(width)}  ${[`HR@${result.k}`, `NDCG@${result.k}`, `MRR@${result.k}`, 'coverage', 'novelty', 'p50 ms', 'p99 ms'].map((h) => h.padStart(9)).join(' ')}`;
  const rows = Object.entries(result.models).map(
    ([name, m]) =>
      `${name.padEnd(width)}  ${[m.hr, m.ndcg, m.mrr, m.coverage].map((v) => v.toFixed(4).padStart(9)).join(' ')} ${m.novelty.toFixed(2).padStart(9)} ${m.latency.p50Ms.toFixed(3).padStart(9)} ${m.latency.p99Ms.toFixed(3).padStart(9)}`,
  );
  return [`${result.evaluated} of ${result.events} events scored in ${(result.elapsedMs / 1000).toFixed(1)} s`, head, ...rows].join('\n');
}

/** Runs `eddy eval` and resolves with the exit code: 0 done, 2 bad arguments. Other failures reject with their cause. */
export async function runEvalCommand(argv: readonly string[], options: EvalCommandOptions = {}): Promise<number> {
  const stdout = options.stdout ?? process.stdout;
  const stderr = options.stderr ?? process.stderr;
  let args: ReturnType<typeof parseEvalArgs>;
  try {
    args = parseEvalArgs(argv);
  } catch (error) {
    if (!(error instanceof EvalArgsError)) throw error;
    stderr.write(`eddy eval: ${error.message}\n\n${EVAL_USAGE}\n`);
    return 2;
  }
  if (args.help) {
    stdout.write(`${EVAL_USAGE}\n`);
    return 0;
  }
  const bar = args.progress
    ? new cliProgress.SingleBar({ stream: stderr, format: 'eval [{bar}] {percentage}% | {value}/{total} events | ETA {eta_formatted}', hideCursor: false }, cliProgress.Presets.shades_classic)
    : undefined;
  const evaluation: EvaluationOptions = {
    dataset: args.dataset,
    ratingsPath: args.ratingsPath,
    moviesPath: args.moviesPath,
    tagsPath: args.tagsPath,
    trainPath: args.trainPath,
    testPath: args.testPath,
    k: args.k,
    targetBuckets: args.buckets,
    ...(options.models && { models: options.models }),
    onLoaded: ({ train, test, report }) => {
      for (const line of describeBadRows(report)) stderr.write(`eddy eval: bad row ${line}\n`);
      for (const note of report.notes) stderr.write(`eddy eval: ${note}\n`);
      bar?.start(train + test, 0);
    },
    onProgress: (done) => bar?.update(done),
  };
  let result: EvaluationResult;
  try {
    result = await runEvaluation(evaluation);
  } finally {
    bar?.stop();
  }
  await writeReport(result, { jsonPath: args.reportPath, htmlPath: args.htmlPath }, { subtitle: `dataset: ${args.dataset} (${Object.values(result.dataset.files).join(', ')})` });
  stdout.write(`${table(result)}\n`);
  if (args.json) stdout.write(`${JSON.stringify(summarise(result))}\n`);
  return 0;
}

/** The CLI's command module shape (`pipelines/commands.ts`). */
export async function main(argv: readonly string[]): Promise<number> {
  return runEvalCommand(argv);
}
