import type { SourceHit } from '../recall/merge.js';

/**
 * The Reranker seam: ranked items in, re-ordered (and possibly fewer) items out. Each step is one idea, and every
 * change it makes to an item is recorded as an adjustment, so a response can explain each item: where it was
 * recalled, what the ranker said, and what each re-ranking step did to it.
 */

export interface Adjustment {
  /** The step that made it. */
  readonly step: string;
  /** Change of score (0 for steps that only move items). */
  readonly delta: number;
  /** 0-based positions before and after, for steps that move items. */
  readonly moved?: { readonly from: number; readonly to: number };
  /** Why, in a few words (e.g. `genre=Drama over cap 3`). */
  readonly reason?: string;
  /** The numbers the step acted on (e.g. `{ ageMs }`), kept as numbers so the hot path formats no text. */
  readonly basis?: Readonly<Record<string, number>>;
}

export interface RerankItem {
  readonly itemId: string;
  /** Current score: the ranker's score plus every adjustment so far. */
  readonly score: number;
  /** The recall source that found the item best. */
  readonly source: string;
  readonly sources?: readonly SourceHit[];
  readonly recallScore?: number;
  readonly rankerScore: number;
  readonly adjustments: readonly Adjustment[];
}

export interface RerankRequest {
  /** Request time in ms, on the clock of item publication times. */
  readonly now: number;
  /** Items the response will carry; steps that select (MMR) select this many. */
  readonly count: number;
  /**
   * Whether steps record their adjustments on the items (what `explain` shows). Default true. Serving records them
   * only for requests that ask for explanations: on the others they would be built for every candidate and read by
   * nobody.
   */
  readonly explain?: boolean;
}

export interface RerankStep {
  readonly name: string;
  /** Returns the new ranking; the input order is the current ranking, best first. */
  apply(items: readonly RerankItem[], request: RerankRequest): RerankItem[];
}

/** The item with a new score, and the change recorded unless `request.explain` is false. */
export function withScore(item: RerankItem, request: RerankRequest, step: string, score: number, basis?: Readonly<Record<string, number>>): RerankItem {
  if (request.explain === false) return { ...item, score };
  const adjustment: Adjustment = basis === undefined ? { step, delta: score - item.score } : { step, delta: score - item.score, basis };
  return { ...item, score, adjustments: [...item.adjustments, adjustment] };
}

/** The item with a move recorded; the item itself when `request.explain` is false. */
export function withMove(item: RerankItem, request: RerankRequest, step: string, from: number, to: number, reason?: string): RerankItem {
  if (request.explain === false) return item;
  const adjustment: Adjustment = reason === undefined ? { step, delta: 0, moved: { from, to } } : { step, delta: 0, moved: { from, to }, reason };
  return { ...item, adjustments: [...item.adjustments, adjustment] };
}

/** Sorts by score, best first, keeping the current order among equal scores. */
export function byScore(items: RerankItem[]): RerankItem[] {
  return items.sort((a, b) => b.score - a.score);
}
