import { valuesOf, type ItemCatalogue } from './catalogue.js';
import { DecayedCounts, type TopList } from './decayed-counts.js';
import { DEFAULT_EVENT_WEIGHTS, eventWeight, isItemEvent, type EventWeights, type RecallEvent, type RecallRequest, type Recaller, type ScoredCandidate } from './types.js';

/**
 * Popular and trending items, globally and per attribute value (such as genre): decayed, weighted event counts. The
 * same recaller serves both ideas with different half-lives: `popular` over days, `trending` over hours.
 *
 * When the request context names a value of a tracked attribute (`{ genre: 'Drama' }`), the per-value lists come first
 * and the global list fills the rest.
 */

export interface PopularityRecallerOptions {
  readonly catalogue: ItemCatalogue;
  /** Source name. Default `popular`. */
  readonly name?: string;
  /** Default 7 days. */
  readonly halfLifeMs?: number;
  /** Default `DEFAULT_EVENT_WEIGHTS`. */
  readonly weights?: EventWeights;
  /** Item fields with per-value lists. Default none. */
  readonly attributes?: readonly string[];
  /** Length of the global list. Default 1000. */
  readonly topK?: number;
  /** Length of each per-value list. Default 200. */
  readonly attributeTopK?: number;
}

export class PopularityRecaller implements Recaller {
  readonly name: string;
  readonly counts: DecayedCounts;
  private readonly catalogue: ItemCatalogue;
  private readonly weights: EventWeights;
  private readonly attributes: readonly string[];
  private readonly attributeTopK: number;
  private readonly global: TopList;
  /** attribute -> value -> list */
  private readonly byAttribute = new Map<string, Map<string, TopList>>();

  constructor(options: PopularityRecallerOptions) {
    this.name = options.name ?? 'popular';
    this.catalogue = options.catalogue;
    this.counts = new DecayedCounts(options.halfLifeMs ?? 7 * 24 * 3600_000);
    this.weights = options.weights ?? DEFAULT_EVENT_WEIGHTS;
    this.attributes = options.attributes ?? [];
    this.attributeTopK = options.attributeTopK ?? 200;
    this.global = this.counts.createList(options.topK ?? 1000);
    for (const attribute of this.attributes) this.byAttribute.set(attribute, new Map());
  }

  observe(event: RecallEvent): void {
    if (isItemEvent(event)) {
      // Metadata may arrive after the first behaviour: place an already-counted item in its value lists.
      const stored = this.counts.stored(event.itemId);
      if (stored > 0) this.raiseInAttributes(event.itemId, stored);
      return;
    }
    const weight = eventWeight(event, this.weights);
    if (weight === 0) return;
    const stored = this.counts.add(event.itemId, weight, event.ts);
    this.global.raise(event.itemId, stored);
    this.raiseInAttributes(event.itemId, stored);
  }

  /** Decayed count of one item at `now` (also what popularity de-biasing reads). */
  popularity(itemId: string, now: number): number {
    return this.counts.count(itemId, now);
  }

  /**
   * The best items with `attribute` = `value`, best first, given to `visit` one by one, as the context source reads
   * them for "more like your recent items". Not a list: that source reads several of these per request, and would
   * otherwise make an object for each item of each.
   */
  visitTopByAttribute(
    attribute: string,
    value: string,
    request: Pick<RecallRequest, 'count' | 'now' | 'accept'>,
    exclude: ReadonlySet<string> | undefined,
    visit: (itemId: string, score: number) => void,
  ): void {
    const list = this.byAttribute.get(attribute)?.get(value);
    if (list) this.visitList(list, request, exclude, visit, attribute, value);
  }

  recall(request: RecallRequest): ScoredCandidate[] {
    const out: ScoredCandidate[] = [];
    if (request.count <= 0) return out;
    const context = request.context;
    if (context) {
      const seen = new Set<string>();
      for (const attribute of this.attributes) {
        for (const value of valuesOf(context[attribute])) {
          const list = this.byAttribute.get(attribute)?.get(value);
          if (list) this.collect(list, request, out, seen, seen, attribute, value);
        }
      }
      if (out.length > 0) {
        out.sort((a, b) => b.score - a.score);
        out.length = Math.min(out.length, request.count);
        if (out.length < request.count) this.collect(this.global, { ...request, count: request.count - out.length }, out, seen);
        return out;
      }
    }
    this.collect(this.global, request, out);
    return out;
  }

  private collect(
    list: TopList,
    request: Pick<RecallRequest, 'count' | 'now' | 'accept'>,
    out: ScoredCandidate[],
    skip?: ReadonlySet<string>,
    taken?: Set<string>,
    attribute?: string,
    value?: string,
  ): void {
    this.visitList(
      list,
      request,
      skip,
      (itemId, score) => {
        taken?.add(itemId);
        out.push({ itemId, score, source: this.name });
      },
      attribute,
      value,
    );
  }

  /** The list's first `request.count` items that pass, best first; a list of `attribute=value` checks each still holds. */
  private visitList(
    list: TopList,
    request: Pick<RecallRequest, 'count' | 'now' | 'accept'>,
    skip: ReadonlySet<string> | undefined,
    visit: (itemId: string, score: number) => void,
    attribute?: string,
    value?: string,
  ): void {
    const { ids, scores } = list;
    const accept = request.accept;
    const decay = this.counts.valueAt(1, request.now);
    for (let i = 0, visited = 0; i < ids.length && visited < request.count; i++) {
      const itemId = ids[i]!;
      if (skip?.has(itemId)) continue;
      if (accept && !accept(itemId)) continue;
      // Lists are not purged when an item's attribute changes: check it still holds, where it may not.
      if (attribute !== undefined && this.catalogue.mayHaveLost(itemId, attribute) && !this.catalogue.hasValue(itemId, attribute, value!)) continue;
      visited++;
      visit(itemId, scores[i]! * decay);
    }
  }

  private raiseInAttributes(itemId: string, stored: number): void {
    if (this.attributes.length === 0) return;
    const item = this.catalogue.get(itemId);
    if (!item) return;
    for (const attribute of this.attributes) {
      const lists = this.byAttribute.get(attribute)!;
      for (const value of valuesOf(item.fields[attribute])) {
        let list = lists.get(value);
        if (!list) {
          list = this.counts.createList(this.attributeTopK);
          lists.set(value, list);
        }
        list.raise(itemId, stored);
      }
    }
  }
}
