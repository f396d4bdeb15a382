/**
 * The unit that flows through every Eddy operator graph.
 *
 * Operators map batches one to one: each input batch yields exactly one output batch (its items may be empty),
 * and the batch's ticket travels with it unchanged. That is what lets a source know when the work a batch started
 * is finished, so it can commit the batch's offsets and fetch the next one.
 */

/** The next offset to read on one topic partition, as Kafka commits it. */
export interface SourcePosition {
  readonly topic: string;
  readonly partition: number;
  readonly offset: number;
}

export interface Batch<T> {
  readonly items: readonly T[];
  /** Event time (ms) below which no more events are expected; -Infinity before the first watermark. */
  readonly watermark: number;
  readonly ticket: Ticket;
}

/**
 * Issued by a source for each batch it emits. The end of the graph calls `done()`; the source waits for it before it
 * commits the batch's positions and, once its in-flight limit is reached, before it fetches more.
 */
export class Ticket {
  readonly settled: Promise<void>;
  private resolveSettled!: () => void;
  private finished = false;

  constructor(
    readonly positions: readonly SourcePosition[],
    readonly createdAt: number = performance.now(),
  ) {
    this.settled = new Promise((resolve) => {
      this.resolveSettled = resolve;
    });
  }

  get isDone(): boolean {
    return this.finished;
  }

  done(): void {
    if (this.finished) return;
    this.finished = true;
    this.resolveSettled();
  }
}

/** A batch for items that did not come from a log (tests, HTTP, replays): it has no positions to commit. */
export function batchOf<T>(items: readonly T[], watermark = -Infinity): Batch<T> {
  return { items, watermark, ticket: new Ticket([]) };
}

/** The same batch carrying other items. */
export function withItems<A, B>(batch: Batch<A>, items: readonly B[]): Batch<B> {
  return { items, watermark: batch.watermark, ticket: batch.ticket };
}
