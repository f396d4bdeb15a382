import { sigmoid, type ModelVersion, type Predictor, type SparseFeatures } from '../models/learner.js';
import { FtrlPredictor } from '../models/learners/ftrl.js';
import { headBaseOf, ONLINE_HEAD_KIND, OnlineHeadPredictor } from '../models/learners/online-head.js';
import { exportOnnx } from '../models/rankers/export.js';
import { importOnnx, onnxDigest } from '../models/rankers/import.js';
import type { RowEncoder } from '../models/row-features.js';
import { hashString } from '../models/hashing.js';
import { readContract, type FeatureLayout } from '../models/onnx/contract.js';
import { Scorer, type ScorerSessionOptions } from '../models/scorer.js';
import type { ScoringThread } from '../models/session-thread.js';
import type { FeatureRows } from './features/rows.js';

/** The Ranker seam: feature rows of a request's candidates in, one click probability per candidate out. */
export interface Ranker {
  /** The model family, for responses and metrics (e.g. `ftrl`, `onnx`). */
  readonly name: string;
  /** The version serving now. */
  readonly version: string;
  score(rows: FeatureRows, itemIds: readonly string[]): Promise<RankerScores> | RankerScores;
}

export interface RankerScores {
  readonly scores: Float32Array;
  /** The version that produced these scores (a swap may land between two requests, never within one). */
  readonly version: string;
}

/**
 * Weights on a few interpretable row features, served until the first learned version arrives, so a fresh
 * deployment already ranks by the user's affinities and co-visitation instead of at random.
 */
export const COLD_START_WEIGHTS: Readonly<Record<string, number>> = {
  ui_affinity: 2,
  ui_covisit: 1,
  item_trending: 0.3,
  item_ctr: 1,
};

export function coldStartPredictor(encoder: RowEncoder, weights: Readonly<Record<string, number>> = COLD_START_WEIGHTS): FtrlPredictor {
  const dense = new Float32Array(2 ** encoder.bits + 1);
  for (const [name, weight] of Object.entries(weights)) dense[encoder.bucketOf(name)] = weight;
  return new FtrlPredictor(dense, encoder.bits);
}

/**
 * An online model over hashed row features. `swap` replaces the predictor by one reference assignment, so a request
 * scores entirely with the version it started with and no request ever waits for a swap.
 */
export class OnlineRanker implements Ranker {
  private current: { predictor: Predictor<SparseFeatures>; version: string };

  constructor(
    readonly name: string,
    private readonly encoder: RowEncoder,
    predictor: Predictor<SparseFeatures>,
    version: string,
  ) {
    this.current = { predictor, version };
  }

  get version(): string {
    return this.current.version;
  }

  swap(predictor: Predictor<SparseFeatures>, version: string): void {
    this.current = { predictor, version };
  }

  score(rows: FeatureRows, itemIds: readonly string[]): RankerScores {
    const { predictor, version } = this.current;
    const scores = new Float32Array(rows.count);
    for (let i = 0; i < rows.count; i++) {
      scores[i] = predictor.predict(this.encoder.encode(rows.names, rows.row(i), itemIds[i]!));
    }
    return { scores, version };
  }
}

/** The layout an ONNX ranker must declare to be served on feature rows: the rows as dense input, the item as a field. */
export function servingLayout(featureNames: readonly string[]): FeatureLayout {
  return { denseFeatures: featureNames, categoricalFields: [ITEM_FIELD] };
}

export const ITEM_FIELD = 'item';

/** Index of an item in a hashed vocabulary of `size` entries; 0 is reserved for unknown. */
export function itemIndex(itemId: string, size: number): number {
  return size > 1 ? 1 + (hashString(itemId) % (size - 1)) : 0;
}

/**
 * An ONNX ranker whose contract takes the feature rows as its dense input and the hashed item id as its one
 * categorical field, optionally with an online model's wide logit added to the deep logit before the sigmoid.
 */
export class OnnxRanker implements Ranker {
  readonly name = 'onnx';

  constructor(
    private readonly scorer: Scorer,
    private readonly wideLogit?: (rows: FeatureRows, itemIds: readonly string[]) => Float32Array,
  ) {}

  get version(): string {
    return this.scorer.model.version;
  }

  async score(rows: FeatureRows, itemIds: readonly string[]): Promise<RankerScores> {
    const width = rows.width;
    const values = rows.values;
    const vocabulary = this.scorer.model.contract.categorical.fields[0]?.vocabularySize ?? 0;
    const result = await this.scorer.scoreWith(
      rows.count,
      (dense, categorical) => {
        dense.set(values.subarray(0, rows.count * width));
        for (let i = 0; i < rows.count; i++) categorical[i] = itemIndex(itemIds[i]!, vocabulary);
      },
      // itemIndex hashes into the vocabulary of the version that runs: it is read in the same turn as the run starts.
      { wideLogits: this.wideLogit?.(rows, itemIds), indicesInRange: true },
    );
    return { scores: result.scores, version: result.version };
  }
}

export interface HeadRankerOptions {
  /** The layout of the rows it scores: `servingLayout(store.names)`. */
  readonly layout: FeatureLayout;
  /** Must hash rows as the trainer's encoder does (same bits). */
  readonly encoder: RowEncoder;
  /** Label of the deep model version. Default "1". */
  readonly version?: string;
  readonly session?: ScorerSessionOptions;
  /** Where the session runs (see `ScorerOptions.thread`). Default `main`. */
  readonly thread?: ScoringThread;
}

/**
 * An ONNX deep ranker with an online head on top: one session run per request gives each candidate's penultimate
 * activations h, and the head version serving now turns h plus the candidate's hashed row features into the score.
 * Until the first head version arrives it serves the deep model's own scores. Head versions are swapped in by one
 * reference assignment, so a request scores entirely with the head it started with and none waits for a swap.
 */
export class HeadRanker implements Ranker {
  readonly name = 'onnx-head';
  private current: { readonly head: OnlineHeadPredictor | undefined; readonly version: string | undefined } = { head: undefined, version: undefined };

  private constructor(
    private readonly scorer: Scorer,
    private readonly encoder: RowEncoder,
    /** The digest of the deep model's ONNX bytes, which head versions learned on it carry. */
    readonly base: string,
    /** Units of the penultimate layer: the dense inputs of every head. */
    readonly width: number,
  ) {}

  /**
   * Serves `modelBytes`, an Eddy-exported MLP-kind ranker (with or without a penultimate output: one is added by
   * re-exporting the same parameters when it lacks it), for online-head versions learned on exactly these bytes.
   */
  static async create(modelBytes: Uint8Array, options: HeadRankerOptions): Promise<HeadRanker> {
    const deep = importOnnx(modelBytes);
    if (!deep.architecture.mlp) throw new Error(`an online head sits on an MLP's last layer; a ${deep.kind} has none`);
    const served = readContract(modelBytes).output.penultimate === undefined ? exportOnnx(deep, { penultimateOutput: true }) : modelBytes;
    const scorer = await Scorer.create(served, { layout: options.layout, version: options.version ?? '1', ...(options.session ? { session: options.session } : {}), ...(options.thread ? { thread: options.thread } : {}) });
    return new HeadRanker(scorer, options.encoder, onnxDigest(modelBytes), deep.finalLayer().weights.length);
  }

  /** `<deep model version>+<head version>`, or the deep model's version alone before any head arrived. */
  get version(): string {
    const head = this.current.version;
    return head === undefined ? this.scorer.model.version : `${this.scorer.model.version}+${head}`;
  }

  /** Whether `version` is a head learned on this deep model. */
  accepts(version: ModelVersion): boolean {
    return version.kind === ONLINE_HEAD_KIND && headBaseOf(version) === this.base;
  }

  /** Serves `version` from the next request on; throws, leaving the current head serving, when it does not fit. */
  swapVersion(version: ModelVersion): void {
    if (!this.accepts(version)) {
      throw new Error(`head ${version.model}@${version.version} (${version.kind}, base "${headBaseOf(version)}") was not learned on deep model ${this.base}`);
    }
    const head = new OnlineHeadPredictor(version);
    if (head.inputSize !== this.width) throw new Error(`head ${version.version} reads ${head.inputSize} activations; the deep model's penultimate layer has ${this.width}`);
    this.current = { head, version: version.version };
  }

  async score(rows: FeatureRows, itemIds: readonly string[]): Promise<RankerScores> {
    const { head, version } = this.current;
    const count = rows.count;
    const width = rows.width;
    const values = rows.values;
    const vocabulary = this.scorer.model.contract.categorical.fields[0]?.vocabularySize ?? 0;
    const result = await this.scorer.scoreWith(
      count,
      (dense, categorical) => {
        dense.set(values.subarray(0, count * width));
        for (let i = 0; i < count; i++) categorical[i] = itemIndex(itemIds[i]!, vocabulary);
      },
      { indicesInRange: true },
    );
    const deepVersion = result.version;
    if (head === undefined || result.penultimate === undefined) return { scores: result.scores, version: deepVersion };
    const h = result.penultimate;
    const scores = new Float32Array(count);
    for (let i = 0; i < count; i++) {
      scores[i] = sigmoid(head.logitAt(h, i * this.width, this.encoder.encode(rows.names, rows.row(i), itemIds[i]!)));
    }
    return { scores, version: `${deepVersion}+${version}` };
  }

  close(): Promise<void> {
    return this.scorer.close();
  }
}
