import { bestFirst } from './best-first.js';
import type { ItemCatalogue } from './catalogue.js';
import { candidateFilter } from './filter.js';
import { RequestIndex } from './request-index.js';
import { isItemEvent, type RecallEvent, type RecallRequest, type Recaller, type ScoredCandidate } from './types.js';

/**
 * Merges the candidates of several sources under per-source quotas:
 * 1. each source gets a share of `count` proportional to its quota (largest remainders, so shares add up to count);
 * 2. sources take turns, best first, each taking its next item not yet taken until its share is filled;
 * 3. when some sources run short, the rest is filled from all leftovers by normalised score;
 * 4. an item found by several sources appears once, under the source where it scored best (scores normalised by each
 *    source's top score, so they compare), and remembers every source that found it.
 * Every candidate passes the filter (consumed, unavailable, request filters), whatever a source returned.
 */

export interface SourceHit {
  readonly source: string;
  /** The source's own score. */
  readonly score: number;
  /** 0-based position in the source's list. */
  readonly rank: number;
}

export interface MergedCandidate extends ScoredCandidate {
  /** Normalised score (the source's score over its top score), from the source that ranked the item best. */
  readonly score: number;
  /** Every source that found the item, best first. */
  readonly sources: readonly SourceHit[];
}

export interface SourceList {
  readonly source: string;
  readonly quota: number;
  readonly candidates: readonly ScoredCandidate[];
}

/** Shared by every merge: a merge runs start to end without yielding, so two never use it at once. */
const positions = new RequestIndex();

export function mergeCandidates(lists: readonly SourceList[], count: number, accept?: (itemId: string) => boolean): MergedCandidate[] {
  const active = lists.filter((list) => list.quota > 0 && list.candidates.length > 0);
  if (count <= 0 || active.length === 0) return [];
  const shares = apportion(active.map((list) => list.quota), count);
  const selected: string[] = [];
  // Each taken item's index in `selected`: the set of taken items, and later where each source's hit belongs.
  const position = positions;
  position.begin();
  const take = (itemId: string) => {
    position.set(itemId, selected.length);
    selected.push(itemId);
  };
  const usable = (itemId: string) => !position.has(itemId) && (!accept || accept(itemId));

  const cursors = active.map(() => 0);
  const filled = active.map(() => 0);
  for (let progress = true; progress && selected.length < count; ) {
    progress = false;
    for (let s = 0; s < active.length && selected.length < count; s++) {
      if (filled[s]! >= shares[s]!) continue;
      const candidates = active[s]!.candidates;
      while (cursors[s]! < candidates.length && !usable(candidates[cursors[s]!]!.itemId)) cursors[s]!++;
      if (cursors[s]! >= candidates.length) continue;
      take(candidates[cursors[s]!++]!.itemId);
      filled[s]!++;
      progress = true;
    }
  }

  if (selected.length < count) {
    // Every candidate not yet taken, by score relative to its source's top score, best first (ties in list order).
    let left = 0;
    for (const list of active) {
      const top = list.candidates[0]!.score;
      for (const candidate of list.candidates) {
        if (position.has(candidate.itemId)) continue;
        if (left === leftoverScores.length) leftoverScores = grown(leftoverScores);
        leftoverIds[left] = candidate.itemId;
        leftoverScores[left++] = top > 0 ? candidate.score / top : 0;
      }
    }
    const order = bestFirst(leftoverScores, left, left);
    for (let k = 0; k < order.length && selected.length < count; k++) {
      const itemId = leftoverIds[order[k]!]!;
      if (usable(itemId)) take(itemId);
    }
    leftoverIds.length = 0;
  }

  // One pass over every hit notes each selected item's best source and score. The full list of an item's hits is
  // built only when something reads it (an explanation, a recall-feature ranker): sources return about twice what is
  // merged, and this runs on every request.
  const n = selected.length;
  if (bestScore.length < n) {
    bestScore = new Float64Array(2 * n);
    bestList = new Int32Array(2 * n);
    lastList = new Int32Array(2 * n);
  }
  bestList.fill(-1, 0, n);
  lastList.fill(-1, 0, n);
  for (let l = 0; l < active.length; l++) {
    const candidates = active[l]!.candidates;
    const top = candidates[0]!.score;
    for (let rank = 0; rank < candidates.length; rank++) {
      const i = position.get(candidates[rank]!.itemId);
      // A list that repeats an item keeps its first hit.
      if (i === undefined || lastList[i] === l) continue;
      lastList[i] = l;
      const relative = top > 0 ? candidates[rank]!.score / top : 0;
      // The first hit counts whatever its score (a source may score below zero); ties keep the earlier list, as in an
      // item's hits.
      if (bestList[i] === -1 || relative > bestScore[i]!) {
        bestScore[i] = relative;
        bestList[i] = l;
      }
    }
  }
  const table = new HitTable(active, selected);
  const merged: MergedCandidate[] = new Array(n);
  for (let i = 0; i < n; i++) merged[i] = new Merged(selected[i]!, bestScore[i]!, active[bestList[i]!]!.source, table, i);
  return merged;
}

/*
 * Scratch space kept between merges, which run start to end without yielding: typed arrays made per merge would each
 * cost a backing store of their own.
 */
let bestScore = new Float64Array(256);
let bestList = new Int32Array(256);
let lastList = new Int32Array(256);
let leftoverScores: Float64Array = new Float64Array(512);
const leftoverIds: string[] = [];

function grown(values: Float64Array): Float64Array {
  const larger = new Float64Array(2 * values.length);
  larger.set(values);
  return larger;
}

/** The hits of one merge's selected items, found in its lists the first time any item's hits are read. */
class HitTable {
  private hits: { hit: SourceHit; relative: number }[][] | undefined;

  constructor(
    private readonly lists: readonly SourceList[],
    private readonly selected: readonly string[],
  ) {}

  /** Item `i`'s hits by score relative to their source's top score, best first, ties in list order. */
  hitsOf(i: number): SourceHit[] {
    this.hits ??= this.gather();
    return this.hits[i]!.sort((a, b) => b.relative - a.relative).map(({ hit }) => hit);
  }

  private gather(): { hit: SourceHit; relative: number }[][] {
    const indexOf = new Map(this.selected.map((itemId, i) => [itemId, i]));
    const hits = this.selected.map(() => [] as { hit: SourceHit; relative: number }[]);
    for (const list of this.lists) {
      const top = list.candidates[0]!.score;
      const seen = new Set<string>();
      list.candidates.forEach(({ itemId, score }, rank) => {
        const i = indexOf.get(itemId);
        // A list that repeats an item keeps its first hit.
        if (i === undefined || seen.has(itemId)) return;
        seen.add(itemId);
        hits[i]!.push({ hit: { source: list.source, score, rank }, relative: top > 0 ? score / top : 0 });
      });
    }
    return hits;
  }
}

class Merged implements MergedCandidate {
  private hits: readonly SourceHit[] | undefined;

  constructor(
    readonly itemId: string,
    readonly score: number,
    readonly source: string,
    private readonly table: HitTable,
    private readonly index: number,
  ) {}

  get sources(): readonly SourceHit[] {
    this.hits ??= this.table.hitsOf(this.index);
    return this.hits;
  }
}

/** Splits `total` in proportion to `weights` by largest remainders. */
export function apportion(weights: readonly number[], total: number): number[] {
  const sum = weights.reduce((a, b) => a + b, 0);
  if (sum <= 0) return weights.map(() => 0);
  const exact = weights.map((weight) => (weight / sum) * total);
  const shares = exact.map(Math.floor);
  let left = total - shares.reduce((a, b) => a + b, 0);
  const order = exact.map((value, i) => ({ i, remainder: value - Math.floor(value) })).sort((a, b) => b.remainder - a.remainder || a.i - b.i);
  for (let k = 0; left > 0; k = (k + 1) % order.length, left--) shares[order[k]!.i]!++;
  return shares;
}

export interface RecallSourceConfig {
  readonly recaller: Recaller;
  /** Relative share of the merged list. */
  readonly quota: number;
}

export interface MultiRecallerOptions {
  readonly catalogue: ItemCatalogue;
  readonly sources: readonly RecallSourceConfig[];
  /** Apply item events to the catalogue before the sources see them. Default true; false when another part owns it. */
  readonly updatesCatalogue?: boolean;
  /**
   * Each source is first asked for its share times this (plus a few), since duplicates across sources do not count
   * towards a share; a source is asked again for the full count only when the merged list comes out short. Default 2.
   */
  readonly overfetch?: number;
}

const MIN_EXTRA = 4;

/** All recall sources behind the Recaller seam: one `observe` feeds them all, one `recall` merges them. */
export class MultiRecaller implements Recaller {
  readonly name = 'merged';
  readonly catalogue: ItemCatalogue;
  private readonly sources: readonly RecallSourceConfig[];
  private readonly updatesCatalogue: boolean;
  private readonly overfetch: number;

  constructor(options: MultiRecallerOptions) {
    const names = new Set<string>();
    for (const { recaller, quota } of options.sources) {
      if (names.has(recaller.name)) throw new Error(`two recall sources are named "${recaller.name}"`);
      if (!(quota >= 0) || !Number.isFinite(quota)) throw new RangeError(`quota of "${recaller.name}" must be a finite number >= 0, got ${quota}`);
      names.add(recaller.name);
    }
    this.catalogue = options.catalogue;
    this.sources = options.sources;
    this.updatesCatalogue = options.updatesCatalogue ?? true;
    this.overfetch = options.overfetch ?? 2;
  }

  observe(event: RecallEvent): void {
    if (this.updatesCatalogue && isItemEvent(event)) this.catalogue.observe(event);
    for (const { recaller } of this.sources) recaller.observe(event);
  }

  recall(request: RecallRequest): MergedCandidate[] {
    const accept = candidateFilter(this.catalogue, request);
    const extra = request.accept;
    const sourceRequest: RecallRequest = { ...request, accept: extra ? (id) => accept(id) && extra(id) : accept };
    const sources = this.sources.filter(({ quota }) => quota > 0);
    const shares = apportion(sources.map(({ quota }) => quota), request.count);
    const asked = shares.map((share) => Math.min(request.count, Math.ceil(share * this.overfetch) + MIN_EXTRA));
    const lists = sources.map(({ recaller, quota }, s) => ({
      source: recaller.name,
      quota,
      candidates: recaller.recall({ ...sourceRequest, count: asked[s]! }),
    }));
    let merged = mergeCandidates(lists, request.count, sourceRequest.accept);
    if (merged.length >= request.count) return merged;
    // Some sources ran short: ask the ones that may have more for a full list, and merge again.
    let asking = false;
    lists.forEach((list, s) => {
      if (list.candidates.length < asked[s]! || asked[s]! >= request.count) return;
      lists[s] = { ...list, candidates: sources[s]!.recaller.recall(sourceRequest) };
      asking = true;
    });
    if (asking) merged = mergeCandidates(lists, request.count, sourceRequest.accept);
    return merged;
  }
}
