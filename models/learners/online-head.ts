import { bucketMask } from '../hashing.js';
import {
  numberParam,
  sigmoid,
  tensorOf,
  type ExportMeta,
  type Learner,
  type ModelVersion,
  type Sample,
  type SparseFeatures,
  versionHeader,
} from '../learner.js';
import { mulberry32, sampleNormal } from '../random.js';

/**
 * Online fine-tuning of a deep ranker's last layer plus hashed embeddings, by AdaGrad, one sample at a time.
 *
 * How it plugs in: export the MLP-kind ranker with its penultimate activations h (the input of its final Dense(1)
 * layer) as an extra output (`exportOnnx(ranker, { penultimateOutput: true })`); `Scorer.scoreWith` then returns
 * them with the logits, one row of `width` floats per candidate. Start the head from the ranker's own last layer,
 * `new OnlineHeadLearner({ inputSize: width, initialWeights: f.weights, initialBias: f.bias })` with
 * `f = ranker.finalLayer()`, so before any learning it reproduces the ranker's logit. Serving scores each candidate
 * with `head.predict({ dense: h, sparse })` (or a version exported from it, loaded with `predictorFor`); the samples
 * pipeline logs h and the hashed ids with each impression so the trainer can `learn` the same rows. It learns:
 *
 *   e = sum_j x_j E[j]               (a hashed embedding bag, k dimensions)
 *   logit = b + w . h + u . e
 *
 * The session's own weights stay frozen; the online part is the last layer (w, b) and a residual embedding table
 * (E, read out through u) that picks up items and users the deep model has not seen yet, as Monolith does. With
 * r = weight (p - y) and objective `weight * logloss + l2/2 (|w|^2 + |u|^2 + sum_j |E[j]|^2)` over active rows:
 *   d/db = r;  d/dw = r h + l2 w;  d/du = r e + l2 u;  d/dE[j] = r x_j u + l2 E[j].
 */
export interface HeadFeatures {
  /** The deep model's penultimate activations for this candidate. */
  readonly dense: ArrayLike<number>;
  /** Hashed ids and context for the embedding bag. */
  readonly sparse?: SparseFeatures;
}

export interface OnlineHeadOptions {
  /** Length of the dense input (the penultimate layer's width). Required. */
  readonly inputSize: number;
  /** The ranker's last-layer weights, `inputSize` long. Default zeros. */
  readonly initialWeights?: ArrayLike<number>;
  /** The ranker's last-layer bias. Default 0. */
  readonly initialBias?: number;
  /** log2 of the embedding rows. Default 16. */
  readonly bits?: number;
  /** Embedding dimension. Default 8. */
  readonly embeddingDim?: number;
  /** AdaGrad step size. Default 0.01. */
  readonly learningRate?: number;
  /** L2 strength. Default 1e-6. */
  readonly l2?: number;
  /** Standard deviation of initial embeddings and readout. Default 0.01. */
  readonly initStd?: number;
  /** Seed of the initialisation. Default 1. */
  readonly seed?: number;
}

export const ONLINE_HEAD_KIND = 'online-head';
const ADAGRAD_EPSILON = 1e-8;

export interface HeadGradient {
  readonly bias: number;
  readonly weights: Float64Array;
  readonly readout: Float64Array;
  readonly embeddings: Map<number, Float64Array>;
}

export class OnlineHeadLearner implements Learner<HeadFeatures> {
  readonly kind = ONLINE_HEAD_KIND;
  readonly inputSize: number;
  readonly bits: number;
  readonly embeddingDim: number;
  readonly learningRate: number;
  readonly l2: number;
  readonly rows: number;
  readonly seed: number;
  readonly initStd: number;
  /** Parameters: b, w (inputSize), u (embeddingDim), E (rows x embeddingDim, row-major). */
  readonly bias = new Float64Array(1);
  readonly weights: Float64Array;
  readonly readout: Float64Array;
  readonly embeddings: Float32Array;
  private readonly biasAcc = new Float64Array(1);
  private readonly weightsAcc: Float64Array;
  private readonly readoutAcc: Float64Array;
  private readonly embeddingsAcc: Float32Array;
  private readonly mask: number;
  private readonly bag: Float64Array;
  samplesSeen = 0;

  constructor(options: OnlineHeadOptions) {
    if (!Number.isInteger(options.inputSize) || options.inputSize < 1) {
      throw new RangeError(`online head inputSize must be a positive integer, got ${options.inputSize}`);
    }
    this.inputSize = options.inputSize;
    this.bits = options.bits ?? 16;
    this.embeddingDim = options.embeddingDim ?? 8;
    this.learningRate = options.learningRate ?? 0.01;
    this.l2 = options.l2 ?? 1e-6;
    this.seed = options.seed ?? 1;
    this.initStd = options.initStd ?? 0.01;
    this.mask = bucketMask(this.bits);
    this.rows = this.mask + 1;
    this.weights = new Float64Array(this.inputSize);
    this.weightsAcc = new Float64Array(this.inputSize);
    this.readout = new Float64Array(this.embeddingDim);
    this.readoutAcc = new Float64Array(this.embeddingDim);
    this.embeddings = new Float32Array(this.rows * this.embeddingDim);
    this.embeddingsAcc = new Float32Array(this.rows * this.embeddingDim);
    this.bag = new Float64Array(this.embeddingDim);
    if (options.initialWeights) {
      if (options.initialWeights.length !== this.inputSize) {
        throw new RangeError(`initialWeights has ${options.initialWeights.length} entries, inputSize is ${this.inputSize}`);
      }
      this.weights.set(Array.from(options.initialWeights));
    }
    this.bias[0] = options.initialBias ?? 0;
    this.initialiseEmbeddings();
  }

  private initialiseEmbeddings(): void {
    const random = mulberry32(this.seed);
    // Both the table and the readout start small and random: were either zero, neither would ever get a gradient.
    for (let f = 0; f < this.embeddingDim; f++) this.readout[f] = this.initStd * sampleNormal(random);
    for (let i = 0; i < this.embeddings.length; i++) this.embeddings[i] = this.initStd * sampleNormal(random);
  }

  private checkDense(dense: ArrayLike<number>): void {
    if (dense.length !== this.inputSize) throw new RangeError(`online head expects ${this.inputSize} dense inputs, got ${dense.length}`);
  }

  /** The logit, leaving the embedding bag e in `this.bag`. */
  logit(features: HeadFeatures): number {
    const { dense, sparse } = features;
    this.checkDense(dense);
    let logit = this.bias[0]!;
    for (let d = 0; d < this.inputSize; d++) logit += this.weights[d]! * dense[d]!;
    const k = this.embeddingDim;
    const bag = this.bag;
    bag.fill(0);
    if (sparse) {
      const { indices, values } = sparse;
      for (let j = 0; j < indices.length; j++) {
        const row = (indices[j]! & this.mask) * k;
        const x = values === undefined ? 1 : values[j]!;
        for (let f = 0; f < k; f++) bag[f] = bag[f]! + x * this.embeddings[row + f]!;
      }
    }
    for (let f = 0; f < k; f++) logit += this.readout[f]! * bag[f]!;
    return logit;
  }

  predict(features: HeadFeatures): number {
    return sigmoid(this.logit(features));
  }

  loss(sample: Sample<HeadFeatures>): number {
    const p = sigmoid(this.logit(sample.features));
    const eps = 1e-15;
    let loss = -(sample.weight ?? 1) * (sample.label === 1 ? Math.log(Math.max(p, eps)) : Math.log(Math.max(1 - p, eps)));
    let squares = 0;
    for (const w of this.weights) squares += w * w;
    for (const u of this.readout) squares += u * u;
    const indices = sample.features.sparse?.indices ?? [];
    for (let j = 0; j < indices.length; j++) {
      const row = (indices[j]! & this.mask) * this.embeddingDim;
      for (let f = 0; f < this.embeddingDim; f++) squares += this.embeddings[row + f]! ** 2;
    }
    return loss + 0.5 * this.l2 * squares;
  }

  gradient(sample: Sample<HeadFeatures>): HeadGradient {
    const r = (sigmoid(this.logit(sample.features)) - sample.label) * (sample.weight ?? 1);
    const { dense, sparse } = sample.features;
    const k = this.embeddingDim;
    const weights = Float64Array.from(this.weights, (w, d) => r * dense[d]! + this.l2 * w);
    const readout = Float64Array.from(this.readout, (u, f) => r * this.bag[f]! + this.l2 * u);
    const embeddings = new Map<number, Float64Array>();
    if (sparse) {
      for (let j = 0; j < sparse.indices.length; j++) {
        const i = sparse.indices[j]! & this.mask;
        const x = sparse.values === undefined ? 1 : sparse.values[j]!;
        const g = embeddings.get(i) ?? new Float64Array(k);
        for (let f = 0; f < k; f++) g[f] = g[f]! + r * x * this.readout[f]! + this.l2 * this.embeddings[i * k + f]!;
        embeddings.set(i, g);
      }
    }
    return { bias: r, weights, readout, embeddings };
  }

  learn(sample: Sample<HeadFeatures>): number {
    const p = sigmoid(this.logit(sample.features));
    const r = (p - sample.label) * (sample.weight ?? 1);
    const { dense, sparse } = sample.features;
    const { learningRate, l2, embeddingDim: k, bag, readout, embeddings, embeddingsAcc } = this;
    const step = (g: number, acc: number) => (learningRate * g) / (Math.sqrt(acc) + ADAGRAD_EPSILON);
    this.biasAcc[0] = this.biasAcc[0]! + r * r;
    this.bias[0] = this.bias[0]! - step(r, this.biasAcc[0]!);
    for (let d = 0; d < this.inputSize; d++) {
      const g = r * dense[d]! + l2 * this.weights[d]!;
      this.weightsAcc[d] = this.weightsAcc[d]! + g * g;
      this.weights[d] = this.weights[d]! - step(g, this.weightsAcc[d]!);
    }
    // Embedding rows step along r x_j u with u as it was before this sample, matching the gradient.
    if (sparse) {
      for (let j = 0; j < sparse.indices.length; j++) {
        const row = (sparse.indices[j]! & this.mask) * k;
        const x = sparse.values === undefined ? 1 : sparse.values[j]!;
        for (let f = 0; f < k; f++) {
          const g = r * x * readout[f]! + l2 * embeddings[row + f]!;
          embeddingsAcc[row + f] = embeddingsAcc[row + f]! + g * g;
          embeddings[row + f] = embeddings[row + f]! - step(g, embeddingsAcc[row + f]!);
        }
      }
    }
    for (let f = 0; f < k; f++) {
      const g = r * bag[f]! + l2 * readout[f]!;
      this.readoutAcc[f] = this.readoutAcc[f]! + g * g;
      readout[f] = readout[f]! - step(g, this.readoutAcc[f]!);
    }
    this.samplesSeen++;
    return p;
  }

  /** Tensors: `bias` (b and its accumulator), `weights`, `weightsAcc`, `readout`, `readoutAcc`, and the touched embedding rows. */
  export(meta: ExportMeta): ModelVersion {
    const k = this.embeddingDim;
    const touched: number[] = [];
    for (let i = 0; i < this.rows; i++) {
      for (let f = 0; f < k; f++) {
        if (this.embeddingsAcc[i * k + f] !== 0) {
          touched.push(i);
          break;
        }
      }
    }
    const indices = Uint32Array.from(touched);
    const rows = new Float32Array(indices.length * k);
    const rowsAcc = new Float32Array(indices.length * k);
    indices.forEach((i, n) => {
      rows.set(this.embeddings.subarray(i * k, i * k + k), n * k);
      rowsAcc.set(this.embeddingsAcc.subarray(i * k, i * k + k), n * k);
    });
    return {
      ...versionHeader(meta, this.kind, this.samplesSeen),
      params: {
        inputSize: this.inputSize,
        bits: this.bits,
        embeddingDim: k,
        learningRate: this.learningRate,
        l2: this.l2,
        seed: this.seed,
        initStd: this.initStd,
      },
      tensors: {
        bias: Float64Array.of(this.bias[0]!, this.biasAcc[0]!),
        weights: Float64Array.from(this.weights),
        weightsAcc: Float64Array.from(this.weightsAcc),
        readout: Float64Array.from(this.readout),
        readoutAcc: Float64Array.from(this.readoutAcc),
        embeddingIndices: indices,
        embeddingRows: rows,
        embeddingRowsAcc: rowsAcc,
      },
    };
  }

  restore(version: ModelVersion): void {
    if (version.kind !== this.kind) throw new Error(`cannot restore a ${version.kind} model into an online-head learner`);
    for (const name of ['inputSize', 'bits', 'embeddingDim', 'seed', 'initStd'] as const) {
      if (numberParam(version, name) !== this[name]) throw new Error(`cannot restore online head ${version.version}: ${name} differ`);
    }
    const k = this.embeddingDim;
    const bias = tensorOf(version, 'bias', Float64Array, 2);
    const indices = tensorOf(version, 'embeddingIndices', Uint32Array);
    const rows = tensorOf(version, 'embeddingRows', Float32Array, indices.length * k);
    const rowsAcc = tensorOf(version, 'embeddingRowsAcc', Float32Array, indices.length * k);
    this.initialiseEmbeddings();
    this.embeddingsAcc.fill(0);
    this.bias[0] = bias[0]!;
    this.biasAcc[0] = bias[1]!;
    this.weights.set(tensorOf(version, 'weights', Float64Array, this.inputSize));
    this.weightsAcc.set(tensorOf(version, 'weightsAcc', Float64Array, this.inputSize));
    this.readout.set(tensorOf(version, 'readout', Float64Array, k));
    this.readoutAcc.set(tensorOf(version, 'readoutAcc', Float64Array, k));
    indices.forEach((i, n) => {
      if (i >= this.rows) throw new Error(`online head ${version.version}: row ${i} is outside ${this.rows} rows`);
      this.embeddings.set(rows.subarray(n * k, n * k + k), i * k);
      this.embeddingsAcc.set(rowsAcc.subarray(n * k, n * k + k), i * k);
    });
    this.samplesSeen = version.samplesSeen;
  }

  static fromVersion(version: ModelVersion): OnlineHeadLearner {
    const p = version.params;
    const learner = new OnlineHeadLearner({
      inputSize: numberParam(version, 'inputSize'),
      bits: numberParam(version, 'bits'),
      embeddingDim: numberParam(version, 'embeddingDim'),
      learningRate: typeof p.learningRate === 'number' ? p.learningRate : undefined,
      l2: typeof p.l2 === 'number' ? p.l2 : undefined,
      seed: numberParam(version, 'seed'),
      initStd: numberParam(version, 'initStd'),
    });
    learner.restore(version);
    return learner;
  }
}
