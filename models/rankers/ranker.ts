/**
 * The four rankers Eddy trains and exports: logistic regression, a factorization machine, DeepFM, and an MLP over
 * embedding tables. They are one parametric family, so forward pass, gradient and ONNX export are written once:
 *
 *   logit = linear + fm + mlp
 *   linear = bias + dense . wDense + sum_f wCategorical[g_f]                    (LR, FM, DeepFM)
 *   fm     = 1/2 sum_k ((sum_i u_ik)^2 - sum_i u_ik^2),  u = [x_j vDense_j, emb(g_f)]  (FM, DeepFM)
 *   mlp    = ReLU MLP over [dense, emb(g_1), ..., emb(g_F)] ending in one unit     (DeepFM, embedding MLP)
 *
 * where g_f = offset_f + index_f addresses one embedding table shared by all fields. Parameters live in one
 * Float64Array so an optimizer is a loop over it and gradient checks are exact.
 */
import { sigmoid } from '../learner.js';
import { mulberry32, sampleNormal } from '../random.js';

export type RankerKind = 'logistic-regression' | 'factorization-machine' | 'deepfm' | 'embedding-mlp';

export interface CategoricalField {
  readonly name: string;
  /** Indices run over [0, vocabularySize); 0 is the unknown bucket. */
  readonly vocabularySize: number;
}

export interface RankerSpec {
  readonly kind: RankerKind;
  readonly denseFeatures: readonly string[];
  readonly categoricalFields: readonly CategoricalField[];
  /** Embedding width for FM, DeepFM and embedding MLP. Default 8. */
  readonly embeddingDim?: number;
  /** Hidden layer widths for DeepFM and embedding MLP. Default [256, 128]. */
  readonly hidden?: readonly number[];
}

/** One candidate's features: dense values in contract order and one index per categorical field. */
export interface FeatureRow {
  readonly dense: ArrayLike<number>;
  readonly categorical: ArrayLike<number>;
}

export interface Example extends FeatureRow {
  /** 1 for a positive (click), 0 for a negative. */
  readonly label: number;
}

interface Architecture {
  readonly linear: boolean;
  readonly fm: boolean;
  readonly mlp: boolean;
}

const ARCHITECTURES: Record<RankerKind, Architecture> = {
  'logistic-regression': { linear: true, fm: false, mlp: false },
  'factorization-machine': { linear: true, fm: true, mlp: false },
  deepfm: { linear: true, fm: true, mlp: true },
  'embedding-mlp': { linear: false, fm: false, mlp: true },
};

/** Where each parameter block sits in the flat parameter vector; -1 for blocks the architecture lacks. */
export interface ParameterLayout {
  readonly size: number;
  readonly bias: number;
  readonly wDense: number;
  readonly wCategorical: number;
  readonly embeddings: number;
  readonly vDense: number;
  /** Per layer: offset of its [in, out] row-major weights and of its [out] biases. */
  readonly layers: readonly { readonly inputs: number; readonly outputs: number; readonly weights: number; readonly biases: number }[];
}

export interface RankerInit {
  /** Seed of the deterministic initializer. Default 1. */
  readonly seed?: number;
  /** Standard deviation of initial embeddings. Default 0.01. */
  readonly embeddingScale?: number;
}

/** Binary cross-entropy of a logit, computed stably. */
export function logLossOfLogit(z: number, label: number): number {
  return Math.max(z, 0) - z * label + Math.log1p(Math.exp(-Math.abs(z)));
}

export class Ranker {
  readonly kind: RankerKind;
  readonly denseFeatures: readonly string[];
  readonly categoricalFields: readonly CategoricalField[];
  readonly embeddingDim: number;
  readonly hidden: readonly number[];
  readonly architecture: Architecture;
  readonly layout: ParameterLayout;
  readonly params: Float64Array;
  /** Start of each field's rows in the shared embedding and weight tables. */
  readonly fieldOffsets: Int32Array;
  readonly vocabularySize: number;

  /** Per layer input activations (post-ReLU) and the output pre-activations, reused across calls. */
  private readonly activations: Float64Array[];
  private readonly deltas: Float64Array[];
  private readonly fmSum: Float64Array;

  constructor(spec: RankerSpec, init: RankerInit = {}) {
    this.kind = spec.kind;
    this.architecture = ARCHITECTURES[spec.kind];
    if (!this.architecture) throw new Error(`unknown ranker kind "${spec.kind}"`);
    if (spec.denseFeatures.length === 0 || spec.categoricalFields.length === 0) {
      throw new Error('a ranker needs at least one dense feature and one categorical field');
    }
    this.denseFeatures = [...spec.denseFeatures];
    this.categoricalFields = spec.categoricalFields.map((f) => ({ ...f }));
    this.embeddingDim = spec.embeddingDim ?? 8;
    this.hidden = this.architecture.mlp ? [...(spec.hidden ?? [256, 128])] : [];
    this.fieldOffsets = new Int32Array(this.categoricalFields.length);
    let vocabulary = 0;
    this.categoricalFields.forEach((field, f) => {
      if (!Number.isInteger(field.vocabularySize) || field.vocabularySize < 1) {
        throw new Error(`field "${field.name}" needs a positive integer vocabularySize`);
      }
      this.fieldOffsets[f] = vocabulary;
      vocabulary += field.vocabularySize;
    });
    this.vocabularySize = vocabulary;
    this.layout = this.planLayout();
    this.params = new Float64Array(this.layout.size);
    this.activations = this.layout.layers.map((l) => new Float64Array(l.inputs));
    this.deltas = this.layout.layers.map((l) => new Float64Array(l.outputs));
    this.fmSum = new Float64Array(this.embeddingDim);
    this.initialize(init);
  }

  get nDense(): number {
    return this.denseFeatures.length;
  }

  get nFields(): number {
    return this.categoricalFields.length;
  }

  get usesEmbeddings(): boolean {
    return this.architecture.fm || this.architecture.mlp;
  }

  private planLayout(): ParameterLayout {
    const { linear, fm, mlp } = this.architecture;
    const d = this.nDense;
    const k = this.embeddingDim;
    let size = 0;
    const take = (present: boolean, n: number) => {
      if (!present) return -1;
      const at = size;
      size += n;
      return at;
    };
    const bias = take(linear, 1);
    const wDense = take(linear, d);
    const wCategorical = take(linear, this.vocabularySize);
    const embeddings = take(fm || mlp, this.vocabularySize * k);
    const vDense = take(fm, d * k);
    const layers: { inputs: number; outputs: number; weights: number; biases: number }[] = [];
    if (mlp) {
      const widths = [d + this.nFields * k, ...this.hidden, 1];
      for (let l = 0; l + 1 < widths.length; l++) {
        const inputs = widths[l]!;
        const outputs = widths[l + 1]!;
        layers.push({ inputs, outputs, weights: take(true, inputs * outputs), biases: take(true, outputs) });
      }
    }
    return { size, bias, wDense, wCategorical, embeddings, vDense, layers };
  }

  private initialize(init: RankerInit): void {
    const random = mulberry32(init.seed ?? 1);
    const scale = init.embeddingScale ?? 0.01;
    const { embeddings, vDense, layers } = this.layout;
    const k = this.embeddingDim;
    if (embeddings >= 0) for (let i = 0; i < this.vocabularySize * k; i++) this.params[embeddings + i] = scale * sampleNormal(random);
    if (vDense >= 0) for (let i = 0; i < this.nDense * k; i++) this.params[vDense + i] = scale * sampleNormal(random);
    for (const layer of layers) {
      // He initialization keeps ReLU activations at a stable scale through the stack.
      const std = Math.sqrt(2 / layer.inputs);
      for (let i = 0; i < layer.inputs * layer.outputs; i++) this.params[layer.weights + i] = std * sampleNormal(random);
    }
  }

  /** Row of the shared tables that field f's index addresses; throws on an index outside the field's vocabulary. */
  globalIndex(row: FeatureRow, f: number): number {
    const index = row.categorical[f]!;
    const field = this.categoricalFields[f]!;
    if (!Number.isInteger(index) || index < 0 || index >= field.vocabularySize) {
      throw new RangeError(`field "${field.name}" index ${index} is outside [0, ${field.vocabularySize})`);
    }
    return this.fieldOffsets[f]! + index;
  }

  private checkRow(row: FeatureRow): void {
    if (row.dense.length !== this.nDense || row.categorical.length !== this.nFields) {
      throw new RangeError(
        `row has ${row.dense.length} dense and ${row.categorical.length} categorical values; ` +
          `the ranker takes ${this.nDense} and ${this.nFields}`,
      );
    }
  }

  logit(row: FeatureRow): number {
    this.checkRow(row);
    const p = this.params;
    const { linear, fm, mlp } = this.architecture;
    const { bias, wDense, wCategorical, embeddings, vDense, layers } = this.layout;
    const d = this.nDense;
    const k = this.embeddingDim;
    let z = 0;
    if (linear) {
      z += p[bias]!;
      for (let j = 0; j < d; j++) z += p[wDense + j]! * row.dense[j]!;
      for (let f = 0; f < this.nFields; f++) z += p[wCategorical + this.globalIndex(row, f)]!;
    }
    if (fm) {
      const s = this.fmSum.fill(0);
      let squares = 0;
      for (let j = 0; j < d; j++) {
        const x = row.dense[j]!;
        for (let c = 0; c < k; c++) {
          const u = x * p[vDense + j * k + c]!;
          s[c] = s[c]! + u;
          squares += u * u;
        }
      }
      for (let f = 0; f < this.nFields; f++) {
        const at = embeddings + this.globalIndex(row, f) * k;
        for (let c = 0; c < k; c++) {
          const u = p[at + c]!;
          s[c] = s[c]! + u;
          squares += u * u;
        }
      }
      let sumSquared = 0;
      for (let c = 0; c < k; c++) sumSquared += s[c]! * s[c]!;
      z += 0.5 * (sumSquared - squares);
    }
    if (mlp) {
      const input = this.activations[0]!;
      for (let j = 0; j < d; j++) input[j] = row.dense[j]!;
      for (let f = 0; f < this.nFields; f++) {
        const at = embeddings + this.globalIndex(row, f) * k;
        for (let c = 0; c < k; c++) input[d + f * k + c] = p[at + c]!;
      }
      for (let l = 0; l < layers.length; l++) {
        const layer = layers[l]!;
        const h = this.activations[l]!;
        const out = l + 1 < layers.length ? this.activations[l + 1]! : this.deltas[l]!;
        for (let o = 0; o < layer.outputs; o++) out[o] = p[layer.biases + o]!;
        for (let i = 0; i < layer.inputs; i++) {
          const hi = h[i]!;
          if (hi === 0) continue;
          const weightRow = layer.weights + i * layer.outputs;
          for (let o = 0; o < layer.outputs; o++) out[o] = out[o]! + hi * p[weightRow + o]!;
        }
        if (l + 1 < layers.length) for (let o = 0; o < layer.outputs; o++) if (out[o]! < 0) out[o] = 0;
      }
      z += this.deltas[layers.length - 1]![0]!;
    }
    return z;
  }

  /** The final layer's input for `row` (MLP kinds): what an ONNX export with `penultimateOutput` emits. */
  penultimate(row: FeatureRow): Float64Array {
    if (!this.architecture.mlp) throw new Error(`a ${this.kind} has no final layer`);
    this.logit(row);
    return this.activations[this.layout.layers.length - 1]!.slice();
  }

  /** The final layer's weights (one per penultimate unit) and bias, to start an online head from. */
  finalLayer(): { readonly weights: Float64Array; readonly bias: number } {
    const last = this.layout.layers.at(-1);
    if (!last) throw new Error(`a ${this.kind} has no final layer`);
    return { weights: this.params.slice(last.weights, last.weights + last.inputs), bias: this.params[last.biases]! };
  }

  predict(row: FeatureRow): number {
    return sigmoid(this.logit(row));
  }

  /**
   * Adds d(loss)/d(params) to `grad` for one row, given d(loss)/d(logit), and returns the logit. Runs the forward
   * pass itself so the activations it backpropagates through are this row's.
   */
  accumulateGradient(row: FeatureRow, dLoss: (z: number) => number, grad: Float64Array): number {
    const z = this.logit(row);
    const dz = dLoss(z);
    const p = this.params;
    const { linear, fm, mlp } = this.architecture;
    const { bias, wDense, wCategorical, embeddings, vDense, layers } = this.layout;
    const d = this.nDense;
    const k = this.embeddingDim;
    if (linear) {
      grad[bias] = grad[bias]! + dz;
      for (let j = 0; j < d; j++) grad[wDense + j] = grad[wDense + j]! + dz * row.dense[j]!;
      for (let f = 0; f < this.nFields; f++) {
        const at = wCategorical + this.globalIndex(row, f);
        grad[at] = grad[at]! + dz;
      }
    }
    if (fm) {
      // logit() left sum_i u_i in fmSum; d fm / d u_i = s - u_i.
      const s = this.fmSum;
      for (let j = 0; j < d; j++) {
        const x = row.dense[j]!;
        for (let c = 0; c < k; c++) {
          const at = vDense + j * k + c;
          grad[at] = grad[at]! + dz * x * (s[c]! - x * p[at]!);
        }
      }
      for (let f = 0; f < this.nFields; f++) {
        const at = embeddings + this.globalIndex(row, f) * k;
        for (let c = 0; c < k; c++) grad[at + c] = grad[at + c]! + dz * (s[c]! - p[at + c]!);
      }
    }
    if (mlp) {
      let delta = this.deltas[layers.length - 1]!;
      delta[0] = dz;
      for (let l = layers.length - 1; l >= 0; l--) {
        const layer = layers[l]!;
        const h = this.activations[l]!;
        const below = l > 0 ? this.deltas[l - 1]! : undefined;
        for (let o = 0; o < layer.outputs; o++) grad[layer.biases + o] = grad[layer.biases + o]! + delta[o]!;
        for (let i = 0; i < layer.inputs; i++) {
          const hi = h[i]!;
          const weightRow = layer.weights + i * layer.outputs;
          let back = 0;
          for (let o = 0; o < layer.outputs; o++) {
            grad[weightRow + o] = grad[weightRow + o]! + hi * delta[o]!;
            back += p[weightRow + o]! * delta[o]!;
          }
          if (below) below[i] = hi > 0 ? back : 0;
          else if (i >= d) {
            const f = Math.floor((i - d) / k);
            const c = (i - d) % k;
            const at = embeddings + this.globalIndex(row, f) * k + c;
            grad[at] = grad[at]! + back;
          }
        }
        if (below) delta = below;
      }
    }
    return z;
  }

  /** Mean log loss over `examples`; adds the gradient of that mean to `grad`. */
  lossAndGradient(examples: readonly Example[], grad: Float64Array): number {
    let loss = 0;
    const scale = 1 / examples.length;
    for (const example of examples) {
      const z = this.accumulateGradient(example, (logit) => (sigmoid(logit) - example.label) * scale, grad);
      loss += logLossOfLogit(z, example.label);
    }
    return loss * scale;
  }

  /** Mean log loss over `examples`, without gradients. */
  loss(examples: readonly Example[]): number {
    let loss = 0;
    for (const example of examples) loss += logLossOfLogit(this.logit(example), example.label);
    return loss / examples.length;
  }
}
