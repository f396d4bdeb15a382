import { bucketMask } from '../hashing.js';
import {
  numberParam,
  sampleProblem,
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
 * How it plugs in: the trainer (`EDDY_ONLINE_LEARNER=head`) rebuilds the served MLP-kind ranker from its ONNX bytes
 * (`importOnnx`), recomputes h (the input of its final Dense(1) layer, `ranker.penultimate(row)`) from the
 * point-in-time feature values each sample carries, and starts the head from the ranker's own last layer,
 * `new OnlineHeadLearner({ inputSize: width, initialWeights: f.weights, initialBias: f.bias, base })` with
 * `f = ranker.finalLayer()`, so before any learning it reproduces the ranker's logit. Serving runs the same ranker
 * exported with h as a second output (`exportOnnx(ranker, { penultimateOutput: true })`, which `Scorer.scoreWith`
 * returns with the logits) and scores each candidate with the published version's `OnlineHeadPredictor` on h and
 * the candidate's hashed row features (operators/rank.ts `HeadRanker`). `base` names the deep model, so a head is
 * never restored onto, or served with, another one. It learns:
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
  /**
   * Names the frozen deep model whose penultimate activations the head reads (e.g. a digest of its ONNX bytes).
   * Versions carry it, so a head is never restored onto, or served with, another deep model. Default '' (unnamed).
   */
  readonly base?: string;
}

export const ONLINE_HEAD_KIND = 'online-head';

interface InitialState {
  readonly readout: Float64Array;
  readonly table: Float32Array;
}

const initialStates = new Map<string, InitialState>();

/**
 * The seeded starting readout and embedding table, computed once per shape and shared read-only: restoring a version
 * (every swap at serving, every guardrail load) then copies or references it instead of drawing millions of normals.
 */
function initialState(seed: number, rows: number, k: number, initStd: number): InitialState {
  const key = `${seed}/${rows}/${k}/${initStd}`;
  let state = initialStates.get(key);
  if (state === undefined) {
    const random = mulberry32(seed);
    // Both the table and the readout start small and random: were either zero, neither would ever get a gradient.
    const readout = Float64Array.from({ length: k }, () => initStd * sampleNormal(random));
    const table = new Float32Array(rows * k);
    for (let i = 0; i < table.length; i++) table[i] = initStd * sampleNormal(random);
    // A handful of shapes at most live in one process; a runaway variety must not grow without bound.
    if (initialStates.size >= 8) initialStates.clear();
    state = { readout, table };
    initialStates.set(key, state);
  }
  return state;
}

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
  readonly base: string;
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
    this.base = options.base ?? '';
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
    const initial = initialState(this.seed, this.rows, this.embeddingDim, this.initStd);
    this.readout.set(initial.readout);
    this.embeddings.set(initial.table);
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
        base: this.base,
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
    if (headBaseOf(version) !== this.base) {
      throw new Error(`cannot restore online head ${version.version}: it was learned on deep model "${headBaseOf(version)}", this head sits on "${this.base}"`);
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
      base: headBaseOf(version),
    });
    learner.restore(version);
    return learner;
  }
}

/** The deep model an online-head version was learned on ('' when unnamed). */
export function headBaseOf(version: ModelVersion): string {
  const base = version.params.base;
  return typeof base === 'string' ? base : '';
}

/** Why a head sample cannot be learned by a head of `inputSize` dense inputs, or undefined when it can. */
export function headSampleProblem(sample: Sample<HeadFeatures>, inputSize: number): string | undefined {
  if (sample.label !== 0 && sample.label !== 1) return `label must be 0 or 1, got ${String(sample.label)}`;
  if (sample.weight !== undefined && !(Number.isFinite(sample.weight) && sample.weight >= 0)) {
    return `weight must be a finite non-negative number, got ${sample.weight}`;
  }
  const dense = sample.features?.dense;
  if (!dense || dense.length !== inputSize) return `features.dense must have ${inputSize} values, got ${dense?.length ?? 'none'}`;
  for (let d = 0; d < dense.length; d++) if (!Number.isFinite(dense[d])) return `features.dense[${d}] must be finite, got ${dense[d]}`;
  const sparse = sample.features.sparse;
  if (sparse === undefined) return undefined;
  return sampleProblem({ features: sparse, label: sample.label });
}

/**
 * The serving form of an online-head version: the last layer, the readout and only the embedding rows learning
 * touched, over the shared seeded starting table. Loading one copies no table, so a swap costs little more than
 * decoding the version; it predicts exactly as the learner that exported it.
 */
export class OnlineHeadPredictor {
  readonly inputSize: number;
  readonly embeddingDim: number;
  readonly base: string;
  private readonly bias: number;
  private readonly weights: Float64Array;
  private readonly readout: Float64Array;
  private readonly mask: number;
  private readonly initialTable: Float32Array;
  /** The learned rows, back to back, and an open-addressing index from table row to its place among them. */
  private readonly learnedRows: Float32Array;
  private readonly slotKeys: Int32Array;
  private readonly slotRows: Int32Array;
  private readonly slotShift: number;
  private readonly bag: Float64Array;

  constructor(readonly version: ModelVersion) {
    if (version.kind !== ONLINE_HEAD_KIND) throw new Error(`cannot serve a ${version.kind} model as an online head`);
    this.inputSize = numberParam(version, 'inputSize');
    const bits = numberParam(version, 'bits');
    const k = (this.embeddingDim = numberParam(version, 'embeddingDim'));
    this.base = headBaseOf(version);
    this.mask = bucketMask(bits);
    this.initialTable = initialState(numberParam(version, 'seed'), this.mask + 1, k, numberParam(version, 'initStd')).table;
    this.bias = tensorOf(version, 'bias', Float64Array, 2)[0]!;
    this.weights = tensorOf(version, 'weights', Float64Array, this.inputSize);
    this.readout = tensorOf(version, 'readout', Float64Array, k);
    const indices = tensorOf(version, 'embeddingIndices', Uint32Array);
    this.learnedRows = tensorOf(version, 'embeddingRows', Float32Array, indices.length * k);
    // At most half full, so probes stay short.
    const slotBits = Math.max(4, Math.ceil(Math.log2(indices.length * 2 + 1)));
    this.slotShift = 32 - slotBits;
    this.slotKeys = new Int32Array(1 << slotBits).fill(-1);
    this.slotRows = new Int32Array(1 << slotBits);
    indices.forEach((i, n) => {
      if (i > this.mask) throw new Error(`online head ${version.version}: row ${i} is outside ${this.mask + 1} rows`);
      let slot = Math.imul(i, 0x9e3779b1) >>> this.slotShift;
      while (this.slotKeys[slot] !== -1) slot = (slot + 1) & (this.slotKeys.length - 1);
      this.slotKeys[slot] = i;
      this.slotRows[slot] = n * k;
    });
    this.bag = new Float64Array(k);
  }

  /** Where row `index`'s learned values start in `learnedRows`, or -1 when learning never touched it. */
  private learnedAt(index: number): number {
    const keys = this.slotKeys;
    for (let slot = Math.imul(index, 0x9e3779b1) >>> this.slotShift; ; slot = (slot + 1) & (keys.length - 1)) {
      const key = keys[slot]!;
      if (key === index) return this.slotRows[slot]!;
      if (key === -1) return -1;
    }
  }

  /** `logit` plus readout . e for the embedding bag of `sparse`, added term by term as the learner adds them. */
  private withEmbeddings(logit: number, sparse: SparseFeatures | undefined): number {
    const k = this.embeddingDim;
    const bag = this.bag;
    bag.fill(0);
    if (sparse) {
      const { indices, values } = sparse;
      for (let j = 0; j < indices.length; j++) {
        const index = indices[j]! & this.mask;
        const learned = this.learnedAt(index);
        const table = learned >= 0 ? this.learnedRows : this.initialTable;
        const row = learned >= 0 ? learned : index * k;
        const x = values === undefined ? 1 : values[j]!;
        for (let f = 0; f < k; f++) bag[f] = bag[f]! + x * table[row + f]!;
      }
    }
    for (let f = 0; f < k; f++) logit += this.readout[f]! * bag[f]!;
    return logit;
  }

  logit(features: HeadFeatures): number {
    const { dense, sparse } = features;
    if (dense.length !== this.inputSize) throw new RangeError(`online head expects ${this.inputSize} dense inputs, got ${dense.length}`);
    // The same operations in the same order as OnlineHeadLearner.logit, so both give bit-identical results.
    let logit = this.bias;
    for (let d = 0; d < this.inputSize; d++) logit += this.weights[d]! * dense[d]!;
    return this.withEmbeddings(logit, sparse);
  }

  /**
   * The logit of the candidate whose activations start at `activations[offset]` (a [count, inputSize] row-major
   * batch, as onnxruntime returns it): `logit` without a view per candidate.
   */
  logitAt(activations: Float32Array, offset: number, sparse?: SparseFeatures): number {
    if (offset < 0 || offset + this.inputSize > activations.length) throw new RangeError(`no ${this.inputSize} activations at ${offset}`);
    let logit = this.bias;
    for (let d = 0; d < this.inputSize; d++) logit += this.weights[d]! * activations[offset + d]!;
    return this.withEmbeddings(logit, sparse);
  }

  predict(features: HeadFeatures): number {
    return sigmoid(this.logit(features));
  }
}
