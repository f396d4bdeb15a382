import type { ItemCatalogue } from './catalogue.js';
import { isItemEvent, type RecallEvent, type RecallRequest, type Recaller, type ScoredCandidate } from './types.js';

/**
 * Fresh items for cold start: the newest items by publication time (or first-seen time when the metadata has none),
 * newest first. An item dated after the request time is not published yet and is skipped. The score is the
 * freshness 2^(-age / halfLife).
 */

export interface FreshRecallerOptions {
  readonly catalogue: ItemCatalogue;
  /** Default `fresh`. */
  readonly name?: string;
  /** Items older than this are never returned. Default 30 days. */
  readonly maxAgeMs?: number;
  /** Default 1 day. */
  readonly halfLifeMs?: number;
}

export class FreshRecaller implements Recaller {
  readonly name: string;
  private readonly catalogue: ItemCatalogue;
  private readonly maxAgeMs: number;
  private readonly halfLifeMs: number;
  /** Ascending by publication time. */
  private readonly times: number[] = [];
  private readonly ids: string[] = [];
  private readonly published = new Map<string, number>();

  constructor(options: FreshRecallerOptions) {
    this.name = options.name ?? 'fresh';
    this.catalogue = options.catalogue;
    this.maxAgeMs = options.maxAgeMs ?? 30 * 24 * 3600_000;
    this.halfLifeMs = options.halfLifeMs ?? 24 * 3600_000;
  }

  /** Call after the catalogue has applied the event. */
  observe(event: RecallEvent): void {
    if (!isItemEvent(event)) return;
    const item = this.catalogue.get(event.itemId);
    if (!item) return;
    const previous = this.published.get(item.itemId);
    if (previous === item.publishedAt) return;
    if (previous !== undefined) this.remove(item.itemId, previous);
    this.insert(item.itemId, item.publishedAt);
  }

  recall(request: RecallRequest): ScoredCandidate[] {
    const out: ScoredCandidate[] = [];
    const oldest = request.now - this.maxAgeMs;
    const accept = request.accept;
    // Start below the first item published after `now`.
    for (let i = this.upperBound(request.now) - 1; i >= 0 && out.length < request.count; i--) {
      const time = this.times[i]!;
      if (time < oldest) break;
      const itemId = this.ids[i]!;
      if (accept && !accept(itemId)) continue;
      out.push({ itemId, score: 2 ** (-(request.now - time) / this.halfLifeMs), source: this.name });
    }
    return out;
  }

  /** First index whose time is greater than `time`. */
  private upperBound(time: number): number {
    let lo = 0;
    let hi = this.times.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.times[mid]! <= time) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  private insert(itemId: string, time: number): void {
    const index = this.upperBound(time);
    this.times.splice(index, 0, time);
    this.ids.splice(index, 0, itemId);
    this.published.set(itemId, time);
  }

  private remove(itemId: string, time: number): void {
    for (let i = this.upperBound(time) - 1; i >= 0 && this.times[i] === time; i--) {
      if (this.ids[i] === itemId) {
        this.times.splice(i, 1);
        this.ids.splice(i, 1);
        break;
      }
    }
    this.published.delete(itemId);
  }
}
