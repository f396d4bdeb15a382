import type { BehaviourType, FieldMap } from '../../schema/events.js';
import { LruMap } from '../lru-map.js';
import { bestFirst } from './best-first.js';
import { RequestIndex } from './request-index.js';
import { valuesOf, type ItemCatalogue } from './catalogue.js';
import type { PopularityRecaller } from './popular.js';
import { isItemEvent, type RecallEvent, type RecallRequest, type Recaller, type ScoredCandidate } from './types.js';

/**
 * The user's own recent context, two ways:
 * - more of what they just looked at: the most popular items sharing an attribute value (genre, brand) with their
 *   recent items, each value weighted by how recent and how frequent it is among them;
 * - re-surfacing: recent items they showed interest in but did not convert on (viewed, added to the cart, not
 *   bought), the most recent first.
 * Scores lie in [0, 1] for both, scaled by `attributeWeight` and `resurfaceWeight`.
 */

export interface RecentContextRecallerOptions {
  readonly catalogue: ItemCatalogue;
  /** Supplies the per-attribute popularity lists; it must track every field in `attributes`. */
  readonly popularity: PopularityRecaller;
  /** Item fields whose values are followed. Default none. */
  readonly attributes?: readonly string[];
  /** Default `context`. */
  readonly name?: string;
  /** Recent items considered. Default 10. */
  readonly maxRecent?: number;
  /** The k-th most recent item weighs `recencyDecay^k`. Default 0.8. */
  readonly recencyDecay?: number;
  /** Default 1; 0 turns re-surfacing off. */
  readonly resurfaceWeight?: number;
  /** Default 1; 0 turns attribute expansion off. */
  readonly attributeWeight?: number;
  /** Events after which an item is never re-surfaced to that user. Default `purchase`. */
  readonly conversionTypes?: readonly BehaviourType[];
  /** Users whose conversions are remembered. Default 100,000. */
  readonly maxUsers?: number;
  /** Conversions remembered per user. Default 100. */
  readonly conversionsPerUser?: number;
}

export class RecentContextRecaller implements Recaller {
  readonly name: string;
  private readonly catalogue: ItemCatalogue;
  private readonly popularity: PopularityRecaller;
  private readonly attributes: readonly string[];
  private readonly maxRecent: number;
  private readonly recencyDecay: number;
  private readonly resurfaceWeight: number;
  private readonly attributeWeight: number;
  private readonly conversionTypes: ReadonlySet<string>;
  private readonly conversionsPerUser: number;
  /** userId -> converted items, for the `maxUsers` most recently converting users. */
  private readonly conversions: LruMap<string, Set<string>>;
  /** A request's offered scores, by offer order: kept between requests, as a fresh typed array costs a backing store. */
  private scores: Float64Array = new Float64Array(256);
  /** A request's offered items to their place in offer order. */
  private readonly offered = new RequestIndex();

  constructor(options: RecentContextRecallerOptions) {
    this.name = options.name ?? 'context';
    this.catalogue = options.catalogue;
    this.popularity = options.popularity;
    this.attributes = options.attributes ?? [];
    this.maxRecent = options.maxRecent ?? 10;
    this.recencyDecay = options.recencyDecay ?? 0.8;
    this.resurfaceWeight = options.resurfaceWeight ?? 1;
    this.attributeWeight = options.attributeWeight ?? 1;
    this.conversionTypes = new Set(options.conversionTypes ?? ['purchase']);
    this.conversions = new LruMap(options.maxUsers ?? 100_000);
    this.conversionsPerUser = options.conversionsPerUser ?? 100;
  }

  observe(event: RecallEvent): void {
    if (isItemEvent(event) || !this.conversionTypes.has(event.type)) return;
    const converted = this.conversions.get(event.userId) ?? new Set<string>();
    this.conversions.set(event.userId, converted);
    converted.add(event.itemId);
    if (converted.size > this.conversionsPerUser) converted.delete(converted.values().next().value!);
  }

  recall(request: RecallRequest): ScoredCandidate[] {
    if (request.count <= 0) return [];
    const recent = request.recentItems.slice(0, this.maxRecent);
    const accept = request.accept;
    // Offered items in offer order, each at its best score so far: a stable selection of the best reads this order.
    const ids: string[] = [];
    let scores: Float64Array = this.scores;
    const at = this.offered;
    at.begin();
    const offer = (itemId: string, score: number) => {
      const i = at.get(itemId);
      if (i === undefined) {
        if (!(score > 0)) return;
        at.set(itemId, ids.length);
        ids.push(itemId);
        if (ids.length > scores.length) scores = this.scores = growTo(scores, 2 * ids.length);
        scores[ids.length - 1] = score;
      } else if (score > scores[i]!) scores[i] = score;
    };

    if (this.resurfaceWeight > 0) {
      const converted = this.conversions.get(request.userId);
      let recency = this.resurfaceWeight;
      const seen = new Set<string>();
      for (const itemId of recent) {
        if (!seen.has(itemId) && !converted?.has(itemId) && (!accept || accept(itemId))) offer(itemId, recency);
        seen.add(itemId);
        recency *= this.recencyDecay;
      }
    }

    if (this.attributeWeight > 0 && this.attributes.length > 0 && recent.length > 0) {
      const own = new Set(recent);
      const recentFields = recent.map((itemId) => this.catalogue.get(itemId)?.fields);
      for (const attribute of this.attributes) {
        const interest = this.valueInterest(recentFields, attribute);
        for (const [value, share] of interest) {
          // The list comes best first: its first score scales the rest, and when it is not above 0 none is.
          let max = NaN;
          this.popularity.visitTopByAttribute(attribute, value, { count: request.count, now: request.now, accept }, own, (itemId, score) => {
            if (Number.isNaN(max)) max = score;
            if (max > 0) offer(itemId, this.attributeWeight * share * (score / max));
          });
        }
      }
    }

    const best = bestFirst(scores, ids.length, request.count);
    const out: ScoredCandidate[] = new Array(best.length);
    for (let k = 0; k < best.length; k++) out[k] = { itemId: ids[best[k]!]!, score: scores[best[k]!]!, source: this.name };
    return out;
  }

  /** Each value's recency-weighted share among the recent items' values of `attribute`, summing to 1. */
  private valueInterest(recentFields: readonly (FieldMap | undefined)[], attribute: string): Map<string, number> {
    const interest = new Map<string, number>();
    let total = 0;
    let recency = 1;
    for (const fields of recentFields) {
      for (const value of valuesOf(fields?.[attribute])) {
        interest.set(value, (interest.get(value) ?? 0) + recency);
        total += recency;
      }
      recency *= this.recencyDecay;
    }
    for (const [value, weight] of interest) interest.set(value, weight / total);
    return interest;
  }
}

function growTo(values: Float64Array, length: number): Float64Array {
  const grown = new Float64Array(length);
  grown.set(values);
  return grown;
}
