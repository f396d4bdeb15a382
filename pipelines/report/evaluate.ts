import type { InputEvent } from '../../schema/events.js';
import { ItemKnnRecommender } from '../../models/evaluation/itemknn.js';
import type { BucketSpec } from '../../models/evaluation/metrics-over-time.js';
import { PopularityRecommender } from '../../models/evaluation/popularity.js';
import { PrequentialEvaluation, type PrequentialResult } from '../../models/evaluation/prequential.js';
import type { Recommender } from '../../models/evaluation/recommender.js';
import { loadJsonl } from '../datasets/jsonl.js';
import { loadMovieLens, loadMovieLensSplit } from '../datasets/movielens.js';
import { emptyReport, reportBadRow, type DatasetReport } from '../datasets/problems.js';

/**
 * One evaluation run: read a dataset, replay it through every model prequentially (after learning the training
 * stream, when there is one), and return the figures. The CLI and the HTML report build on this.
 */

export interface EvaluationOptions {
  /** Default `'movielens'`. */
  readonly dataset?: 'movielens' | 'jsonl';
  /** MovieLens ratings, or with `dataset: 'jsonl'` the events file. Either this or `trainPath` + `testPath`. */
  readonly ratingsPath?: string | undefined;
  readonly moviesPath?: string | undefined;
  readonly tagsPath?: string | undefined;
  readonly trainPath?: string | undefined;
  readonly testPath?: string | undefined;
  /** Default 10. */
  readonly k?: number;
  /** The models, all fed the same events. Default: `baselines()`. */
  readonly models?: readonly Recommender[];
  /** Default: about `targetBuckets` groups of scored events. */
  readonly buckets?: BucketSpec;
  /** Over-time points when `buckets` is not given. Default 40. */
  readonly targetBuckets?: number;
  /** Progress over all events (training then test). */
  readonly onProgress?: (done: number, total: number) => void;
  /** Called once the dataset is read, before replay starts. */
  readonly onLoaded?: (info: { readonly train: number; readonly test: number; readonly report: DatasetReport }) => void;
}

export interface EvaluationResult extends PrequentialResult {
  readonly dataset: {
    readonly kind: 'movielens' | 'jsonl';
    readonly files: Record<string, string>;
    readonly rows: number;
    readonly badRows: number;
    /** The first bad rows with file, line and reason. */
    readonly bad: DatasetReport['bad'];
    readonly notes: readonly string[];
  };
}

/** The baselines every run compares against: global popularity and item-kNN co-visitation. */
export function baselines(): Recommender[] {
  return [new PopularityRecommender(), new ItemKnnRecommender()];
}

interface Streams {
  readonly train: InputEvent[];
  readonly test: InputEvent[];
  readonly report: DatasetReport;
  readonly files: Record<string, string>;
}

function required(value: string | undefined, what: string): string {
  if (!value) throw new Error(`${what} is required`);
  return value;
}

async function loadStreams(options: EvaluationOptions): Promise<Streams> {
  const kind = options.dataset ?? 'movielens';
  const split = options.trainPath !== undefined || options.testPath !== undefined;
  if (split && (!options.trainPath || !options.testPath)) throw new Error('a train file and a test file go together: give both or neither');
  if (split && options.ratingsPath) throw new Error('give either a ratings file or a train and a test file, not both');
  if (!split && !options.ratingsPath) throw new Error(kind === 'jsonl' ? 'an events file (or a train and a test file) is required' : 'a ratings file (or a train and a test file) is required');
  const files: Record<string, string> = {};
  for (const [key, value] of Object.entries({ ratings: options.ratingsPath, movies: options.moviesPath, tags: options.tagsPath, train: options.trainPath, test: options.testPath })) {
    if (value) files[key] = value;
  }
  if (kind === 'jsonl') {
    if (!split) {
      const { events, report } = await loadJsonl(options.ratingsPath!);
      return { train: [], test: events, report, files };
    }
    const train = await loadJsonl(options.trainPath!);
    const test = await loadJsonl(options.testPath!);
    return { train: train.events, test: test.events, report: mergeReports(train.report, test.report), files };
  }
  const moviesPath = required(options.moviesPath, 'the MovieLens movies file');
  if (!split) {
    const { events, report } = await loadMovieLens({ ratingsPath: options.ratingsPath!, moviesPath, tagsPath: options.tagsPath });
    return { train: [], test: events, report, files };
  }
  const { train, test, report } = await loadMovieLensSplit({ trainPath: options.trainPath!, testPath: options.testPath!, moviesPath, tagsPath: options.tagsPath });
  return { train, test, report, files };
}

function mergeReports(a: DatasetReport, b: DatasetReport): DatasetReport {
  const merged = emptyReport();
  merged.rows = a.rows + b.rows;
  merged.events = a.events + b.events;
  for (const bad of [...a.bad, ...b.bad]) reportBadRow(merged, bad);
  merged.badCount = a.badCount + b.badCount;
  merged.notes.push(...a.notes, ...b.notes);
  return merged;
}

function countBehaviour(events: readonly InputEvent[]): number {
  let n = 0;
  for (const event of events) if (event.type !== 'item' && event.type !== 'user') n++;
  return n;
}

export async function runEvaluation(options: EvaluationOptions): Promise<EvaluationResult> {
  const streams = await loadStreams(options);
  options.onLoaded?.({ train: streams.train.length, test: streams.test.length, report: streams.report });
  const total = streams.train.length + streams.test.length;
  // Roughly half of the behaviour events are scored on MovieLens (ratings of 4+ on new items); the bucket size only
  // needs to be in the right range for the charts.
  const targetBuckets = options.targetBuckets ?? 40;
  const buckets = options.buckets ?? { by: 'events', size: Math.max(1, Math.ceil(countBehaviour(streams.test) / 2 / targetBuckets)) };
  const progressEvery = Math.max(1, Math.floor(total / 200));
  let trained = 0;
  const evaluation = new PrequentialEvaluation(options.models ?? baselines(), {
    k: options.k ?? 10,
    buckets,
    progressEvery,
    onProgress: (done, phase) => {
      if (phase === 'train') trained = done;
      options.onProgress?.(phase === 'train' ? done : trained + done, total);
    },
  });
  if (streams.train.length > 0) await evaluation.train(streams.train);
  await evaluation.test(streams.test);
  const { report } = streams;
  return {
    ...evaluation.result(),
    dataset: { kind: options.dataset ?? 'movielens', files: streams.files, rows: report.rows, badRows: report.badCount, bad: report.bad.slice(0, 100), notes: report.notes },
  };
}

export interface EvaluationSummary {
  readonly protocol: 'prequential';
  readonly events: number;
  readonly evaluated: number;
  readonly k: number;
  readonly models: Record<string, { hr: number; ndcg: number; mrr: number; coverage: number; novelty: number }>;
}

/** The headline figures only, as the CLI prints them on its last line. */
export function summarise(result: PrequentialResult): EvaluationSummary {
  const models: EvaluationSummary['models'] = {};
  for (const [name, m] of Object.entries(result.models)) models[name] = { hr: m.hr, ndcg: m.ndcg, mrr: m.mrr, coverage: m.coverage, novelty: m.novelty };
  return { protocol: result.protocol, events: result.events, evaluated: result.evaluated, k: result.k, models };
}
