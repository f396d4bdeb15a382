import { sampleBeta, type Random } from '../random.js';

/**
 * Exploration over arms (items, slots, or models) with binary rewards. `choose` picks one arm of those offered;
 * `update` records its reward. Arms are created on first sight with the prior, so the candidate set can change.
 */
export interface Bandit {
  choose(arms: readonly string[]): string;
  update(arm: string, reward: 0 | 1): void;
  /** Pulls and successes recorded for an arm. */
  stats(arm: string): { readonly pulls: number; readonly successes: number };
}

interface ArmStats {
  pulls: number;
  successes: number;
}

abstract class ArmTable {
  protected readonly arms = new Map<string, ArmStats>();

  protected arm(name: string): ArmStats {
    let stats = this.arms.get(name);
    if (!stats) {
      stats = { pulls: 0, successes: 0 };
      this.arms.set(name, stats);
    }
    return stats;
  }

  update(arm: string, reward: 0 | 1): void {
    if (reward !== 0 && reward !== 1) throw new RangeError(`reward must be 0 or 1, got ${String(reward)}`);
    const stats = this.arm(arm);
    stats.pulls++;
    stats.successes += reward;
  }

  stats(arm: string): { readonly pulls: number; readonly successes: number } {
    const stats = this.arms.get(arm);
    return { pulls: stats?.pulls ?? 0, successes: stats?.successes ?? 0 };
  }
}

function requireArms(arms: readonly string[]): void {
  if (arms.length === 0) throw new RangeError('choose needs at least one arm');
}

export interface ThompsonSamplingOptions {
  /** Beta prior successes. Default 1. */
  readonly priorAlpha?: number;
  /** Beta prior failures. Default 1. */
  readonly priorBeta?: number;
  /** Default Math.random. */
  readonly random?: Random;
}

/** Beta-Bernoulli Thompson sampling: draw each arm's rate from its posterior and play the largest draw. */
export class ThompsonSampling extends ArmTable implements Bandit {
  private readonly priorAlpha: number;
  private readonly priorBeta: number;
  private readonly random: Random;

  constructor(options: ThompsonSamplingOptions = {}) {
    super();
    this.priorAlpha = options.priorAlpha ?? 1;
    this.priorBeta = options.priorBeta ?? 1;
    if (!(this.priorAlpha > 0 && this.priorBeta > 0)) throw new RangeError('Beta prior parameters must be positive');
    this.random = options.random ?? Math.random;
  }

  /** One posterior draw of the arm's success rate. */
  sample(arm: string): number {
    const { pulls, successes } = this.stats(arm);
    return sampleBeta(this.priorAlpha + successes, this.priorBeta + pulls - successes, this.random);
  }

  choose(arms: readonly string[]): string {
    requireArms(arms);
    let best = arms[0]!;
    let bestDraw = -1;
    for (const arm of arms) {
      const draw = this.sample(arm);
      if (draw > bestDraw) {
        bestDraw = draw;
        best = arm;
      }
    }
    return best;
  }
}

export interface EpsilonGreedyOptions {
  /** Share of choices made uniformly at random. Default 0.1. */
  readonly epsilon?: number;
  /** Default Math.random. */
  readonly random?: Random;
}

/** With probability epsilon a uniformly random arm, otherwise the arm with the best observed rate (unplayed arms first). */
export class EpsilonGreedy extends ArmTable implements Bandit {
  private readonly epsilon: number;
  private readonly random: Random;

  constructor(options: EpsilonGreedyOptions = {}) {
    super();
    this.epsilon = options.epsilon ?? 0.1;
    if (!(this.epsilon >= 0 && this.epsilon <= 1)) throw new RangeError(`epsilon must be in [0, 1], got ${this.epsilon}`);
    this.random = options.random ?? Math.random;
  }

  choose(arms: readonly string[]): string {
    requireArms(arms);
    if (this.random() < this.epsilon) return arms[Math.floor(this.random() * arms.length)]!;
    let best = arms[0]!;
    let bestRate = -1;
    for (const arm of arms) {
      const { pulls, successes } = this.stats(arm);
      const rate = pulls === 0 ? Infinity : successes / pulls;
      if (rate > bestRate) {
        bestRate = rate;
        best = arm;
      }
    }
    return best;
  }
}
