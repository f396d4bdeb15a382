import type { Predictor, SparseFeatures } from '../models/learner.js';
import { FtrlPredictor } from '../models/learners/ftrl.js';
import type { RowEncoder } from '../models/row-features.js';
import { hashString } from '../models/hashing.js';
import type { FeatureLayout } from '../models/onnx/contract.js';
import type { Scorer } from '../models/scorer.js';
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
      this.wideLogit?.(rows, itemIds),
    );
    return { scores: result.scores, version: result.version };
  }
}
