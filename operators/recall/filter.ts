import type { Filters } from '../../schema/events.js';
import { valuesOf, type ItemCatalogue } from './catalogue.js';

/**
 * The predicate every candidate must pass: not consumed, not excluded by the request, not marked unavailable, and
 * matching every `filters.fields` entry. A field matches when any of the item's values equals any of the filter's
 * values, compared as strings (so `year: 1999` matches a filter of `"1999"`). An item with no metadata matches no
 * field filter, so a filtered request never returns items it cannot vouch for.
 */

export interface CandidateFilterInput {
  readonly filters?: Filters;
  readonly consumed?: ReadonlySet<string>;
}

export type CandidateFilter = (itemId: string) => boolean;

export function candidateFilter(catalogue: ItemCatalogue, input: CandidateFilterInput): CandidateFilter {
  const consumed = input.consumed;
  const excluded = input.filters?.excludeItems?.length ? new Set(input.filters.excludeItems) : undefined;
  const fieldFilters = input.filters?.fields
    ? Object.entries(input.filters.fields).map(([field, wanted]) => ({
        field,
        wanted: new Set(Array.isArray(wanted) ? wanted.map(String) : [String(wanted)]),
      }))
    : [];
  // Every candidate of every source passes here, hundreds per request: without field filters, no catalogue lookup.
  if (fieldFilters.length === 0) return (itemId) => !consumed?.has(itemId) && !excluded?.has(itemId) && !catalogue.isUnavailable(itemId);
  return (itemId) => {
    if (consumed?.has(itemId) || excluded?.has(itemId)) return false;
    const item = catalogue.get(itemId);
    if (!item || !item.available) return false;
    for (const { field, wanted } of fieldFilters) {
      if (!valuesOf(item.fields[field]).some((value) => wanted.has(value))) return false;
    }
    return true;
  };
}
