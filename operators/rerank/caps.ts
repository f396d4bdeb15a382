import { valuesOf, type ItemCatalogue } from '../recall/catalogue.js';
import { withMove, type RerankItem, type RerankRequest, type RerankStep } from './types.js';

/**
 * Per-attribute caps: at most `caps[field]` items per value of `field` (e.g. at most 3 per genre) in the ranking.
 * An item that would exceed a cap moves behind every item that does not, keeping its relative order, so it is only
 * served when nothing else is left; counting stops at the request's `count`.
 */

export interface AttributeCapsOptions {
  readonly catalogue: ItemCatalogue;
  /** Field -> most items per value. */
  readonly caps: Readonly<Record<string, number>>;
}

export function attributeCaps(options: AttributeCapsOptions): RerankStep {
  const caps = Object.entries(options.caps);
  return {
    name: 'caps',
    apply(items: readonly RerankItem[], request: RerankRequest): RerankItem[] {
      const counts = new Map<string, number>();
      const kept: RerankItem[] = [];
      const overflow: { item: RerankItem; from: number; reason: string }[] = [];
      items.forEach((item, from) => {
        const fields = options.catalogue.get(item.itemId)?.fields;
        const keys: string[] = [];
        let over: string | undefined;
        for (const [field, cap] of caps) {
          for (const value of valuesOf(fields?.[field])) {
            const key = `${field}=${value}`;
            if ((counts.get(key) ?? 0) >= cap) over ??= `${key} over cap ${cap}`;
            keys.push(key);
          }
        }
        if (over !== undefined) {
          overflow.push({ item, from, reason: over });
          return;
        }
        for (const key of keys) counts.set(key, (counts.get(key) ?? 0) + 1);
        kept.push(item);
      });
      for (const { item, from, reason } of overflow) kept.push(withMove(item, request, 'caps', from, kept.length, reason));
      return kept;
    },
  };
}
