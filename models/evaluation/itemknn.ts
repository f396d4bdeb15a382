import { isBehaviourEvent, type BehaviourEvent, type InputEvent } from '../../schema/events.js';
import { CountRanking } from './popularity.js';
import { isPositive } from './positive.js';
import type { Recommender } from './recommender.js';

/**
 * Item-kNN by co-visitation, learned online. Two items co-occur when one user interacts with both within
 * `window` consecutive interactions; their similarity is the cosine of their user sets as seen through those
 * windows, co(i, j) / sqrt(n(i) n(j)), shrunk towards zero for items seen only a few times. A user's candidates are
 * the neighbours of their `recent` latest items, weighted by similarity and by how recent the source item is. Users
 * with too little history get the popular items the neighbours did not fill.
 *
 * The defaults were the best of a small grid on MovieLens ml-latest-small, prequential at K = 10 (window 3 to 200,
 * recent 10 to 50, decay 0.7 to 0.9, shrinkage 0 to 20; learning from all ratings beat positives only), so that
 * models are compared against a tuned baseline rather than a strawman. Short windows win there: a user's ratings
 * arrive in sessions, and items rated close together are the most related.
 */

export interface ItemKnnOptions {
  /** Default `'itemknn'`. */
  readonly name?: string;
  /** An interaction co-occurs with the user's previous `window` interactions. Default 10. */
  readonly window?: number;
  /** Candidates come from the user's latest `recent` items. Default 20. */
  readonly recent?: number;
  /** The n-th latest item weighs `decay^n`. Default 0.8. */
  readonly decay?: number;
  /** Added to the cosine's denominator, so a pair seen once among rare items does not look perfect. Default 10. */
  readonly shrinkage?: number;
  /** Learn only from interactions that show interest (`isPositive`). Default false: every interaction co-occurs. */
  readonly positiveOnly?: boolean;
}

export class ItemKnnRecommender implements Recommender {
  readonly name: string;
  private readonly window: number;
  private readonly recent: number;
  private readonly decay: number;
  private readonly shrinkage: number;
  private readonly learns: (event: BehaviourEvent) => boolean;

  private readonly ids = new Map<string, number>();
  private readonly items: string[] = [];
  private itemUsers: Float64Array = new Float64Array(1024);
  private readonly neighbours: Neighbours[] = [];
  /** Each user's interactions, oldest first, trimmed to the last `max(window, recent)`. */
  private readonly histories = new Map<string, number[]>();
  private readonly popular = new CountRanking();
  private scores: Float64Array = new Float64Array(1024);

  constructor(options: ItemKnnOptions = {}) {
    this.name = options.name ?? 'itemknn';
    this.window = options.window ?? 10;
    this.recent = options.recent ?? 20;
    this.decay = options.decay ?? 0.8;
    this.shrinkage = options.shrinkage ?? 10;
    const positiveOnly = options.positiveOnly ?? false;
    for (const [key, value] of Object.entries({ window: this.window, recent: this.recent })) {
      if (!Number.isInteger(value) || value < 1) throw new RangeError(`itemknn: ${key} must be a positive integer, got ${value}`);
    }
    if (!(this.decay > 0 && this.decay <= 1)) throw new RangeError(`itemknn: decay must be in (0, 1], got ${this.decay}`);
    if (!(this.shrinkage >= 0)) throw new RangeError(`itemknn: shrinkage must be non-negative, got ${this.shrinkage}`);
    this.learns = (event) => event.type !== 'impression' && event.type !== 'dislike' && (!positiveOnly || isPositive(event));
  }

  learn(event: InputEvent): void {
    if (!isBehaviourEvent(event) || !this.learns(event)) return;
    const item = this.idOf(event.itemId);
    let history = this.histories.get(event.userId);
    if (!history) this.histories.set(event.userId, (history = []));
    const again = history.indexOf(item);
    if (again >= 0) {
      // A repeat refreshes recency but is not new evidence of co-occurrence.
      history.splice(again, 1);
      history.push(item);
      return;
    }
    const itemNeighbours = this.neighbours[item]!;
    for (let h = Math.max(0, history.length - this.window); h < history.length; h++) {
      const other = history[h]!;
      itemNeighbours.add(other);
      this.neighbours[other]!.add(item);
    }
    this.itemUsers[item]!++;
    this.popular.increment(event.itemId);
    history.push(item);
    if (history.length > 2 * Math.max(this.window, this.recent)) history.splice(0, history.length - Math.max(this.window, this.recent));
  }

  recommend(userId: string, k: number, _now: number, exclude: ReadonlySet<string>): string[] {
    const history = this.histories.get(userId);
    const picked: string[] = [];
    if (history && history.length > 0) {
      const scores = this.scores;
      const touched: number[] = [];
      let weight = 1;
      for (let h = history.length - 1; h >= Math.max(0, history.length - this.recent); h--) {
        const source = history[h]!;
        const sourceUsers = this.itemUsers[source]!;
        const { ids, counts, size } = this.neighbours[source]!;
        for (let n = 0; n < size; n++) {
          const neighbour = ids[n]!;
          const similarity = counts[n]! / (Math.sqrt(sourceUsers * this.itemUsers[neighbour]!) + this.shrinkage);
          if (scores[neighbour] === 0) touched.push(neighbour);
          scores[neighbour]! += weight * similarity;
        }
        weight *= this.decay;
      }
      const best = topK(touched, scores, k, (item) => exclude.has(this.items[item]!));
      for (const item of touched) scores[item] = 0;
      for (const item of best) picked.push(this.items[item]!);
    }
    if (picked.length < k) picked.push(...this.popular.top(k - picked.length, exclude, new Set(picked)));
    return picked;
  }

  private idOf(itemId: string): number {
    let id = this.ids.get(itemId);
    if (id === undefined) {
      id = this.items.length;
      this.ids.set(itemId, id);
      this.items.push(itemId);
      this.neighbours.push(new Neighbours());
      if (id >= this.itemUsers.length) {
        this.itemUsers = grow(this.itemUsers);
        this.scores = grow(this.scores);
      }
    }
    return id;
  }
}

/** One item's co-occurrence counts, in flat arrays so that scoring walks memory rather than a Map. */
class Neighbours {
  ids: Int32Array = new Int32Array(8);
  counts: Float64Array = new Float64Array(8);
  size = 0;
  private readonly slots = new Map<number, number>();

  add(neighbour: number): void {
    const slot = this.slots.get(neighbour);
    if (slot !== undefined) {
      this.counts[slot]!++;
      return;
    }
    if (this.size === this.ids.length) {
      const ids = new Int32Array(this.size * 2);
      ids.set(this.ids);
      this.ids = ids;
      this.counts = grow(this.counts);
    }
    this.slots.set(neighbour, this.size);
    this.ids[this.size] = neighbour;
    this.counts[this.size++] = 1;
  }
}

function grow(array: Float64Array): Float64Array {
  const grown = new Float64Array(array.length * 2);
  grown.set(array);
  return grown;
}

/** The `k` highest-scoring candidates, best first, skipping excluded ones; ties go to the smaller id. */
function topK(candidates: readonly number[], scores: Float64Array, k: number, excluded: (item: number) => boolean): number[] {
  const best: number[] = [];
  const better = (a: number, b: number) => scores[a]! > scores[b]! || (scores[a] === scores[b] && a < b);
  for (const item of candidates) {
    if (best.length === k && !better(item, best[k - 1]!)) continue;
    if (excluded(item)) continue;
    let at = best.length < k ? best.length : k - 1;
    best[at] = item;
    while (at > 0 && better(item, best[at - 1]!)) {
      best[at] = best[at - 1]!;
      best[--at] = item;
    }
  }
  return best;
}
