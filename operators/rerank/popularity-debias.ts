import { byScore, withScore, type RerankItem, type RerankRequest, type RerankStep } from './types.js';

/**
 * Popularity de-biasing: divides each score by `(1 + popularity)^strength`, so items the ranker likes mostly for
 * being popular give way to items that fit the user as well but are seen less (a standard correction for the
 * feedback loop in which popular items get shown, clicked and so ranked higher). Scores are expected to be
 * non-negative, as click probabilities are; a negative score is multiplied instead, so the correction always lowers.
 */

export interface PopularityDebiasOptions {
  /** The item's popularity at `now`, such as `PopularityRecaller.popularity`. */
  readonly popularity: (itemId: string, now: number) => number;
  /** Default 0.1; 0 turns the step off. */
  readonly strength?: number;
}

export function popularityDebias(options: PopularityDebiasOptions): RerankStep {
  const strength = options.strength ?? 0.1;
  return {
    name: 'popularity-debias',
    apply(items: readonly RerankItem[], request: RerankRequest): RerankItem[] {
      if (strength === 0) return items.slice();
      return byScore(
        items.map((item) => {
          const popularity = Math.max(0, options.popularity(item.itemId, request.now));
          if (popularity === 0) return item;
          const factor = (1 + popularity) ** strength;
          const score = item.score >= 0 ? item.score / factor : item.score * factor;
          return withScore(item, request, 'popularity-debias', score, { popularity });
        }),
      );
    },
  };
}
