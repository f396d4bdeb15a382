import type { ItemCatalogue } from '../recall/catalogue.js';
import { byScore, withScore, type RerankItem, type RerankRequest, type RerankStep } from './types.js';

/**
 * Freshness boost: adds `weight * 2^(-age / halfLife)` to each item's score, age measured from its publication time
 * (an item dated in the future counts as brand new). Items without metadata get nothing.
 */

export interface FreshnessBoostOptions {
  readonly catalogue: ItemCatalogue;
  /** The boost of a brand-new item, in score units. Default 0.05. */
  readonly weight?: number;
  /** Default 1 day. */
  readonly halfLifeMs?: number;
}

export function freshnessBoost(options: FreshnessBoostOptions): RerankStep {
  const weight = options.weight ?? 0.05;
  const halfLifeMs = options.halfLifeMs ?? 24 * 3600_000;
  return {
    name: 'freshness',
    apply(items: readonly RerankItem[], request: RerankRequest): RerankItem[] {
      const explaining = request.explain !== false;
      return byScore(
        items.map((item) => {
          const info = options.catalogue.get(item.itemId);
          if (!info) return item;
          const age = Math.max(0, request.now - info.publishedAt);
          const boost = weight * 2 ** (-age / halfLifeMs);
          return boost > 0 ? withScore(item, request, 'freshness', item.score + boost, explaining ? { ageMs: age } : undefined) : item;
        }),
      );
    },
  };
}
