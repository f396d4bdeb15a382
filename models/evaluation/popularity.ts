import { isBehaviourEvent, type BehaviourEvent, type InputEvent } from '../../schema/events.js';
import { isPositive } from './positive.js';
import type { Recommender } from './recommender.js';

/**
 * Items ordered by count, kept sorted under +1 updates in O(1): items with equal counts sit in one contiguous block,
 * so an increment swaps the item to the front of its block and moves the block boundary.
 */
export class CountRanking {
  private readonly order: string[] = [];
  private readonly position = new Map<string, number>();
  private readonly counts = new Map<string, number>();
  /** First index in `order` of the block of items with a given count. */
  private readonly blockStart = new Map<number, number>();

  get size(): number {
    return this.order.length;
  }

  count(item: string): number {
    return this.counts.get(item) ?? 0;
  }

  increment(item: string): void {
    let at = this.position.get(item);
    if (at === undefined) {
      at = this.order.length;
      this.order.push(item);
      this.position.set(item, at);
      this.counts.set(item, 0);
      if (!this.blockStart.has(0)) this.blockStart.set(0, at);
    }
    const count = this.counts.get(item)!;
    const first = this.blockStart.get(count)!;
    const displaced = this.order[first]!;
    this.order[first] = item;
    this.order[at] = displaced;
    this.position.set(item, first);
    this.position.set(displaced, at);
    this.counts.set(item, count + 1);
    if (!this.blockStart.has(count + 1)) this.blockStart.set(count + 1, first);
    const next = this.order[first + 1];
    if (next !== undefined && this.counts.get(next) === count) this.blockStart.set(count, first + 1);
    else this.blockStart.delete(count);
  }

  /** The `k` most counted items not in `exclude`, most counted first; ties keep the order they first reached the count. */
  top(k: number, exclude: ReadonlySet<string>, skip?: ReadonlySet<string>): string[] {
    const out: string[] = [];
    for (let i = 0; i < this.order.length && out.length < k; i++) {
      const item = this.order[i]!;
      if (!exclude.has(item) && !skip?.has(item)) out.push(item);
    }
    return out;
  }
}

export interface PopularityOptions {
  /** Default `'popularity'`. */
  readonly name?: string;
  /**
   * Count only events that show interest (`isPositive`) rather than every interaction. Default true: on MovieLens
   * it predicts the next liked movie better than raw rating counts do.
   */
  readonly positiveOnly?: boolean;
}

/** Recommends the items most interacted with so far, across all users, minus what the user already has. */
export class PopularityRecommender implements Recommender {
  readonly name: string;
  private readonly ranking = new CountRanking();
  private readonly counts: (event: BehaviourEvent) => boolean;

  constructor(options: PopularityOptions = {}) {
    this.name = options.name ?? 'popularity';
    const positiveOnly = options.positiveOnly ?? true;
    this.counts = (event) => event.type !== 'impression' && (!positiveOnly || isPositive(event));
  }

  recommend(_userId: string, k: number, _now: number, exclude: ReadonlySet<string>): string[] {
    return this.ranking.top(k, exclude);
  }

  learn(event: InputEvent): void {
    if (isBehaviourEvent(event) && this.counts(event)) this.ranking.increment(event.itemId);
  }
}
