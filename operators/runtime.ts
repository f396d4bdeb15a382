import type { Subscription } from 'rxjs';
import type { Log, LogConsumer, LogRecord, TopicPartition } from '../connectors/log.js';
import type { SourcePosition } from './batch.js';
import type { Pipeline } from './pipeline.js';
import { fromLog, OffsetTracker } from './source.js';

export interface RunOptions {
  readonly log: Log;
  readonly group: string;
  readonly topics: readonly string[];
  /** Default 2: one batch is processed while the next is fetched. */
  readonly maxInFlight?: number;
  readonly maxBatchRecords?: number;
  /** Passed to the consumer: see `ConsumerOptions.fetchMinRecords`. */
  readonly fetchMinRecords?: number;
  readonly fetchMaxWaitMs?: number;
  readonly fromBeginning?: boolean;
  /** Least time between two commits; 0 commits after every batch. Default 0. */
  readonly commitIntervalMs?: number;
  /**
   * Makes durable everything the finished batches changed (keyed state, side outputs) together with the positions
   * they reach. Offsets are committed only after it resolves.
   */
  readonly checkpoint?: (positions: readonly SourcePosition[]) => Promise<void>;
  /** Restores state for newly assigned partitions and may `seek` the consumer to the offsets stored with it. */
  readonly onAssign?: (partitions: readonly TopicPartition[], consumer: LogConsumer) => Promise<void> | void;
  /** Runs after in-flight batches have finished and been committed, before the partitions go. */
  readonly onRevoke?: (partitions: readonly TopicPartition[]) => Promise<void> | void;
}

export interface RunnerStats {
  batches: number;
  records: number;
  commits: number;
  /** Records behind the end of each partition at the last fetch. */
  readonly lag: Map<string, number>;
}

/**
 * Runs a pipeline over a consumer group: fetches with bounded in-flight batches, marks each batch done when it leaves
 * the graph, checkpoints and then commits the finished prefix, drains before a rebalance takes partitions away, and
 * on `stop()` finishes what is in flight, commits and leaves the group.
 */
export class PipelineRunner {
  readonly stats: RunnerStats = { batches: 0, records: 0, commits: 0, lag: new Map() };
  readonly done: Promise<void>;
  private readonly tracker = new OffsetTracker();
  private readonly abort = new AbortController();
  private consumer!: LogConsumer;
  private subscription?: Subscription;
  private committing: Promise<void> = Promise.resolve();
  private lastCommitAt = 0;
  /** Once processing fails, nothing more is committed: the failed batch and those after it are read again. */
  private failure = false;
  private resolveDone!: () => void;
  private rejectDone!: (error: unknown) => void;

  constructor(
    private readonly pipeline: Pipeline<LogRecord, unknown>,
    private readonly options: RunOptions,
  ) {
    this.done = new Promise((resolve, reject) => {
      this.resolveDone = resolve;
      this.rejectDone = reject;
    });
    this.done.catch(() => undefined);
  }

  /** True once processing has failed; the runner then commits nothing more and stops. */
  get failed(): boolean {
    return this.failure;
  }

  start(): this {
    const { options } = this;
    this.consumer = options.log.consumer({
      group: options.group,
      topics: options.topics,
      ...(options.fromBeginning !== undefined ? { fromBeginning: options.fromBeginning } : {}),
      ...(options.maxBatchRecords !== undefined ? { maxBatchRecords: options.maxBatchRecords } : {}),
      ...(options.fetchMinRecords !== undefined ? { fetchMinRecords: options.fetchMinRecords } : {}),
      ...(options.fetchMaxWaitMs !== undefined ? { fetchMaxWaitMs: options.fetchMaxWaitMs } : {}),
      onAssign: (partitions) => options.onAssign?.(partitions, this.consumer),
      onRevoke: async (partitions) => {
        if (!this.failure) await this.drain();
        await options.onRevoke?.(partitions);
      },
    });
    const source$ = fromLog(this.consumer, {
      maxInFlight: options.maxInFlight ?? 2,
      signal: this.abort.signal,
      onEmit: (ticket, batch) => {
        this.tracker.track(ticket);
        this.stats.records += batch.records.length;
        const last = batch.records[batch.records.length - 1]!;
        this.stats.lag.set(`${batch.topic}/${batch.partition}`, batch.highWatermark - last.offset - 1);
      },
    });
    this.subscription = this.pipeline.apply(source$).subscribe({
      next: (batch) => {
        this.stats.batches++;
        batch.ticket.done();
        this.scheduleCommit(false);
      },
      error: (error: unknown) => {
        this.failure = true;
        this.abort.abort();
        this.consumer.close().finally(() => this.rejectDone(error));
      },
      complete: () => {
        this.drain()
          .then(() => this.consumer.close())
          .then(this.resolveDone, this.rejectDone);
      },
    });
    return this;
  }

  /** Stops fetching, lets in-flight batches finish, commits them and leaves the group. */
  async stop(): Promise<void> {
    this.abort.abort();
    await this.done;
  }

  /** Waits for every emitted batch to finish, then checkpoints and commits them. */
  async drain(): Promise<void> {
    await this.tracker.allSettled();
    this.scheduleCommit(true);
    await this.committing;
  }

  /** Commits run one at a time, in order, so a later position never lands before an earlier one. */
  private scheduleCommit(force: boolean): void {
    const interval = this.options.commitIntervalMs ?? 0;
    if (!force && performance.now() - this.lastCommitAt < interval) return;
    this.lastCommitAt = performance.now();
    this.committing = this.committing.then(async () => {
      if (this.failure) return;
      const positions = this.tracker.takeCommittable();
      if (positions.length === 0) return;
      await this.options.checkpoint?.(positions);
      await this.consumer.commit(positions);
      this.stats.commits++;
    });
    this.committing.catch((error: unknown) => {
      this.subscription?.unsubscribe();
      this.rejectDone(error);
    });
  }
}
