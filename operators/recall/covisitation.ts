import { UserHistories } from './histories.js';
import { DEFAULT_EVENT_WEIGHTS, eventWeight, isItemEvent, type EventWeights, type RecallEvent, type RecallRequest, type Recaller, type ScoredCandidate } from './types.js';

/**
 * Item-to-item co-visitation learned online: when a user interacts with item b, every item a among their last
 * `historyLength` interactions within `windowMs` gains weight on the pairs (a, b) and (b, a). Pair weights decay with
 * `halfLifeMs` (stored against a moving origin, as in decayed-counts.ts). Each item holds at most 2K neighbours
 * (K = `neighbours`): when full, it keeps its K strongest and takes the new one. Because new weights are scaled up
 * against the origin, stale pairs give way to fresh ones. Recall sums, over the user's recent items (the most
 * recent weighted most), the weights of their neighbours.
 */

export interface CoVisitationRecallerOptions {
  /** Default `covisit`. */
  readonly name?: string;
  /** Default 7 days. */
  readonly halfLifeMs?: number;
  /** Default `DEFAULT_EVENT_WEIGHTS`. */
  readonly weights?: EventWeights;
  /** Earlier interactions paired with each new one. Default 10. */
  readonly historyLength?: number;
  /** Only interactions this close in event time are paired. Default 1 hour. */
  readonly windowMs?: number;
  /** K: neighbours that survive each pruning; an item holds at most 2K. Default 50. */
  readonly neighbours?: number;
  /** Users whose histories are kept. Default 100,000. */
  readonly maxUsers?: number;
  /** Recent items of a request that are expanded. Default 10. */
  readonly maxRecent?: number;
  /** The k-th most recent item's neighbours count `recencyDecay^k`. Default 0.8. */
  readonly recencyDecay?: number;
}

const EXPONENT_LIMIT = 512;

export class CoVisitationRecaller implements Recaller {
  readonly name: string;
  private readonly halfLifeMs: number;
  private readonly weights: EventWeights;
  private readonly windowMs: number;
  private readonly capacity: number;
  private readonly maxRecent: number;
  private readonly recencyDecay: number;
  private readonly histories: UserHistories;
  private readonly pairs = new Map<string, NeighbourList>();
  private origin: number | undefined;

  constructor(options: CoVisitationRecallerOptions = {}) {
    this.name = options.name ?? 'covisit';
    this.halfLifeMs = options.halfLifeMs ?? 7 * 24 * 3600_000;
    this.weights = options.weights ?? DEFAULT_EVENT_WEIGHTS;
    this.windowMs = options.windowMs ?? 3600_000;
    this.capacity = options.neighbours ?? 50;
    this.maxRecent = options.maxRecent ?? 10;
    this.recencyDecay = options.recencyDecay ?? 0.8;
    this.histories = new UserHistories({ length: options.historyLength ?? 10, maxUsers: options.maxUsers ?? 100_000 });
  }

  /** Items with neighbour lists. */
  get size(): number {
    return this.pairs.size;
  }

  observe(event: RecallEvent): void {
    if (isItemEvent(event)) return;
    const weight = eventWeight(event, this.weights);
    if (weight === 0) return;
    const previous = this.histories.push(event.userId, { itemId: event.itemId, ts: event.ts, weight });
    if (this.origin === undefined) this.origin = event.ts;
    let exponent = (event.ts - this.origin) / this.halfLifeMs;
    if (exponent > EXPONENT_LIMIT) {
      this.rebase(event.ts);
      exponent = 0;
    }
    const increment = weight * 2 ** exponent;
    const paired = new Set<string>();
    for (let i = previous.length - 1; i >= 0; i--) {
      const entry = previous[i]!;
      if (entry.itemId === event.itemId || paired.has(entry.itemId)) continue;
      if (Math.abs(event.ts - entry.ts) > this.windowMs) continue;
      paired.add(entry.itemId);
      this.addPair(entry.itemId, event.itemId, increment);
      this.addPair(event.itemId, entry.itemId, increment);
    }
  }

  /** An item's strongest neighbours with their decayed weights at `now`. */
  neighbours(itemId: string, count: number, now: number): ScoredCandidate[] {
    const list = this.pairs.get(itemId);
    if (!list) return [];
    const scale = this.scaleAt(now);
    const out: ScoredCandidate[] = [];
    list.forEach((stored, neighbour) => out.push({ itemId: neighbour, score: stored * scale, source: this.name }));
    return out.sort((a, b) => b.score - a.score).slice(0, count);
  }

  recall(request: RecallRequest): ScoredCandidate[] {
    const recent = request.recentItems;
    const expanded = Math.min(recent.length, this.maxRecent);
    if (expanded === 0 || request.count <= 0) return [];
    const scores = new Map<string, number>();
    let recency = 1;
    for (let k = 0; k < expanded; k++, recency *= this.recencyDecay) {
      const weight = recency;
      // forEach, unlike for-of over entries, allocates nothing per neighbour.
      this.pairs.get(recent[k]!)?.forEach((stored, neighbour) => {
        scores.set(neighbour, (scores.get(neighbour) ?? 0) + weight * stored);
      });
    }
    const own = new Set(recent);
    const ids: string[] = [];
    const values: number[] = [];
    scores.forEach((value, itemId) => {
      if (own.has(itemId)) return;
      ids.push(itemId);
      values.push(value);
    });
    const order = Array.from(ids.keys()).sort((a, b) => values[b]! - values[a]!);
    const scale = this.scaleAt(request.now);
    const accept = request.accept;
    const out: ScoredCandidate[] = [];
    for (let i = 0; i < order.length && out.length < request.count; i++) {
      const itemId = ids[order[i]!]!;
      if (accept && !accept(itemId)) continue;
      out.push({ itemId, score: values[order[i]!]! * scale, source: this.name });
    }
    return out;
  }

  private scaleAt(now: number): number {
    return this.origin === undefined ? 0 : 2 ** ((this.origin - now) / this.halfLifeMs);
  }

  private addPair(from: string, to: string, increment: number): void {
    let list = this.pairs.get(from);
    if (!list) {
      list = new NeighbourList(this.capacity);
      this.pairs.set(from, list);
    }
    list.add(to, increment);
  }

  private rebase(ts: number): void {
    const factor = 2 ** ((this.origin! - ts) / this.halfLifeMs);
    for (const list of this.pairs.values()) list.scale(factor);
    this.origin = ts;
  }
}

/**
 * One item's neighbours and weights. Weights live in a Float64Array rather than as Map values, which V8 would box
 * into a new heap number on every update; the map holds small-integer slots. Holds up to 2K; when full, keeps its K
 * strongest (one sort per K insertions keeps each insertion cheap).
 */
class NeighbourList {
  private readonly slots = new Map<string, number>();
  private ids: string[] = [];
  private readonly weights: Float64Array;

  constructor(private readonly capacity: number) {
    this.weights = new Float64Array(2 * capacity);
  }

  add(neighbour: string, increment: number): void {
    const slot = this.slots.get(neighbour);
    if (slot !== undefined) {
      this.weights[slot]! += increment;
      return;
    }
    if (this.ids.length >= 2 * this.capacity) this.prune();
    this.slots.set(neighbour, this.ids.length);
    this.weights[this.ids.length] = increment;
    this.ids.push(neighbour);
  }

  forEach(visit: (weight: number, neighbour: string) => void): void {
    for (let i = 0; i < this.ids.length; i++) visit(this.weights[i]!, this.ids[i]!);
  }

  scale(factor: number): void {
    for (let i = 0; i < this.ids.length; i++) this.weights[i]! *= factor;
  }

  private prune(): void {
    const weights = this.weights;
    const order = Array.from(this.ids.keys()).sort((a, b) => weights[b]! - weights[a]!).slice(0, this.capacity);
    const kept = order.map((i) => weights[i]!);
    const ids = order.map((i) => this.ids[i]!);
    this.slots.clear();
    ids.forEach((id, i) => {
      this.slots.set(id, i);
      weights[i] = kept[i]!;
    });
    this.ids = ids;
  }
}
