import type { MergedCandidate, SourceHit } from '../recall/merge.js';
import type { Adjustment, RerankItem, RerankRequest, RerankStep } from './types.js';

/**
 * Runs re-ranking steps in order and cuts the result to `count`; `explain` gives the per-item breakdown that a
 * response carries when asked. Steps that change scores re-sort; steps that move items (caps, MMR, pins) decide the
 * final order, so put them last, and pins after everything else.
 */

export interface Explanation {
  readonly source: string;
  readonly sources: readonly SourceHit[];
  readonly recallScore: number | null;
  readonly rankerScore: number;
  readonly adjustments: readonly Adjustment[];
  readonly finalScore: number;
}

export class Reranker {
  constructor(readonly steps: readonly RerankStep[]) {}

  rerank(items: readonly RerankItem[], request: RerankRequest): RerankItem[] {
    let ranked = items.slice().sort((a, b) => b.score - a.score);
    for (const step of this.steps) ranked = step.apply(ranked, request);
    return ranked.slice(0, request.count);
  }
}

/** Every item starts with this one list: steps add adjustments by making a new list, never by changing it. */
const NO_ADJUSTMENTS: readonly Adjustment[] = Object.freeze([]);

/**
 * Ranker output as re-ranking input: the ranker's score becomes the score every step starts from. Each item carries
 * the recall sources that found it when `withSources` (what an explanation shows); a merge builds those lists only
 * when they are read, so a request that is not explained leaves them out.
 */
export function toRerankItems(candidates: readonly MergedCandidate[], rankerScores: ArrayLike<number>, withSources = true): RerankItem[] {
  if (rankerScores.length !== candidates.length) {
    throw new Error(`${rankerScores.length} ranker scores for ${candidates.length} candidates`);
  }
  return candidates.map((candidate, i) => ({
    itemId: candidate.itemId,
    score: rankerScores[i]!,
    source: candidate.source,
    sources: withSources ? candidate.sources : undefined,
    recallScore: candidate.score,
    rankerScore: rankerScores[i]!,
    adjustments: NO_ADJUSTMENTS,
  }));
}

export function explain(item: RerankItem): Explanation {
  return {
    source: item.source,
    sources: item.sources ?? [],
    recallScore: item.recallScore ?? null,
    rankerScore: item.rankerScore,
    adjustments: item.adjustments,
    finalScore: item.score,
  };
}
