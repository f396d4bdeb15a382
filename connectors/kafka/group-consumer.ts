import {
  partitionId,
  RestoredPositions,
  type ConsumerOptions,
  type LogConsumer,
  type RecordBatch,
  type TopicPartition,
} from '../log.js';

/** A fetched batch waiting to be handed to `next()`. */
export interface BufferedBatch {
  readonly batch: RecordBatch;
  /** True while the batch must not be delivered, e.g. a seek has overtaken it. */
  readonly isStale?: () => boolean;
  /** Told whether the batch was delivered (true) or dropped (false), exactly once. */
  readonly settle?: (delivered: boolean) => void;
}

/**
 * What both Kafka consumers share: the assignment, paused partitions, a buffer of fetched batches bounded by the
 * client's fetch loop, and the ordering of rebalance callbacks. While a rebalance runs, `next()` delivers nothing:
 * revoked partitions' buffered batches are dropped before `onRevoke` runs, and batches for new partitions wait until
 * `onAssign` has resolved (it may seek them).
 */
export abstract class GroupConsumer implements LogConsumer {
  readonly group: string;
  protected assigned: TopicPartition[] = [];
  protected readonly paused = new Set<string>();
  protected buffer: BufferedBatch[] = [];
  protected closed = false;
  /** The client failed for good; `next()` rethrows it. */
  protected failure: Error | undefined;
  /** Revokes and assigns run one at a time, in the order the client reports them. */
  private rebalance: Promise<void> = Promise.resolve();
  private rebalancing = 0;
  private wakeups = new Set<() => void>();
  private readonly restored = new RestoredPositions();

  protected constructor(protected readonly options: ConsumerOptions) {
    this.group = options.group;
  }

  /** Waits up to `timeoutMs` for the client to buffer batches (or for a wake-up). */
  protected abstract poll(timeoutMs: number): Promise<void>;
  abstract commit(positions: readonly (TopicPartition & { offset: number })[]): Promise<void>;
  abstract committed(partitions: readonly TopicPartition[]): Promise<(number | undefined)[]>;
  abstract close(): Promise<void>;
  protected abstract seekClient(partition: TopicPartition, offset: number): void;
  protected abstract pauseClient(partitions: readonly TopicPartition[]): void;
  protected abstract resumeClient(partitions: readonly TopicPartition[]): void;

  async next(): Promise<RecordBatch | null | undefined> {
    const deadline = performance.now() + (this.options.pollTimeoutMs ?? 100);
    for (;;) {
      if (this.failure) throw this.failure;
      if (this.closed) return undefined;
      if (this.rebalancing === 0) {
        const batch = this.takeDeliverable();
        if (batch) return batch;
      }
      const remaining = deadline - performance.now();
      if (remaining <= 0) return null;
      await this.poll(remaining);
    }
  }

  seek(partition: TopicPartition, offset: number): void {
    this.restored.note(partition, offset);
    this.seekClient(partition, offset);
  }

  assignment(): readonly TopicPartition[] {
    return this.assigned;
  }

  pause(partitions: readonly TopicPartition[]): void {
    for (const p of partitions) this.paused.add(partitionId(p));
    this.pauseClient(partitions);
    // A batch of a paused partition stays buffered, so the client's fetch loop must not wait for it.
    this.wake();
  }

  resume(partitions: readonly TopicPartition[]): void {
    for (const p of partitions) this.paused.delete(partitionId(p));
    this.resumeClient(partitions);
    this.wake();
  }

  /** Batches that `next()` could deliver now. */
  protected deliverableCount(): number {
    return this.buffer.filter((b) => this.isDeliverable(b)).length;
  }

  protected enqueue(entry: BufferedBatch): void {
    this.buffer.push(entry);
    this.wake();
  }

  /** Drops buffered batches of these partitions, so a client refetches them (or they were revoked). */
  protected dropBuffered(partitions: readonly TopicPartition[]): void {
    const ids = new Set(partitions.map(partitionId));
    const kept: BufferedBatch[] = [];
    for (const entry of this.buffer) {
      if (ids.has(partitionId(entry.batch))) entry.settle?.(false);
      else kept.push(entry);
    }
    this.buffer = kept;
    this.wake();
  }

  /** Resolves at the next enqueue, pause, resume, rebalance step or close, or after `timeoutMs`. */
  protected waitForWake(timeoutMs: number): Promise<void> {
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        this.wakeups.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, timeoutMs);
      this.wakeups.add(wake);
    });
  }

  protected wake(): void {
    for (const wake of [...this.wakeups]) wake();
  }

  /**
   * Eager revoke: buffered batches go, then `onRevoke` is awaited with everything held. `release` lets the client
   * give the partitions up (unassign) once the callback is done.
   */
  protected revokeAll(release?: () => void): Promise<void> {
    return this.step(async () => {
      const revoked = this.assigned;
      this.assigned = [];
      this.dropBuffered(revoked);
      try {
        if (revoked.length > 0) await this.options.onRevoke?.(revoked);
      } finally {
        for (const p of revoked) this.paused.delete(partitionId(p));
        release?.();
      }
    });
  }

  /**
   * `apply` hands the partitions to the client (assign); `onAssign` runs before anything of them is delivered. The
   * positions it seeks to are then committed: a commit the group refused during a rebalance left the group's offsets
   * behind the state's, and nothing else would bring them level while a partition receives no new records.
   */
  protected assignAll(partitions: readonly TopicPartition[], apply?: () => void): Promise<void> {
    return this.step(async () => {
      this.assigned = [...partitions];
      const { onAssign } = this.options;
      let restored: (TopicPartition & { offset: number })[] = [];
      try {
        if (partitions.length > 0 && onAssign) restored = await this.restored.during(() => onAssign(partitions));
      } finally {
        apply?.();
      }
      if (restored.length > 0 && !this.closed) await this.commitRestored(restored);
    });
  }

  /** Commits the positions `onAssign` sought to; a client whose member cannot commit yet waits until it can. */
  protected commitRestored(positions: readonly (TopicPartition & { offset: number })[]): Promise<void> {
    return this.commit(positions);
  }

  protected isAssigned(tp: TopicPartition): boolean {
    return this.assigned.some((a) => a.topic === tp.topic && a.partition === tp.partition);
  }

  /** Settles once every rebalance step so far has run. */
  protected settledRebalance(): Promise<void> {
    return this.rebalance;
  }

  private step(work: () => Promise<void>): Promise<void> {
    this.rebalancing++;
    const run = this.rebalance.then(work).finally(() => {
      this.rebalancing--;
      this.wake();
    });
    this.rebalance = run.catch((error: unknown) => {
      this.failure ??= new Error(`consumer group ${this.group}: a rebalance callback failed`, { cause: error });
    });
    return run;
  }

  private isDeliverable(entry: BufferedBatch): boolean {
    const id = partitionId(entry.batch);
    return !this.paused.has(id) && this.isAssigned(entry.batch);
  }

  private takeDeliverable(): RecordBatch | undefined {
    for (let i = 0; i < this.buffer.length; i++) {
      const entry = this.buffer[i]!;
      const orphaned = !this.isAssigned(entry.batch);
      if (!orphaned && !this.isDeliverable(entry)) continue;
      this.buffer.splice(i, 1);
      i--;
      if (orphaned || entry.isStale?.()) {
        entry.settle?.(false);
        continue;
      }
      entry.settle?.(true);
      this.wake();
      return entry.batch;
    }
    return undefined;
  }
}
