import type { FieldMap, FieldValue, ItemEvent } from '../../schema/events.js';

/**
 * Item metadata as the `items` topic carries it, shared by every recall source, the filters and the re-rankers.
 * Each item event replaces the item's fields (the topic is compacted, so an event is the whole record); an event
 * older than the one already applied is ignored, so replays and out-of-order delivery converge.
 */

export interface ItemInfo {
  readonly itemId: string;
  readonly fields: FieldMap;
  /** Event time of the first metadata seen for the item. */
  readonly firstSeen: number;
  /** `fields[publishedField]` when it is a number, else `firstSeen`. */
  readonly publishedAt: number;
  /** False when `fields[availableField] === false`. */
  readonly available: boolean;
  /** Event time of the metadata applied. */
  readonly updatedAt: number;
}

export interface ItemCatalogueOptions {
  /** Numeric field holding the publication time in ms. Default `publishedAt`. */
  readonly publishedField?: string;
  /** Boolean field that marks an item unavailable when false. Default `available`. */
  readonly availableField?: string;
}

const NO_VALUES: readonly string[] = [];

/**
 * A field's values as strings: scalars give one, lists give each element; missing gives none. A list of strings is
 * returned as it is, not copied: recall and re-ranking read item fields this way hundreds of times a request.
 */
export function valuesOf(value: FieldValue | undefined): readonly string[] {
  if (value === undefined) return NO_VALUES;
  if (Array.isArray(value)) return value.every((element) => typeof element === 'string') ? (value as readonly string[]) : value.map(String);
  return [String(value)];
}

export class ItemCatalogue implements Iterable<ItemInfo> {
  private readonly items = new Map<string, ItemInfo>();
  /** Ids of the items marked unavailable, so the filter every candidate passes can skip the catalogue lookup. */
  private readonly unavailable = new Set<string>();
  /**
   * Per field, the items that have ever lost one of its values. Lists built from values (such as per-genre
   * popularity) need to check an item still holds the value only for these: hundreds of items are walked a request.
   */
  private readonly lostValues = new Map<string, Set<string>>();
  private readonly publishedField: string;
  private readonly availableField: string;

  constructor(options: ItemCatalogueOptions = {}) {
    this.publishedField = options.publishedField ?? 'publishedAt';
    this.availableField = options.availableField ?? 'available';
  }

  get size(): number {
    return this.items.size;
  }

  /** Applies an item event; returns the stored record, or undefined when the event was older than what is stored. */
  observe(event: ItemEvent): ItemInfo | undefined {
    const previous = this.items.get(event.itemId);
    if (previous && event.ts < previous.updatedAt) return undefined;
    const firstSeen = previous ? Math.min(previous.firstSeen, event.ts) : event.ts;
    const published = event.fields[this.publishedField];
    const info: ItemInfo = {
      itemId: event.itemId,
      fields: event.fields,
      firstSeen,
      publishedAt: typeof published === 'number' && Number.isFinite(published) ? published : firstSeen,
      available: event.fields[this.availableField] !== false,
      updatedAt: event.ts,
    };
    if (previous) this.noteLostValues(event.itemId, previous.fields, event.fields);
    this.items.set(event.itemId, info);
    if (info.available) this.unavailable.delete(event.itemId);
    else this.unavailable.add(event.itemId);
    return info;
  }

  get(itemId: string): ItemInfo | undefined {
    return this.items.get(itemId);
  }

  /**
   * False when the item is known never to have lost a value of `field`: then every value it was ever seen with, it
   * still holds. True when it may have (check with `hasValue`).
   */
  mayHaveLost(itemId: string, field: string): boolean {
    const lost = this.lostValues.get(field);
    return lost !== undefined && lost.has(itemId);
  }

  private noteLostValues(itemId: string, before: FieldMap, after: FieldMap): void {
    for (const field in before) {
      const now = after[field];
      if (now === before[field]) continue;
      const kept = valuesOf(now);
      if (valuesOf(before[field]).every((value) => kept.includes(value))) continue;
      let lost = this.lostValues.get(field);
      if (!lost) this.lostValues.set(field, (lost = new Set()));
      lost.add(itemId);
    }
  }

  /** Whether the item is marked unavailable; unknown items are not. */
  isUnavailable(itemId: string): boolean {
    return this.unavailable.size > 0 && this.unavailable.has(itemId);
  }

  has(itemId: string): boolean {
    return this.items.has(itemId);
  }

  /** The item's values of `field` as strings (see `valuesOf`); none for unknown items. */
  values(itemId: string, field: string): readonly string[] {
    return valuesOf(this.items.get(itemId)?.fields[field]);
  }

  /** Whether one of the item's values of `field` equals `value` as a string, without building the value list. */
  hasValue(itemId: string, field: string, value: string): boolean {
    const held = this.items.get(itemId)?.fields[field];
    if (held === undefined) return false;
    if (!Array.isArray(held)) return (typeof held === 'string' ? held : String(held)) === value;
    for (const element of held) if ((typeof element === 'string' ? element : String(element)) === value) return true;
    return false;
  }

  [Symbol.iterator](): Iterator<ItemInfo> {
    return this.items.values();
  }
}
