/**
 * Exploration over ranked slots: a configurable share of the slots is filled by exploration instead of by score, so
 * items the model is unsure about still get impressions to learn from. Each slot says whether it explored, so the
 * impression can be logged (and weighted) as such.
 */
import { sampleBeta, type Random } from './random.js';

export interface ExplorationOptions {
  /** Share of the slots given to exploration, in [0, 1]. */
  readonly share: number;
  /**
   * `epsilon-greedy`: an exploration slot takes a uniformly random remaining candidate. `thompson`: it takes the
   * remaining candidate with the highest draw from its Beta posterior.
   */
  readonly strategy: 'epsilon-greedy' | 'thompson';
  /** Uniform [0, 1) source. Default Math.random. */
  readonly random?: Random;
  /**
   * Thompson: a candidate's Beta(alpha, beta) posterior. Default: centred on its score with `priorStrength`
   * pseudo-impressions.
   */
  readonly posterior?: (candidate: number, score: number) => { readonly alpha: number; readonly beta: number };
  /** Thompson: pseudo-impressions behind the default score-centred posterior. Default 20. */
  readonly priorStrength?: number;
}

export interface ExploredRanking {
  /** Candidate indices, best slot first. */
  readonly order: number[];
  /** Whether the slot at the same position was filled by exploration. */
  readonly explored: boolean[];
}

/** Ranks `scores` into `slots` positions (all candidates by default), giving `share` of them to exploration. */
export function rankWithExploration(
  scores: ArrayLike<number>,
  options: ExplorationOptions,
  slots: number = scores.length,
): ExploredRanking {
  if (!(options.share >= 0 && options.share <= 1)) throw new RangeError(`exploration share ${options.share} is outside [0, 1]`);
  const random = options.random ?? Math.random;
  const n = scores.length;
  const filled = Math.min(slots, n);
  const byScore = Array.from({ length: n }, (_, i) => i).sort((a, b) => scores[b]! - scores[a]!);
  const exploring = new Array<boolean>(filled).fill(false);
  const explorationSlots = Math.round(options.share * filled);
  // Choose which positions explore: a partial Fisher-Yates shuffle of the positions.
  const positions = Array.from({ length: filled }, (_, i) => i);
  for (let i = 0; i < explorationSlots; i++) {
    const j = i + Math.floor(random() * (filled - i));
    [positions[i], positions[j]] = [positions[j]!, positions[i]!];
    exploring[positions[i]!] = true;
  }
  let explorationOrder: number[];
  if (options.strategy === 'thompson' && explorationSlots > 0) {
    const strength = options.priorStrength ?? 20;
    const draws = Array.from({ length: n }, (_, i) => {
      const score = Math.min(Math.max(scores[i]!, 0), 1);
      const { alpha, beta } = options.posterior?.(i, scores[i]!) ?? { alpha: 1 + score * strength, beta: 1 + (1 - score) * strength };
      return sampleBeta(alpha, beta, random);
    });
    explorationOrder = Array.from({ length: n }, (_, i) => i).sort((a, b) => draws[b]! - draws[a]!);
  } else {
    explorationOrder = [];
  }
  const used = new Uint8Array(n);
  const order: number[] = [];
  let nextByScore = 0;
  let nextExplored = 0;
  for (let slot = 0; slot < filled; slot++) {
    let pick: number;
    if (!exploring[slot]) {
      while (used[byScore[nextByScore]!]) nextByScore++;
      pick = byScore[nextByScore]!;
    } else if (options.strategy === 'thompson') {
      while (used[explorationOrder[nextExplored]!]) nextExplored++;
      pick = explorationOrder[nextExplored]!;
    } else {
      const remaining = n - order.length;
      let skip = Math.floor(random() * remaining);
      for (pick = 0; ; pick++) {
        if (used[pick]) continue;
        if (skip === 0) break;
        skip--;
      }
    }
    used[pick] = 1;
    order.push(pick);
  }
  return { order, explored: exploring };
}
