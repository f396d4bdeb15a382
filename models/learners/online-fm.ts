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
 * An online factorization machine (Rendle 2010) on hashed features, trained by AdaGrad one sample at a time:
 *
 *   logit = w0 + sum_i w_i x_i + 1/2 sum_f [ (sum_i v_if x_i)^2 - sum_i v_if^2 x_i^2 ]
 *
 * The per-sample objective is `weight * logloss + l2/2 sum_i w_i^2 + l2Factors/2 sum_i |v_i|^2` over the sample's
 * active coordinates (lazy regularisation, the usual choice for sparse online learning). With r = weight (p - y):
 *   d/dw0 = r;  d/dw_i = r x_i + l2 w_i;  d/dv_if = r x_i (s_f - v_if x_i) + l2Factors v_if,  s_f = sum_j v_jf x_j.
 */
export interface OnlineFmOptions {
  /** log2 of the coordinate count. Default 18. */
  readonly bits?: number;
  /** Latent factors per coordinate. Default 8. */
  readonly factors?: number;
  /** AdaGrad step size. Default 0.05. */
  readonly learningRate?: number;
  /** L2 on linear weights. Default 1e-5. */
  readonly l2?: number;
  /** L2 on factors. Default 1e-5. */
  readonly l2Factors?: number;
  /** Standard deviation of the initial factors. Default 0.01. */
  readonly initStd?: number;
  /** Seed of the factor initialisation. Default 1. */
  readonly seed?: number;
}

export const ONLINE_FM_KIND = 'online-fm';
const ADAGRAD_EPSILON = 1e-8;

/** Gradients of the per-sample objective, for diagnostics and numerical checks. */
export interface FmGradient {
  readonly bias: number;
  readonly linear: Map<number, number>;
  readonly factors: Map<number, Float64Array>;
}

export class OnlineFmLearner implements Learner {
  readonly kind = ONLINE_FM_KIND;
  readonly bits: number;
  readonly factors: number;
  readonly learningRate: number;
  readonly l2: number;
  readonly l2Factors: number;
  readonly size: number;
  readonly seed: number;
  readonly initStd: number;
  /** Parameters: `bias[0]` is w0, `linear` is w, `v` is row-major (coordinate, factor). */
  readonly bias = new Float64Array(1);
  readonly linear: Float32Array;
  readonly v: Float32Array;
  private readonly biasAcc = new Float64Array(1);
  private readonly linearAcc: Float32Array;
  private readonly vAcc: Float32Array;
  private readonly mask: number;
  private readonly sums: Float64Array;
  samplesSeen = 0;

  constructor(options: OnlineFmOptions = {}) {
    this.bits = options.bits ?? 18;
    this.factors = options.factors ?? 8;
    this.learningRate = options.learningRate ?? 0.05;
    this.l2 = options.l2 ?? 1e-5;
    this.l2Factors = options.l2Factors ?? 1e-5;
    if (!Number.isInteger(this.factors) || this.factors < 1) throw new RangeError(`fm factors must be a positive integer, got ${this.factors}`);
    if (!(this.learningRate > 0)) throw new RangeError(`fm learningRate must be positive, got ${this.learningRate}`);
    this.mask = bucketMask(this.bits);
    this.size = this.mask + 1;
    this.linear = new Float32Array(this.size);
    this.linearAcc = new Float32Array(this.size);
    this.v = new Float32Array(this.size * this.factors);
    this.vAcc = new Float32Array(this.size * this.factors);
    this.sums = new Float64Array(this.factors);
    this.seed = options.seed ?? 1;
    this.initStd = options.initStd ?? 0.01;
    this.initialiseFactors();
  }

  private initialiseFactors(): void {
    const random = mulberry32(this.seed);
    for (let i = 0; i < this.v.length; i++) this.v[i] = this.initStd * sampleNormal(random);
  }

  /** The logit, leaving s_f = sum_j v_jf x_j in `this.sums`. */
  logit(features: SparseFeatures): number {
    const { indices, values } = features;
    const { v, factors, mask, sums } = this;
    sums.fill(0);
    let linear = this.bias[0]!;
    let squares = 0;
    for (let k = 0; k < indices.length; k++) {
      const i = indices[k]! & mask;
      const x = values === undefined ? 1 : values[k]!;
      linear += this.linear[i]! * x;
      const row = i * factors;
      for (let f = 0; f < factors; f++) {
        const vx = v[row + f]! * x;
        sums[f] = sums[f]! + vx;
        squares += vx * vx;
      }
    }
    let interactions = 0;
    for (let f = 0; f < factors; f++) interactions += sums[f]! * sums[f]!;
    return linear + 0.5 * (interactions - squares);
  }

  predict(features: SparseFeatures): number {
    return sigmoid(this.logit(features));
  }

  /** The per-sample objective the updates descend (see the class comment). */
  loss(sample: Sample): number {
    const p = sigmoid(this.logit(sample.features));
    const eps = 1e-15;
    let loss = -(sample.weight ?? 1) * (sample.label === 1 ? Math.log(Math.max(p, eps)) : Math.log(Math.max(1 - p, eps)));
    const { indices } = sample.features;
    for (let k = 0; k < indices.length; k++) {
      const i = indices[k]! & this.mask;
      loss += 0.5 * this.l2 * this.linear[i]! ** 2;
      for (let f = 0; f < this.factors; f++) loss += 0.5 * this.l2Factors * this.v[i * this.factors + f]! ** 2;
    }
    return loss;
  }

  gradient(sample: Sample): FmGradient {
    const r = (sigmoid(this.logit(sample.features)) - sample.label) * (sample.weight ?? 1);
    const { indices, values } = sample.features;
    const linear = new Map<number, number>();
    const factors = new Map<number, Float64Array>();
    for (let k = 0; k < indices.length; k++) {
      const i = indices[k]! & this.mask;
      const x = values === undefined ? 1 : values[k]!;
      linear.set(i, (linear.get(i) ?? 0) + r * x + this.l2 * this.linear[i]!);
      const g = factors.get(i) ?? new Float64Array(this.factors);
      for (let f = 0; f < this.factors; f++) {
        const vif = this.v[i * this.factors + f]!;
        g[f] = g[f]! + r * x * (this.sums[f]! - vif * x) + this.l2Factors * vif;
      }
      factors.set(i, g);
    }
    return { bias: r, linear, factors };
  }

  learn(sample: Sample): number {
    const p = sigmoid(this.logit(sample.features));
    const r = (p - sample.label) * (sample.weight ?? 1);
    const { indices, values } = sample.features;
    const { v, vAcc, factors, mask, sums, learningRate, l2, l2Factors } = this;
    const gb = r;
    this.biasAcc[0] = this.biasAcc[0]! + gb * gb;
    this.bias[0] = this.bias[0]! - (learningRate * gb) / (Math.sqrt(this.biasAcc[0]!) + ADAGRAD_EPSILON);
    for (let k = 0; k < indices.length; k++) {
      const i = indices[k]! & mask;
      const x = values === undefined ? 1 : values[k]!;
      const gw = r * x + l2 * this.linear[i]!;
      this.linearAcc[i] = this.linearAcc[i]! + gw * gw;
      this.linear[i] = this.linear[i]! - (learningRate * gw) / (Math.sqrt(this.linearAcc[i]!) + ADAGRAD_EPSILON);
      const row = i * factors;
      for (let f = 0; f < factors; f++) {
        const vif = v[row + f]!;
        // s_f is from before this sample's updates, so every factor row steps along the same gradient.
        const gv = r * x * (sums[f]! - vif * x) + l2Factors * vif;
        vAcc[row + f] = vAcc[row + f]! + gv * gv;
        v[row + f] = vif - (learningRate * gv) / (Math.sqrt(vAcc[row + f]!) + ADAGRAD_EPSILON);
      }
    }
    this.samplesSeen++;
    return p;
  }

  /**
   * Tensors are sparse over touched coordinates: `indices`, `linear`, `factors` (row-major, `factors` per index) and
   * the AdaGrad accumulators `linearAcc`, `factorsAcc`; `bias` holds w0 and its accumulator.
   */
  export(meta: ExportMeta): ModelVersion {
    const touched: number[] = [];
    for (let i = 0; i < this.size; i++) if (this.linearAcc[i] !== 0) touched.push(i);
    const indices = Uint32Array.from(touched);
    const k = this.factors;
    const factors = new Float32Array(indices.length * k);
    const factorsAcc = new Float32Array(indices.length * k);
    indices.forEach((i, row) => {
      factors.set(this.v.subarray(i * k, i * k + k), row * k);
      factorsAcc.set(this.vAcc.subarray(i * k, i * k + k), row * k);
    });
    return {
      ...versionHeader(meta, this.kind, this.samplesSeen),
      params: {
        bits: this.bits,
        factors: k,
        learningRate: this.learningRate,
        l2: this.l2,
        l2Factors: this.l2Factors,
        seed: this.seed,
        initStd: this.initStd,
      },
      tensors: {
        bias: Float64Array.of(this.bias[0]!, this.biasAcc[0]!),
        indices,
        linear: Float32Array.from(indices, (i) => this.linear[i]!),
        linearAcc: Float32Array.from(indices, (i) => this.linearAcc[i]!),
        factors,
        factorsAcc,
      },
    };
  }

  /** Loads a version's touched coordinates; untouched ones go back to the seeded initialisation. */
  restore(version: ModelVersion): void {
    if (version.kind !== this.kind) throw new Error(`cannot restore a ${version.kind} model into an online-fm learner`);
    for (const name of ['bits', 'factors', 'seed', 'initStd'] as const) {
      if (numberParam(version, name) !== this[name]) throw new Error(`cannot restore fm ${version.version}: ${name} differ`);
    }
    const k = this.factors;
    const bias = tensorOf(version, 'bias', Float64Array, 2);
    const indices = tensorOf(version, 'indices', Uint32Array);
    const linear = tensorOf(version, 'linear', Float32Array, indices.length);
    const linearAcc = tensorOf(version, 'linearAcc', Float32Array, indices.length);
    const factors = tensorOf(version, 'factors', Float32Array, indices.length * k);
    const factorsAcc = tensorOf(version, 'factorsAcc', Float32Array, indices.length * k);
    this.linear.fill(0);
    this.linearAcc.fill(0);
    this.vAcc.fill(0);
    this.initialiseFactors();
    this.bias[0] = bias[0]!;
    this.biasAcc[0] = bias[1]!;
    indices.forEach((i, row) => {
      if (i >= this.size) throw new Error(`fm ${version.version}: index ${i} is outside ${this.size} coordinates`);
      this.linear[i] = linear[row]!;
      this.linearAcc[i] = linearAcc[row]!;
      this.v.set(factors.subarray(row * k, row * k + k), i * k);
      this.vAcc.set(factorsAcc.subarray(row * k, row * k + k), i * k);
    });
    this.samplesSeen = version.samplesSeen;
  }

  static fromVersion(version: ModelVersion, options: OnlineFmOptions = {}): OnlineFmLearner {
    const p = version.params;
    const learner = new OnlineFmLearner({
      bits: numberParam(version, 'bits'),
      factors: numberParam(version, 'factors'),
      learningRate: typeof p.learningRate === 'number' ? p.learningRate : undefined,
      l2: typeof p.l2 === 'number' ? p.l2 : undefined,
      l2Factors: typeof p.l2Factors === 'number' ? p.l2Factors : undefined,
      seed: numberParam(version, 'seed'),
      initStd: numberParam(version, 'initStd'),
      ...options,
    });
    learner.restore(version);
    return learner;
  }
}
