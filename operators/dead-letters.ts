import { map } from 'rxjs';
import type { Log, LogRecord } from '../connectors/log.js';
import { withItems } from './batch.js';
import { defineOperator, type Operator } from './operator.js';

/** What the `dead-letters` topic carries: why, the payload as received, and where it came from. */
export interface DeadLetter {
  readonly reason: string;
  readonly raw: string;
  readonly source: { readonly topic: string; readonly partition: number; readonly offset: number };
}

export interface DeadLetterSink {
  push(letter: DeadLetter): void;
}

/**
 * Collects dead letters in memory until the runner's checkpoint flushes them to the log, so they are durable before
 * the offsets of the records that produced them are committed. Bounded by the batches in flight.
 */
export class DeadLetterBuffer implements DeadLetterSink {
  private letters: DeadLetter[] = [];
  total = 0;

  push(letter: DeadLetter): void {
    this.letters.push(letter);
    this.total++;
  }

  get pending(): readonly DeadLetter[] {
    return this.letters;
  }

  /** Appends everything buffered to `topic`, keyed by the source topic. */
  async flush(log: Log, topic: string): Promise<void> {
    if (this.letters.length === 0) return;
    const letters = this.letters;
    this.letters = [];
    await log.append(
      topic,
      letters.map((l) => ({ key: l.source.topic, value: JSON.stringify(l) })),
    );
  }
}

export function deadLetterOf(record: LogRecord, reason: string): DeadLetter {
  return {
    reason,
    raw: record.value,
    source: { topic: record.topic, partition: record.partition, offset: record.offset },
  };
}

export type ParseResult<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: { field: string; message: string } };

/**
 * Log records to typed values. A record that does not parse goes to the dead-letter side output with the field and
 * the reason, so every received record is either passed on or dead-lettered. `parse` gets the record's text, or the
 * producer's object where the log passed one on (`LogRecord.payload`), which it checks as it would the parsed text.
 */
export function parseRecords<T>(
  parse: (raw: unknown) => ParseResult<T>,
  deadLetters: DeadLetterSink,
  name = 'parse',
): Operator<LogRecord, T> {
  return defineOperator({ name, kind: 'parse', sideOutputs: ['dead-letters'] }, (source$) =>
    source$.pipe(
      map((batch) => {
        const out: T[] = [];
        for (const record of batch.items) {
          const result = parse(record.payload !== undefined ? record.payload : record.value);
          if (result.ok) out.push(result.value);
          else {
            const where = result.error.field ? `${result.error.field}: ` : '';
            deadLetters.push(deadLetterOf(record, `${where}${result.error.message}`));
          }
        }
        return withItems(batch, out);
      }),
    ),
  );
}
