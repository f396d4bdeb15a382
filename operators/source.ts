import { setImmediate as nextTurn } from 'node:timers/promises';
import { Observable } from 'rxjs';
import type { LogConsumer, LogRecord, RecordBatch } from '../connectors/log.js';
import { Ticket, type Batch, type SourcePosition } from './batch.js';

export interface LogSourceOptions {
  /** Batches emitted but not yet done; the source stops fetching at this bound, so memory stays bounded. Default 2. */
  readonly maxInFlight?: number;
  /** Called with each batch's ticket as it is emitted, so a runner can commit in order. */
  readonly onEmit?: (ticket: Ticket, batch: RecordBatch) => void;
  /** Stops fetching; the stream completes once the current fetch returns, leaving in-flight batches to finish. */
  readonly signal?: AbortSignal;
}

/**
 * Batches from a consumer, one partition's records each, fetched only while fewer than `maxInFlight` batches are
 * unfinished. Unsubscribing stops the fetch loop; the consumer stays open for its owner to commit and close.
 *
 * After each batch the loop waits for the event loop's next turn. A consumer with records at hand answers at once,
 * so without that wait a backlog (after a burst, or on a replay) would be worked through in one chain of promise
 * callbacks, and nothing else in the process (HTTP requests, timers) would run until it was gone.
 */
export function fromLog(consumer: LogConsumer, options: LogSourceOptions = {}): Observable<Batch<LogRecord>> {
  const maxInFlight = options.maxInFlight ?? 2;
  return new Observable<Batch<LogRecord>>((subscriber) => {
    let stopped = options.signal?.aborted ?? false;
    options.signal?.addEventListener('abort', () => {
      stopped = true;
    });
    const inFlight: Ticket[] = [];
    (async () => {
      while (!stopped) {
        while (inFlight.length >= maxInFlight) await inFlight.shift()!.settled;
        if (stopped) break;
        const batch = await consumer.next();
        if (batch === undefined) break;
        if (batch === null || stopped) continue;
        const last = batch.records[batch.records.length - 1]!;
        const position: SourcePosition = { topic: batch.topic, partition: batch.partition, offset: last.offset + 1 };
        const ticket = new Ticket([position]);
        inFlight.push(ticket);
        options.onEmit?.(ticket, batch);
        subscriber.next({ items: batch.records, watermark: -Infinity, ticket });
        await nextTurn();
      }
      subscriber.complete();
    })().catch((error: unknown) => subscriber.error(error));
    return () => {
      stopped = true;
    };
  });
}

/**
 * Tracks emitted tickets in order and yields the positions that are safe to commit: those of the longest prefix of
 * finished batches, newest offset per partition. A batch finished out of order waits for the ones before it.
 */
export class OffsetTracker {
  private readonly pending: Ticket[] = [];

  track(ticket: Ticket): void {
    this.pending.push(ticket);
  }

  get inFlight(): number {
    return this.pending.length;
  }

  /** Resolves once every batch tracked so far has finished. */
  allSettled(): Promise<unknown> {
    return Promise.all(this.pending.map((t) => t.settled));
  }

  /** Removes the finished prefix and returns its positions (empty when nothing new is committable). */
  takeCommittable(): SourcePosition[] {
    const newest = new Map<string, SourcePosition>();
    while (this.pending.length > 0 && this.pending[0]!.isDone) {
      for (const p of this.pending.shift()!.positions) newest.set(`${p.topic}/${p.partition}`, p);
    }
    return [...newest.values()];
  }
}
