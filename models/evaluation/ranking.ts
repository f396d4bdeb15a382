/**
 * Per-list ranking figures for one held-out item. All are "at K": an item ranked past the list scores zero.
 * `rank` is the 0-based position of the item in the list, or -1 when absent.
 */

export function hit(rank: number): number {
  return rank >= 0 ? 1 : 0;
}

/** With one relevant item the ideal DCG is 1, so NDCG is the discounted gain of its position. */
export function ndcg(rank: number): number {
  return rank >= 0 ? 1 / Math.log2(rank + 2) : 0;
}

export function reciprocalRank(rank: number): number {
  return rank >= 0 ? 1 / (rank + 1) : 0;
}

/**
 * Self-information of recommending an item, -log2 of its share of interactions so far, Laplace-smoothed over the
 * catalogue seen so far so that an item nobody has touched yet is finite (and the most novel).
 */
export function selfInformation(itemCount: number, totalInteractions: number, catalogueSize: number): number {
  return -Math.log2((itemCount + 1) / (totalInteractions + Math.max(catalogueSize, 1)));
}
