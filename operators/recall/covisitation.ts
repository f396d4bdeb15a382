import { bestFirst } from './best-first.js';
import { UserHistories } from './histories.js';
import { DEFAULT_EVENT_WEIGHTS, eventWeight, isItemEvent, type EventWeights, type RecallEvent, type RecallRequest, type Recaller, type ScoredCandidate } from './types.js';

/**
 * Item-to-item co-visitation learned online: when a user interacts with item b, every item a among their last
 * `historyLength` interactions within `windowMs` gains weight on the pairs (a, b) and (b, a). Pair weights decay with
 * `halfLifeMs` (stored against a moving origin, as in decayed-counts.ts). Each item holds at most 2K neighbours
 * (K = `neighbours`): when full, it keeps its K strongest and takes the new one. Because new weights are scaled up
 * against the origin, stale pairs give way to fresh ones. Recall sums, over the user's recent items (the most
 * recent weighted most), the weights of their neighbours.
 *
 * With `similarity: 'cosine'` a pair's weight is divided by sqrt(n(a) n(b)) + `shrinkage`, where n counts each item's
 * (decayed, weighted) interactions: raw co-visitation counts favour whatever is popular, since a blockbuster
 * co-occurs with everything, while the cosine asks how much more often two items go together than their popularity
 * explains. The shrinkage keeps a pair seen once among rare items from looking perfect. Pruning then keeps the
 * neighbours with the highest cosine rather than the highest counts.
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
  /** `count`: raw decayed pair weights; `cosine`: normalised by both items' interaction counts. Default `count`. */
  readonly similarity?: 'count' | 'cosine';
  /** With `similarity: 'cosine'`, added to the denominator (in interactions). Default 10. */
  readonly shrinkage?: number;
  /**
   * Weight of the pair (b, a) when b follows a, relative to (a, b): 1 counts co-visitation both ways, 0 only the
   * forward direction (what users go on to after a), for sequences where order carries meaning. Default 1.
   */
  readonly backwardWeight?: number;
  /** The k-th previous interaction pairs with weight `distanceDecay^k` (0 is the one just before). Default 1. */
  readonly distanceDecay?: number;
}

const EXPONENT_LIMIT = 512;

/**
 * One item's state. Its number indexes the recaller's typed arrays (interaction counts, and the scratch space that
 * sums scores in a request), so the hot loop of `recall` reads neighbours' numbers from a typed array and never
 * touches their objects, which lie scattered over the heap.
 */
interface ItemNode {
  readonly itemId: string;
  readonly ordinal: number;
  neighbours: NeighbourList | undefined;
}

export class CoVisitationRecaller implements Recaller {
  readonly name: string;
  private readonly halfLifeMs: number;
  private readonly weights: EventWeights;
  private readonly windowMs: number;
  private readonly capacity: number;
  private readonly maxRecent: number;
  private readonly recencyDecay: number;
  private readonly histories: UserHistories;
  private readonly nodes = new Map<string, ItemNode>();
  /** Item ids by ordinal. */
  private readonly ids: string[] = [];
  /** Decayed, weighted interactions by ordinal, stored against the origin like pair weights. */
  private counts = new Float64Array(1024);
  /** The request that last touched `scores[ordinal]`. */
  private marks = new Int32Array(1024);
  private scores = new Float64Array(1024);
  /** The scores of a request's touched items, in touched order: kept, as a fresh typed array costs a backing store. */
  private touchedScores = new Float64Array(1024);
  /** A request's touched ordinals, in touch order; kept between requests like the scores. */
  private touched = new Int32Array(1024);
  private readonly cosine: boolean;
  private readonly shrinkage: number;
  private readonly backwardWeight: number;
  private readonly distanceDecay: number;
  private origin: number | undefined;
  private requests = 0;
  private withNeighbours = 0;

  constructor(options: CoVisitationRecallerOptions = {}) {
    this.name = options.name ?? 'covisit';
    this.halfLifeMs = options.halfLifeMs ?? 7 * 24 * 3600_000;
    this.weights = options.weights ?? DEFAULT_EVENT_WEIGHTS;
    this.windowMs = options.windowMs ?? 3600_000;
    this.capacity = options.neighbours ?? 50;
    this.maxRecent = options.maxRecent ?? 10;
    this.recencyDecay = options.recencyDecay ?? 0.8;
    this.histories = new UserHistories({ length: options.historyLength ?? 10, maxUsers: options.maxUsers ?? 100_000 });
    const similarity = options.similarity ?? 'count';
    if (similarity !== 'count' && similarity !== 'cosine') throw new RangeError(`similarity must be "count" or "cosine", got "${String(similarity)}"`);
    this.cosine = similarity === 'cosine';
    this.shrinkage = options.shrinkage ?? 10;
    if (!(this.shrinkage >= 0)) throw new RangeError(`shrinkage must be non-negative, got ${this.shrinkage}`);
    this.backwardWeight = options.backwardWeight ?? 1;
    this.distanceDecay = options.distanceDecay ?? 1;
    if (!(this.backwardWeight >= 0 && this.backwardWeight <= 1)) throw new RangeError(`backwardWeight must be in [0, 1], got ${this.backwardWeight}`);
    if (!(this.distanceDecay > 0 && this.distanceDecay <= 1)) throw new RangeError(`distanceDecay must be in (0, 1], got ${this.distanceDecay}`);
  }

  /** Items with neighbour lists. */
  get size(): number {
    return this.withNeighbours;
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
    const node = this.node(event.itemId);
    this.counts[node.ordinal]! += increment;
    const paired = new Set<string>();
    for (let i = previous.length - 1; i >= 0; i--) {
      const entry = previous[i]!;
      if (entry.itemId === event.itemId || paired.has(entry.itemId)) continue;
      if (Math.abs(event.ts - entry.ts) > this.windowMs) continue;
      const closeness = this.distanceDecay === 1 ? increment : increment * this.distanceDecay ** paired.size;
      paired.add(entry.itemId);
      const other = this.node(entry.itemId);
      this.addPair(other, node, closeness);
      if (this.backwardWeight > 0) this.addPair(node, other, closeness * this.backwardWeight);
    }
  }

  /** An item's strongest neighbours with their decayed weights (or cosines) at `now`. */
  neighbours(itemId: string, count: number, now: number): ScoredCandidate[] {
    const from = this.nodes.get(itemId);
    const list = from?.neighbours;
    if (!list) return [];
    const scale = this.scaleAt(now);
    const shrinkage = scale > 0 ? this.shrinkage / scale : 0;
    const counts = this.counts;
    const out: ScoredCandidate[] = [];
    list.forEach((stored, neighbour) => {
      const score = this.cosine ? stored / (Math.sqrt(counts[from.ordinal]! * counts[neighbour.ordinal]!) + shrinkage) : stored * scale;
      out.push({ itemId: neighbour.itemId, score, source: this.name });
    });
    return out.sort((a, b) => b.score - a.score).slice(0, count);
  }

  recall(request: RecallRequest): ScoredCandidate[] {
    const recent = request.recentItems;
    const expanded = Math.min(recent.length, this.maxRecent);
    if (expanded === 0 || request.count <= 0) return [];
    // Marks are 32-bit: before the request counter outgrows them, every mark is cleared and counting starts again.
    if (this.requests === 0x7fffffff) {
      this.marks.fill(0);
      this.requests = 0;
    }
    const mark = ++this.requests;
    const scale = this.scaleAt(request.now);
    // Stored weights and counts share the origin's scale, so the cosine needs only the shrinkage converted to it.
    const shrinkage = scale > 0 ? this.shrinkage / scale : 0;
    const { counts, marks, scores } = this;
    let touched = this.touched;
    let touchedCount = 0;
    let recency = 1;
    for (let k = 0; k < expanded; k++, recency *= this.recencyDecay) {
      const from = this.nodes.get(recent[k]!);
      const list = from?.neighbours;
      if (!list) continue;
      const weight = recency;
      const ownRoot = Math.sqrt(counts[from.ordinal]!);
      const { ordinals, weights } = list;
      for (let i = 0, size = list.size; i < size; i++) {
        const neighbour = ordinals[i]!;
        const stored = weights[i]!;
        if (marks[neighbour] !== mark) {
          marks[neighbour] = mark;
          scores[neighbour] = 0;
          if (touchedCount === touched.length) {
            const grown = new Int32Array(2 * touchedCount);
            grown.set(touched);
            this.touched = touched = grown;
          }
          touched[touchedCount++] = neighbour;
        }
        scores[neighbour]! += this.cosine ? (weight * stored) / (ownRoot * Math.sqrt(counts[neighbour]!) + shrinkage) : weight * stored * scale;
      }
    }
    const own = new Set(recent);
    const accept = request.accept;
    const ids = this.ids;
    // The touched items' scores side by side, so ranking them reads neighbouring numbers, not scattered ones.
    const n = touchedCount;
    if (this.touchedScores.length < n) this.touchedScores = new Float64Array(2 * n);
    const touchedScores = this.touchedScores;
    for (let i = 0; i < n; i++) touchedScores[i] = scores[touched[i]!]!;
    const take = (ranked: Int32Array): ScoredCandidate[] => {
      const out: ScoredCandidate[] = [];
      for (let i = 0; i < ranked.length && out.length < request.count; i++) {
        const itemId = ids[touched[ranked[i]!]!]!;
        if (own.has(itemId) || (accept && !accept(itemId))) continue;
        out.push({ itemId, score: touchedScores[ranked[i]!]!, source: this.name });
      }
      return out;
    };
    // Hundreds of items are touched and a few dozen are wanted: rank only the best (room for the user's own and
    // rejected items), and everything only when those run out.
    const best = bestFirst(touchedScores, n, 2 * request.count + expanded);
    const out = take(best);
    return out.length < request.count && best.length < n ? take(bestFirst(touchedScores, n, n)) : out;
  }

  private node(itemId: string): ItemNode {
    let node = this.nodes.get(itemId);
    if (!node) {
      const ordinal = this.ids.length;
      if (ordinal >= this.counts.length) this.grow(2 * this.counts.length);
      node = { itemId, ordinal, neighbours: undefined };
      this.ids.push(itemId);
      this.nodes.set(itemId, node);
    }
    return node;
  }

  private grow(capacity: number): void {
    const counts = new Float64Array(capacity);
    counts.set(this.counts);
    this.counts = counts;
    const marks = new Int32Array(capacity);
    marks.set(this.marks);
    this.marks = marks;
    this.scores = new Float64Array(capacity);
  }

  private scaleAt(now: number): number {
    return this.origin === undefined ? 0 : 2 ** ((this.origin - now) / this.halfLifeMs);
  }

  private addPair(from: ItemNode, to: ItemNode, increment: number): void {
    if (!from.neighbours) {
      // Pruning by cosine: the source item's own count is the same for all its neighbours.
      from.neighbours = new NeighbourList(this.capacity, this.cosine ? (stored, neighbour) => stored / Math.sqrt(this.counts[neighbour.ordinal] || 1) : undefined);
      this.withNeighbours++;
    }
    from.neighbours.add(to, increment);
  }

  private rebase(ts: number): void {
    const factor = 2 ** ((this.origin! - ts) / this.halfLifeMs);
    for (let ordinal = 0; ordinal < this.ids.length; ordinal++) this.counts[ordinal]! *= factor;
    for (const node of this.nodes.values()) node.neighbours?.scale(factor);
    this.origin = ts;
  }
}

/**
 * One item's neighbours and weights. Weights live in a Float64Array rather than as Map values, which V8 would box
 * into a new heap number on every update; the map holds small-integer slots. Holds up to 2K; when full, keeps its K
 * strongest (one sort per K insertions keeps each insertion cheap).
 */
class NeighbourList {
  private readonly slots = new Map<ItemNode, number>();
  /**
   * The neighbours, and at the same index in `ordinals` their numbers and in `weights` their weights; the typed
   * arrays are read in place by the hot loop of `recall`.
   */
  nodes: ItemNode[] = [];
  readonly ordinals: Int32Array;
  readonly weights: Float64Array;

  /** `strength` orders neighbours for pruning; default their weights. */
  constructor(
    private readonly capacity: number,
    private readonly strength?: (weight: number, neighbour: ItemNode) => number,
  ) {
    this.weights = new Float64Array(2 * capacity);
    this.ordinals = new Int32Array(2 * capacity);
  }

  get size(): number {
    return this.nodes.length;
  }

  add(neighbour: ItemNode, increment: number): void {
    const slot = this.slots.get(neighbour);
    if (slot !== undefined) {
      this.weights[slot]! += increment;
      return;
    }
    if (this.nodes.length >= 2 * this.capacity) this.prune();
    this.slots.set(neighbour, this.nodes.length);
    this.weights[this.nodes.length] = increment;
    this.ordinals[this.nodes.length] = neighbour.ordinal;
    this.nodes.push(neighbour);
  }

  forEach(visit: (weight: number, neighbour: ItemNode) => void): void {
    for (let i = 0; i < this.nodes.length; i++) visit(this.weights[i]!, this.nodes[i]!);
  }

  scale(factor: number): void {
    for (let i = 0; i < this.nodes.length; i++) this.weights[i]! *= factor;
  }

  private prune(): void {
    const weights = this.weights;
    const strength = this.strength;
    const keys = strength ? this.nodes.map((node, i) => strength(weights[i]!, node)) : weights;
    const order = Array.from(this.nodes.keys()).sort((a, b) => keys[b]! - keys[a]!).slice(0, this.capacity);
    const kept = order.map((i) => weights[i]!);
    const nodes = order.map((i) => this.nodes[i]!);
    this.slots.clear();
    nodes.forEach((node, i) => {
      this.slots.set(node, i);
      weights[i] = kept[i]!;
      this.ordinals[i] = node.ordinal;
    });
    this.nodes = nodes;
  }
}
