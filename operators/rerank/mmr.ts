import type { ItemEmbeddings } from '../../models/embeddings.js';
import { valuesOf, type ItemCatalogue, type ItemInfo } from '../recall/catalogue.js';
import { withMove, type RerankItem, type RerankRequest, type RerankStep } from './types.js';

/**
 * Maximal marginal relevance: picks items one at a time, each maximising
 *   lambda * relevance - (1 - lambda) * (highest similarity to an item already picked),
 * where relevance is the score min-max scaled to [0, 1] over the candidates and similarity blends attribute overlap
 * (Jaccard over `field=value` pairs) and embedding cosine (negative cosines count as 0). lambda = 1 keeps the
 * ranking; lower values trade relevance for diversity. The first `count` items are picked this way from the top
 * `pool(count)` candidates; the rest keep their order behind them. Moves are recorded for items that enter or leave
 * the picked places.
 */

export interface MmrOptions {
  /** Default 0.7. */
  readonly lambda?: number;
  readonly catalogue?: ItemCatalogue;
  /** Item fields compared for attribute similarity. Default none. */
  readonly attributes?: readonly string[];
  readonly embeddings?: ItemEmbeddings;
  /** Weight of attribute similarity in the blend. Default 1 when attributes are given, else 0. */
  readonly attributeWeight?: number;
  /** Weight of embedding similarity in the blend. Default 1 when embeddings are given, else 0. */
  readonly embeddingWeight?: number;
  /** Candidates considered, from the top, for a request of `count` items. Default `max(30, 2 * count)`. */
  readonly pool?: (count: number) => number;
}

export function mmr(options: MmrOptions): RerankStep {
  const lambda = options.lambda ?? 0.7;
  if (!(lambda >= 0 && lambda <= 1)) throw new RangeError(`lambda must be in [0, 1], got ${lambda}`);
  const attributes = options.attributes ?? [];
  const attributeWeight = options.catalogue && attributes.length > 0 ? (options.attributeWeight ?? 1) : 0;
  const embeddingWeight = options.embeddings ? (options.embeddingWeight ?? 1) : 0;
  const totalWeight = attributeWeight + embeddingWeight;
  const pool = options.pool ?? ((count: number) => Math.max(30, 2 * count));

  // An item's keys are built once per metadata record: the catalogue replaces the record when the item changes, which
  // drops its entry here. Each distinct `field=value` is numbered, so comparing two items compares small integers.
  const keysOfRecord = new WeakMap<ItemInfo, Int32Array>();
  const keyNumbers = new Map<string, number>();
  const noKeys = new Int32Array(0);
  function attributeKeys(itemId: string): Int32Array {
    const info = options.catalogue?.get(itemId);
    if (!info) return noKeys;
    let keys = keysOfRecord.get(info);
    if (!keys) {
      const built: number[] = [];
      for (const field of attributes) {
        for (const value of valuesOf(info.fields[field])) {
          const key = `${field}=${value}`;
          let number = keyNumbers.get(key);
          if (number === undefined) keyNumbers.set(key, (number = keyNumbers.size));
          if (!built.includes(number)) built.push(number);
        }
      }
      keys = Int32Array.from(built);
      keysOfRecord.set(info, keys);
    }
    return keys;
  }

  // A request's working arrays, kept between requests (apply runs start to end without yielding): a fresh typed
  // array each costs a backing store of its own.
  const dim = options.embeddings?.dim ?? 0;
  let relevance = new Float64Array(64);
  let vectors = new Float32Array(embeddingWeight > 0 ? 64 * dim : 0);
  let hasVector = new Uint8Array(64);
  let maxSimilarity = new Float64Array(64);
  let picked = new Uint8Array(64);

  return {
    name: 'mmr',
    apply(items: readonly RerankItem[], request: RerankRequest): RerankItem[] {
      const picks = Math.min(request.count, items.length);
      // Items far down the ranking have too little relevance to be picked; leaving them out bounds the work.
      const n = Math.min(items.length, Math.max(pool(request.count), picks));
      if (lambda === 1 || totalWeight === 0 || n < 2) return items.slice();
      let min = Infinity;
      let max = -Infinity;
      for (let i = 0; i < n; i++) {
        min = Math.min(min, items[i]!.score);
        max = Math.max(max, items[i]!.score);
      }
      const range = max - min;
      if (relevance.length < n) {
        relevance = new Float64Array(2 * n);
        vectors = new Float32Array(embeddingWeight > 0 ? 2 * n * dim : 0);
        hasVector = new Uint8Array(2 * n);
        maxSimilarity = new Float64Array(2 * n);
        picked = new Uint8Array(2 * n);
      }
      hasVector.fill(0, 0, n);
      maxSimilarity.fill(0, 0, n);
      picked.fill(0, 0, n);
      for (let i = 0; i < n; i++) relevance[i] = range > 0 ? (items[i]!.score - min) / range : 1;
      const keys = attributeWeight > 0 ? items.slice(0, n).map((item) => attributeKeys(item.itemId)) : [];
      if (embeddingWeight > 0) {
        for (let i = 0, at = 0; i < n; i++, at += dim) {
          if (!options.embeddings!.copyVector(items[i]!.itemId, vectors, at)) continue;
          let norm = 0;
          for (let d = 0; d < dim; d++) norm += vectors[at + d]! * vectors[at + d]!;
          if (norm === 0) continue;
          const scale = 1 / Math.sqrt(norm);
          for (let d = 0; d < dim; d++) vectors[at + d]! *= scale;
          hasVector[i] = 1;
        }
      }
      const similarity = (i: number, j: number): number => {
        let sum = 0;
        if (attributeWeight > 0) {
          const a = keys[i]!;
          const b = keys[j]!;
          if (a.length > 0 && b.length > 0) {
            let shared = 0;
            for (let x = 0; x < a.length; x++) {
              for (let y = 0; y < b.length; y++) {
                if (a[x] === b[y]) {
                  shared++;
                  break;
                }
              }
            }
            sum += (attributeWeight * shared) / (a.length + b.length - shared);
          }
        }
        if (embeddingWeight > 0 && hasVector[i] && hasVector[j]) {
          let dot = 0;
          for (let d = 0, x = i * dim, y = j * dim; d < dim; d++) dot += vectors[x + d]! * vectors[y + d]!;
          if (dot > 0) sum += embeddingWeight * dot;
        }
        return sum / totalWeight;
      };

      const order: number[] = [];
      for (let step = 0; step < picks; step++) {
        let best = -1;
        let bestValue = -Infinity;
        for (let i = 0; i < n; i++) {
          if (picked[i]) continue;
          const value = lambda * relevance[i]! - (1 - lambda) * maxSimilarity[i]!;
          if (value > bestValue) {
            bestValue = value;
            best = i;
          }
        }
        picked[best] = 1;
        order.push(best);
        for (let i = 0; i < n; i++) if (!picked[i]) maxSimilarity[i] = Math.max(maxSimilarity[i]!, similarity(i, best));
      }
      for (let i = 0; i < items.length; i++) if (i >= n || !picked[i]) order.push(i);
      return order.map((from, to) => {
        const item = items[from]!;
        // Items below the picks keep their order and only shift down: recording each shift would copy every one of
        // them on every request for nothing an explanation needs.
        // Nor is the reason worth formatting when nothing records it.
        if (from === to || (from >= picks && to >= picks) || request.explain === false) return item;
        const reason = to < picks && maxSimilarity[from]! > 0 ? `similarity ${maxSimilarity[from]!.toFixed(2)} to items above` : undefined;
        return withMove(item, request, 'mmr', from, to, reason);
      });
    },
  };
}
