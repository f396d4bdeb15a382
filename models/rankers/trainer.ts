/** Offline mini-batch training of a `Ranker` on log loss with Adam. */
import { mulberry32 } from '../random.js';
import type { Example, Ranker } from './ranker.js';

export interface AdamOptions {
  /** Step size. Default 0.01. */
  readonly learningRate?: number;
  /** Decay of the first-moment estimate. Default 0.9. */
  readonly beta1?: number;
  /** Decay of the second-moment estimate. Default 0.999. */
  readonly beta2?: number;
  /** Added to the root of the second moment to keep steps finite. Default 1e-8. */
  readonly epsilon?: number;
  /** L2 penalty added to every gradient (decoupled from the loss value). Default 0. */
  readonly l2?: number;
}

export class Adam {
  private readonly m: Float64Array;
  private readonly v: Float64Array;
  private t = 0;
  private readonly learningRate: number;
  private readonly beta1: number;
  private readonly beta2: number;
  private readonly epsilon: number;
  private readonly l2: number;

  constructor(size: number, options: AdamOptions = {}) {
    this.m = new Float64Array(size);
    this.v = new Float64Array(size);
    this.learningRate = options.learningRate ?? 0.01;
    this.beta1 = options.beta1 ?? 0.9;
    this.beta2 = options.beta2 ?? 0.999;
    this.epsilon = options.epsilon ?? 1e-8;
    this.l2 = options.l2 ?? 0;
  }

  step(params: Float64Array, grad: Float64Array): void {
    this.t++;
    const { m, v, beta1, beta2, epsilon, l2 } = this;
    const rate = (this.learningRate * Math.sqrt(1 - beta2 ** this.t)) / (1 - beta1 ** this.t);
    for (let i = 0; i < params.length; i++) {
      const g = grad[i]! + l2 * params[i]!;
      m[i] = beta1 * m[i]! + (1 - beta1) * g;
      v[i] = beta2 * v[i]! + (1 - beta2) * g * g;
      params[i] = params[i]! - (rate * m[i]!) / (Math.sqrt(v[i]!) + epsilon);
    }
  }
}

export interface TrainOptions extends AdamOptions {
  /** Passes over the data. Default 5. */
  readonly epochs?: number;
  /** Examples per step. Default 256. */
  readonly batchSize?: number;
  /** Seed of the per-epoch shuffle. Default 1. */
  readonly seed?: number;
  /** Called after each epoch with its mean training loss. */
  readonly onEpoch?: (epoch: number, loss: number) => void;
}

export interface TrainReport {
  readonly steps: number;
  /** Mean training loss of each epoch, as seen during the epoch. */
  readonly epochLosses: readonly number[];
}

export function train(ranker: Ranker, examples: readonly Example[], options: TrainOptions = {}): TrainReport {
  if (examples.length === 0) throw new Error('train needs at least one example');
  const epochs = options.epochs ?? 5;
  const batchSize = options.batchSize ?? 256;
  const random = mulberry32(options.seed ?? 1);
  const optimizer = new Adam(ranker.params.length, options);
  const grad = new Float64Array(ranker.params.length);
  const order = Array.from(examples.keys());
  const epochLosses: number[] = [];
  let steps = 0;
  for (let epoch = 0; epoch < epochs; epoch++) {
    for (let i = order.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      [order[i], order[j]] = [order[j]!, order[i]!];
    }
    let lossSum = 0;
    for (let start = 0; start < order.length; start += batchSize) {
      const batch = order.slice(start, start + batchSize).map((i) => examples[i]!);
      grad.fill(0);
      lossSum += ranker.lossAndGradient(batch, grad) * batch.length;
      optimizer.step(ranker.params, grad);
      steps++;
    }
    const loss = lossSum / examples.length;
    epochLosses.push(loss);
    options.onEpoch?.(epoch, loss);
  }
  return { steps, epochLosses };
}
