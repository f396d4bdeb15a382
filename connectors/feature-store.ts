import type { SourcePosition } from '../operators/batch.js';
import type { FeatureCache, LookupContext } from '../operators/features/cache.js';
import type { FeatureRows } from '../operators/features/rows.js';
import type { InputEvent } from '../schema/events.js';

/**
 * The FeatureStore seam: feature state keyed by user and by item, updated from events, read as ready-to-score rows,
 * and made durable together with the source positions it covers.
 *
 * A store tracks the positions of what it has applied (`update` receives them with each batch), so a checkpoint
 * always writes state and positions that match, whatever the runner has in flight; `restore` hands those positions
 * back and the consumer seeks there, so no event is counted twice or lost.
 */
export interface FeatureStore {
  readonly kind: 'memory' | 'redis';
  /** Feature names in row order: the contract with rankers. */
  readonly names: readonly string[];
  /** The in-memory state every lookup is served from. */
  readonly cache: FeatureCache;
  /** Loads durable state (if any) and returns the positions it covers; empty when starting fresh. */
  restore(): Promise<readonly SourcePosition[]>;
  /** Applies events in order; `positions` are where the source stands once they are applied. */
  update(events: readonly InputEvent[], positions?: readonly SourcePosition[]): Promise<void>;
  /**
   * Rows for one user and its candidates as of `context.ts`, loading what the cache misses; written into `into` when
   * it is large enough, so a caller that serves many requests can reuse buffers.
   */
  lookup(userId: string, candidates: readonly string[], context: LookupContext, into?: FeatureRows): Promise<FeatureRows>;
  /** Makes everything applied so far durable, with the positions it covers, atomically. */
  checkpoint(): Promise<void>;
  /** Positions covered by the state in memory (what the next checkpoint will write). */
  positions(): readonly SourcePosition[];
  health(): FeatureStoreHealth;
  close(): Promise<void>;
}

export interface FeatureStoreHealth {
  /** True while the backing store cannot be written or read: serving goes on from the cache. */
  readonly degraded: boolean;
  readonly reason?: string;
  /** Changed records not yet durable. */
  readonly pendingWrites: number;
  /** Event time (ms) of the newest update applied. */
  readonly newestEventTs: number;
}

/** Keeps the newest position per topic partition. */
export class PositionMap {
  private readonly byPartition = new Map<string, SourcePosition>();

  advance(positions: readonly SourcePosition[]): void {
    for (const p of positions) {
      const id = `${p.topic}/${p.partition}`;
      const held = this.byPartition.get(id);
      if (!held || held.offset < p.offset) this.byPartition.set(id, p);
    }
  }

  list(): SourcePosition[] {
    return [...this.byPartition.values()].sort((a, b) => (a.topic === b.topic ? a.partition - b.partition : a.topic < b.topic ? -1 : 1));
  }

  clear(): void {
    this.byPartition.clear();
  }
}
