import { mkdir, writeFile } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import cliProgress from 'cli-progress';
import { evaluatePrequential } from '../models/evaluation/prequential.js';
import { logLoss, rocAuc } from '../models/metrics.js';
import { contractOf, exportOnnx } from '../models/rankers/export.js';
import { Ranker, type Example, type RankerKind } from '../models/rankers/ranker.js';
import { train } from '../models/rankers/trainer.js';
import { ITEM_FIELD, itemIndex } from '../operators/rank.js';
import { parseLabelledSample } from '../schema/samples.js';
import { EddyRecommender, type ReplaySample } from './eddy-recommender.js';
import { numberedLines } from './datasets/jsonl.js';
import { loadMovieLens } from './datasets/movielens.js';
import { numberFlag, parseFlags } from './replay-command.js';

/**
 * `eddy train`: offline training of ONNX-exportable rankers on replayed samples, evaluated on a temporal split.
 *
 * Samples come either from a JSONL file of labelled samples (the `samples` topic's wire type: served impressions with
 * their point-in-time features) or from a MovieLens replay through Eddy's serving path, where each positive rating
 * of a recalled item is a positive and items recalled for the same request are negatives, with the feature store's
 * row as of that moment (see `EddyRecommender`). Samples are ordered by time; the earliest `1 - testShare` train,
 * the rest test: AUC and log loss of each ranker on later samples, never on the past it learned from. The ranker
 * with the best test AUC is written as ONNX with the serving contract (feature rows as dense input, the hashed item
 * as its one categorical field), so `EDDY_MODEL_FILE` can serve it on a store with the same feature config.
 */

export const TRAIN_USAGE = `usage: eddy train --samples FILE.jsonl --out MODEL.onnx [options]
       eddy train --dataset movielens --ratings FILE --movies FILE --out MODEL.onnx [options]

options:
  --samples FILE          labelled samples, one JSON object per line (the samples topic's format)
  --dataset movielens     build samples by replaying MovieLens through Eddy's serving path
  --ratings FILE --movies FILE [--tags FILE]
  --out FILE              where the best ranker's ONNX model goes (a .json with its figures is written beside it)
  --rankers LIST          comma-separated kinds (default logistic-regression,factorization-machine); also deepfm,
                          embedding-mlp
  --test-share X          share of the latest samples held out (default 0.2)
  --epochs N              passes over the training samples (default 3)
  --learning-rate X       Adam step size (default 0.01)
  --items N               hashed item vocabulary (default 4096)
  --json                  print the figures as one JSON line, last on stdout
  --no-progress           no progress bar on stderr`;

export class TrainArgsError extends Error {
  override readonly name = 'TrainArgsError';
}

const KINDS: readonly RankerKind[] = ['logistic-regression', 'factorization-machine', 'deepfm', 'embedding-mlp'];

export interface TrainArgs {
  readonly samples?: string;
  readonly ratings?: string;
  readonly movies?: string;
  readonly tags?: string;
  readonly out: string;
  readonly rankers: readonly RankerKind[];
  readonly testShare: number;
  readonly epochs: number;
  readonly learningRate: number;
  readonly items: number;
  readonly json: boolean;
  readonly progress: boolean;
  readonly help: boolean;
}

export function parseTrainArgs(argv: readonly string[]): TrainArgs {
  const fail = (message: string) => new TrainArgsError(message);
  const { values, switches } = parseFlags(argv, ['samples', 'dataset', 'ratings', 'movies', 'tags', 'out', 'rankers', 'test-share', 'epochs', 'items', 'learning-rate'], ['json', 'no-progress', 'help'], fail);
  const help = switches.has('help');
  const dataset = values.get('dataset');
  if (dataset !== undefined && dataset !== 'movielens') throw fail(`--dataset must be movielens, got "${dataset}"`);
  if (!help) {
    if (values.has('samples') === (dataset !== undefined)) throw fail('give either --samples FILE or --dataset movielens with --ratings and --movies');
    if (dataset && (!values.has('ratings') || !values.has('movies'))) throw fail('--dataset movielens needs --ratings FILE and --movies FILE');
    if (!values.has('out')) throw fail('--out FILE is required');
  }
  const rankers = (values.get('rankers') ?? 'logistic-regression,factorization-machine').split(',').map((r) => r.trim());
  for (const r of rankers) if (!(KINDS as readonly string[]).includes(r)) throw fail(`--rankers: unknown ranker "${r}"; choose from ${KINDS.join(', ')}`);
  const testShare = values.has('test-share') ? numberFlag('test-share', values.get('test-share')!, 0, fail) : 0.2;
  if (!(testShare > 0 && testShare < 1)) throw fail(`--test-share must be between 0 and 1, got ${testShare}`);
  const whole = (flag: string, fallback: number) => {
    const value = values.has(flag) ? numberFlag(flag, values.get(flag)!, 1, fail) : fallback;
    if (!Number.isInteger(value)) throw fail(`--${flag} must be a whole number`);
    return value;
  };
  const optional = (flag: string) => (values.has(flag) ? { [flag]: values.get(flag)! } : {});
  return {
    ...optional('samples'),
    ...optional('ratings'),
    ...optional('movies'),
    ...optional('tags'),
    out: values.get('out') ?? '',
    rankers: [...new Set(rankers)] as RankerKind[],
    testShare,
    epochs: whole('epochs', 3),
    learningRate: values.has('learning-rate') ? numberFlag('learning-rate', values.get('learning-rate')!, 0, fail) : 0.01,
    items: whole('items', 4096),
    json: switches.has('json'),
    progress: !switches.has('no-progress'),
    help,
  };
}

export interface TrainingSample {
  readonly itemId: string;
  readonly ts: number;
  readonly label: 0 | 1;
  readonly names: readonly string[];
  readonly values: ArrayLike<number>;
}

/** Reads labelled samples; invalid lines are reported with their line numbers and skipped. */
export async function readSamples(path: string, onBad: (line: number, reason: string) => void): Promise<TrainingSample[]> {
  const samples: TrainingSample[] = [];
  for await (const { line, text } of numberedLines(path)) {
    const parsed = parseLabelledSample(text);
    if (!parsed.ok) onBad(line, `${parsed.error.field ? `${parsed.error.field}: ` : ''}${parsed.error.message}`);
    else samples.push(parsed.value);
  }
  return samples;
}

/** Replays MovieLens through Eddy's serving path and collects what its online ranker learned from. */
export async function movieLensSamples(paths: { ratings: string; movies: string; tags?: string }, onProgress?: (done: number, total: number) => void): Promise<TrainingSample[]> {
  const { events } = await loadMovieLens({ ratingsPath: paths.ratings, moviesPath: paths.movies, tagsPath: paths.tags });
  const samples: ReplaySample[] = [];
  const eddy = new EddyRecommender({ onSample: (s) => samples.push(s) });
  await evaluatePrequential([eddy], { test: events }, { progressEvery: 1000, ...(onProgress && { onProgress: (done: number) => onProgress(done, events.length) }) });
  return samples;
}

export interface RankerFigures {
  readonly auc: number;
  readonly logLoss: number;
  readonly trainLoss: number;
}

export interface TrainResult {
  readonly samples: number;
  readonly skipped: number;
  readonly train: number;
  readonly test: number;
  /** Event time where the test samples start. */
  readonly splitTs: number;
  readonly features: readonly string[];
  readonly rankers: Record<string, RankerFigures>;
  readonly best: RankerKind;
  readonly out: string;
}

/** Trains each ranker kind on the earlier samples and scores it on the later ones; writes the best as ONNX. */
export async function trainRankers(
  all: readonly TrainingSample[],
  options: { rankers: readonly RankerKind[]; testShare: number; epochs: number; learningRate: number; items: number; out: string },
): Promise<TrainResult> {
  if (all.length === 0) throw new Error('no samples to train on');
  const names = all[0]!.names;
  const usable = all.filter((s) => s.names.length === names.length && s.names.every((n, i) => n === names[i]));
  const ordered = [...usable].sort((a, b) => a.ts - b.ts);
  const cut = Math.floor(ordered.length * (1 - options.testShare));
  // Rows carry raw counts and ages (hours, seconds) side by side; each feature is trained divided by its largest
  // training magnitude, and the division is folded into the weights on export, so the model takes raw rows as served.
  const scales = new Float64Array(names.length).fill(1);
  for (const s of ordered.slice(0, cut)) for (let j = 0; j < names.length; j++) scales[j] = Math.max(scales[j]!, Math.abs(s.values[j]!));
  const toExample = (s: TrainingSample): Example => ({
    dense: Float32Array.from(s.values, (x, j) => x / scales[j]!),
    categorical: Int32Array.of(itemIndex(s.itemId, options.items)),
    label: s.label,
  });
  const raw = (s: TrainingSample): Example => ({ dense: Float32Array.from(s.values), categorical: Int32Array.of(itemIndex(s.itemId, options.items)), label: s.label });
  const trainSet = ordered.slice(0, cut).map(toExample);
  const testSet = ordered.slice(cut).map(raw);
  if (trainSet.length === 0 || testSet.length === 0) throw new Error(`the temporal split left ${trainSet.length} training and ${testSet.length} test samples; more samples are needed`);
  if (!testSet.some((e) => e.label === 1) || !testSet.some((e) => e.label === 0)) throw new Error('the test samples need both positives and negatives for AUC');
  const figures: Record<string, RankerFigures> = {};
  let best: { kind: RankerKind; auc: number; ranker: Ranker } | undefined;
  for (const kind of options.rankers) {
    const ranker = new Ranker({ kind, denseFeatures: names, categoricalFields: [{ name: ITEM_FIELD, vocabularySize: options.items }], hidden: [64, 32] });
    const report = train(ranker, trainSet, { epochs: options.epochs, learningRate: options.learningRate });
    foldDenseScales(ranker, scales);
    const scores = new Float64Array(testSet.length);
    const labels = new Float64Array(testSet.length);
    let loss = 0;
    testSet.forEach((example, i) => {
      scores[i] = ranker.predict(example);
      labels[i] = example.label;
      loss += logLoss(scores[i]!, example.label);
    });
    const auc = rocAuc(scores, labels);
    figures[kind] = { auc, logLoss: loss / testSet.length, trainLoss: report.epochLosses.at(-1)! };
    if (!best || auc > best.auc) best = { kind, auc, ranker };
  }
  await mkdir(dirname(options.out), { recursive: true });
  await writeFile(options.out, exportOnnx(best!.ranker));
  const result: TrainResult = {
    samples: all.length,
    skipped: all.length - usable.length,
    train: trainSet.length,
    test: testSet.length,
    splitTs: ordered[cut]!.ts,
    features: names,
    rankers: figures,
    best: best!.kind,
    out: options.out,
  };
  await writeFile(`${options.out}.json`, `${JSON.stringify({ ...result, contract: contractOf(best!.ranker) }, null, 2)}\n`);
  return result;
}

/**
 * Makes a ranker trained on `x / scales` take raw `x`: every parameter that multiplies dense feature j (its linear
 * weight, its FM factor, its row of the first MLP layer) is divided by scales[j].
 */
export function foldDenseScales(ranker: Ranker, scales: ArrayLike<number>): void {
  const { wDense, vDense, layers } = ranker.layout;
  const p = ranker.params;
  const k = ranker.embeddingDim;
  const first = layers[0];
  for (let j = 0; j < ranker.nDense; j++) {
    const s = scales[j]!;
    if (wDense >= 0) p[wDense + j]! /= s;
    if (vDense >= 0) for (let c = 0; c < k; c++) p[vDense + j * k + c]! /= s;
    if (first) for (let o = 0; o < first.outputs; o++) p[first.weights + j * first.outputs + o]! /= s;
  }
}

export async function runTrainCommand(argv: readonly string[], io: { stdout?: NodeJS.WritableStream; stderr?: NodeJS.WritableStream } = {}): Promise<number> {
  const stdout = io.stdout ?? process.stdout;
  const stderr = io.stderr ?? process.stderr;
  let args: TrainArgs;
  try {
    args = parseTrainArgs(argv);
  } catch (error) {
    if (!(error instanceof TrainArgsError)) throw error;
    stderr.write(`eddy train: ${error.message}\n\n${TRAIN_USAGE}\n`);
    return 2;
  }
  if (args.help) {
    stdout.write(`${TRAIN_USAGE}\n`);
    return 0;
  }
  let samples: TrainingSample[];
  if (args.samples) {
    samples = await readSamples(args.samples, (line, reason) => stderr.write(`eddy train: bad sample ${basename(args.samples!)}:${line}: ${reason}\n`));
  } else {
    const bar = args.progress ? new cliProgress.SingleBar({ stream: stderr, format: 'replay [{bar}] {percentage}% | {value}/{total} events | ETA {eta_formatted}', hideCursor: false }, cliProgress.Presets.shades_classic) : undefined;
    let started = false;
    try {
      samples = await movieLensSamples({ ratings: args.ratings!, movies: args.movies!, ...(args.tags && { tags: args.tags }) }, (done, total) => {
        if (!started) bar?.start(total, 0);
        started = true;
        bar?.update(done);
      });
    } finally {
      bar?.stop();
    }
  }
  const result = await trainRankers(samples, args);
  const lines = Object.entries(result.rankers).map(([kind, f]) => `${kind.padEnd(22)} AUC ${f.auc.toFixed(4)}  log loss ${f.logLoss.toFixed(4)}`);
  stdout.write(`${result.train} training and ${result.test} test samples (split at ${new Date(result.splitTs).toISOString()})\n${lines.join('\n')}\nbest: ${result.best}, written to ${result.out}\n`);
  if (args.json) stdout.write(`${JSON.stringify(result)}\n`);
  return 0;
}

/** The CLI's command module shape (`pipelines/commands.ts`). */
export async function main(argv: readonly string[]): Promise<number> {
  return runTrainCommand(argv);
}
