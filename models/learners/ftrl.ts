import { bucketMask } from '../hashing.js';
import {
  numberParam,
  sigmoid,
  tensorOf,
  type ExportMeta,
  type Learner,
  type ModelVersion,
  type Predictor,
  type Sample,
  type SparseFeatures,
  versionHeader,
} from '../learner.js';

/**
 * FTRL-Proximal logistic regression (McMahan et al. 2013, "Ad Click Prediction: a View from the Trenches",
 * Algorithm 1) over 2^bits hashed coordinates. Per coordinate i it keeps z_i and n_i (sum of squared gradients):
 *
 *   w_i = 0                                                   if |z_i| <= l1
 *   w_i = -(z_i - sign(z_i) l1) / ((beta + sqrt(n_i)) / alpha + l2)   otherwise
 *   p = sigmoid(sum_i w_i x_i);  g_i = (p - y) x_i
 *   sigma_i = (sqrt(n_i + g_i^2) - sqrt(n_i)) / alpha;  z_i += g_i - sigma_i w_i;  n_i += g_i^2
 *
 * Weights are derived from z and n when needed, so a coordinate costs 16 bytes and L1 keeps the served model sparse.
 * The learner stores sqrt(n_i) rather than n_i: the weight needs the root and the update needs the old root, so one
 * square root per feature per sample is enough (sqrt(n_i + g_i^2) becomes the new stored root).
 */
export interface FtrlOptions {
  /** log2 of the coordinate count. Default 20. */
  readonly bits?: number;
  /** Learning-rate scale. Default 0.1. */
  readonly alpha?: number;
  /** Learning-rate smoothing. Default 1. */
  readonly beta?: number;
  /** L1 strength (sparsity). Default 1. */
  readonly l1?: number;
  /** L2 strength. Default 1. */
  readonly l2?: number;
  /** Learn an intercept as an extra coordinate that every sample has with value 1. Default true. */
  readonly bias?: boolean;
}

export const FTRL_KIND = 'ftrl';

export class FtrlLearner implements Learner {
  readonly kind = FTRL_KIND;
  readonly bits: number;
  readonly alpha: number;
  readonly beta: number;
  readonly l1: number;
  readonly l2: number;
  readonly bias: boolean;
  /** Coordinate count, excluding the intercept, which lives at index `size`. */
  readonly size: number;
  /**
   * z_i at [2i] and sqrt(n_i) at [2i + 1]: one coordinate's state shares a cache line, so a feature costs one
   * memory miss, not two, which is most of the cost of a sample in a space of a million coordinates.
   */
  readonly state: Float64Array;
  samplesSeen = 0;
  private readonly mask: number;
  private scratch = new Float64Array(64);

  constructor(options: FtrlOptions = {}) {
    this.bits = options.bits ?? 20;
    this.alpha = options.alpha ?? 0.1;
    this.beta = options.beta ?? 1;
    this.l1 = options.l1 ?? 1;
    this.l2 = options.l2 ?? 1;
    this.bias = options.bias ?? true;
    for (const [name, value] of Object.entries({ alpha: this.alpha, beta: this.beta, l1: this.l1, l2: this.l2 })) {
      if (!(Number.isFinite(value) && value >= 0)) throw new RangeError(`ftrl ${name} must be finite and >= 0, got ${value}`);
    }
    if (this.alpha === 0) throw new RangeError('ftrl alpha must be positive');
    this.mask = bucketMask(this.bits);
    this.size = this.mask + 1;
    this.state = new Float64Array(2 * (this.size + 1));
  }

  z(i: number): number {
    return this.state[2 * i]!;
  }

  /** n_i, the sum of squared gradients of coordinate `i`. */
  n(i: number): number {
    return this.state[2 * i + 1]! ** 2;
  }

  /** The weight of coordinate `i` from its z and n. */
  weight(i: number): number {
    const z = this.state[2 * i]!;
    if (z <= this.l1 && z >= -this.l1) return 0;
    const shrunk = z > 0 ? z - this.l1 : z + this.l1;
    return -shrunk / ((this.beta + this.state[2 * i + 1]!) / this.alpha + this.l2);
  }

  /** The wide logit, for adding to a deep model's logit before the sigmoid. */
  logit(features: SparseFeatures): number {
    const { indices, values } = features;
    let logit = this.bias ? this.weight(this.size) : 0;
    for (let k = 0; k < indices.length; k++) {
      logit += this.weight(indices[k]! & this.mask) * (values === undefined ? 1 : values[k]!);
    }
    return logit;
  }

  predict(features: SparseFeatures): number {
    return sigmoid(this.logit(features));
  }

  learn(sample: Sample): number {
    const { indices, values } = sample.features;
    const count = indices.length;
    if (this.scratch.length < count) this.scratch = new Float64Array(Math.max(count, this.scratch.length * 2));
    const weights = this.scratch;
    const { state, alpha, beta, l1, l2, mask } = this;
    let logit = 0;
    for (let k = 0; k < count; k++) {
      const at = 2 * (indices[k]! & mask);
      const zi = state[at]!;
      let w = 0;
      if (zi > l1) w = (l1 - zi) / ((beta + state[at + 1]!) / alpha + l2);
      else if (zi < -l1) w = (-l1 - zi) / ((beta + state[at + 1]!) / alpha + l2);
      weights[k] = w;
      logit += values === undefined ? w : w * values[k]!;
    }
    const biasWeight = this.bias ? this.weight(this.size) : 0;
    logit += biasWeight;
    const p = sigmoid(logit);
    const residual = (p - sample.label) * (sample.weight ?? 1);
    for (let k = 0; k < count; k++) {
      const at = 2 * (indices[k]! & mask);
      const g = values === undefined ? residual : residual * values[k]!;
      const root = state[at + 1]!;
      const nextRoot = Math.sqrt(root * root + g * g);
      state[at] = state[at]! + g - ((nextRoot - root) / alpha) * weights[k]!;
      state[at + 1] = nextRoot;
    }
    if (this.bias) {
      const at = 2 * this.size;
      const root = state[at + 1]!;
      const nextRoot = Math.sqrt(root * root + residual * residual);
      state[at] = state[at]! + residual - ((nextRoot - root) / alpha) * biasWeight;
      state[at + 1] = nextRoot;
    }
    this.samplesSeen++;
    return p;
  }

  /**
   * Tensors: `weightIndices`/`weightValues` (the non-zero weights, for serving), and `stateIndices`/`z`/`sqrtN`
   * (every touched coordinate, to resume learning). The intercept is coordinate `size`.
   */
  export(meta: ExportMeta): ModelVersion {
    const { state, l1 } = this;
    let touched = 0;
    let nonZero = 0;
    for (let i = 0; i <= this.size; i++) {
      const z = state[2 * i]!;
      if (z === 0 && state[2 * i + 1] === 0) continue;
      touched++;
      if (z > l1 || z < -l1) nonZero++;
    }
    const stateIndices = new Uint32Array(touched);
    const stateZ = new Float64Array(touched);
    const stateSqrtN = new Float64Array(touched);
    const weightIndices = new Uint32Array(nonZero);
    const weightValues = new Float32Array(nonZero);
    let t = 0;
    let w = 0;
    for (let i = 0; i <= this.size; i++) {
      const z = state[2 * i]!;
      if (z === 0 && state[2 * i + 1] === 0) continue;
      stateIndices[t] = i;
      stateZ[t] = z;
      stateSqrtN[t++] = state[2 * i + 1]!;
      if (z > l1 || z < -l1) {
        weightIndices[w] = i;
        weightValues[w++] = this.weight(i);
      }
    }
    return {
      ...versionHeader(meta, this.kind, this.samplesSeen),
      params: { bits: this.bits, alpha: this.alpha, beta: this.beta, l1: this.l1, l2: this.l2, bias: this.bias },
      tensors: { weightIndices, weightValues, stateIndices, z: stateZ, sqrtN: stateSqrtN },
    };
  }

  restore(version: ModelVersion): void {
    if (version.kind !== this.kind) throw new Error(`cannot restore a ${version.kind} model into an ftrl learner`);
    const bits = numberParam(version, 'bits');
    if (bits !== this.bits) throw new Error(`cannot restore ftrl ${version.version}: it has ${bits} bits, this learner ${this.bits}`);
    const indices = tensorOf(version, 'stateIndices', Uint32Array);
    const z = tensorOf(version, 'z', Float64Array, indices.length);
    const sqrtN = tensorOf(version, 'sqrtN', Float64Array, indices.length);
    this.state.fill(0);
    for (let k = 0; k < indices.length; k++) {
      const i = indices[k]!;
      if (i > this.size) throw new Error(`ftrl ${version.version}: state index ${i} is outside ${this.size + 1} coordinates`);
      this.state[2 * i] = z[k]!;
      this.state[2 * i + 1] = sqrtN[k]!;
    }
    this.samplesSeen = version.samplesSeen;
  }

  static fromVersion(version: ModelVersion, options: Omit<FtrlOptions, 'bits'> = {}): FtrlLearner {
    const p = version.params;
    const learner = new FtrlLearner({
      bits: numberParam(version, 'bits'),
      alpha: typeof p.alpha === 'number' ? p.alpha : undefined,
      beta: typeof p.beta === 'number' ? p.beta : undefined,
      l1: typeof p.l1 === 'number' ? p.l1 : undefined,
      l2: typeof p.l2 === 'number' ? p.l2 : undefined,
      bias: typeof p.bias === 'boolean' ? p.bias : undefined,
      ...options,
    });
    learner.restore(version);
    return learner;
  }
}

/**
 * The serving form of an FTRL version: a dense Float32Array of weights, so a prediction is one load per feature.
 * Build it off the scoring path (`ftrlPredictor` allocates 4 * 2^bits bytes) and swap the reference in.
 */
export class FtrlPredictor implements Predictor {
  private readonly mask: number;
  private readonly biasWeight: number;

  constructor(
    readonly weights: Float32Array,
    readonly bits: number,
  ) {
    this.mask = bucketMask(bits);
    if (weights.length !== this.mask + 2) throw new Error(`ftrl weights must have 2^${bits} + 1 entries, got ${weights.length}`);
    this.biasWeight = weights[this.mask + 1]!;
  }

  /** The wide logit, for adding to a deep model's logit before the sigmoid. */
  logit(features: SparseFeatures): number {
    const { indices, values } = features;
    const { weights, mask } = this;
    let logit = this.biasWeight;
    for (let k = 0; k < indices.length; k++) {
      logit += weights[indices[k]! & mask]! * (values === undefined ? 1 : values[k]!);
    }
    return logit;
  }

  predict(features: SparseFeatures): number {
    return sigmoid(this.logit(features));
  }
}

/**
 * Dense serving weights of an exported FTRL version (intercept last). Pass `into` (2^bits + 1 floats, for instance
 * over a SharedArrayBuffer) to reuse a buffer instead of allocating 4 x 2^bits bytes per version.
 */
export function ftrlDenseWeights(version: ModelVersion, into?: Float32Array): Float32Array {
  if (version.kind !== FTRL_KIND) throw new Error(`expected an ftrl model, got ${version.kind}`);
  const bits = numberParam(version, 'bits');
  const size = bucketMask(bits) + 1;
  const indices = tensorOf(version, 'weightIndices', Uint32Array);
  const values = tensorOf(version, 'weightValues', Float32Array, indices.length);
  if (into && into.length !== size + 1) throw new Error(`ftrl dense buffer must have ${size + 1} entries, got ${into.length}`);
  const dense = into ?? new Float32Array(size + 1);
  if (into) dense.fill(0);
  for (let k = 0; k < indices.length; k++) {
    const i = indices[k]!;
    if (i > size) throw new Error(`ftrl ${version.version}: weight index ${i} is outside ${size + 1} coordinates`);
    dense[i] = values[k]!;
  }
  return dense;
}

export function ftrlPredictor(version: ModelVersion): FtrlPredictor {
  return new FtrlPredictor(ftrlDenseWeights(version), numberParam(version, 'bits'));
}
