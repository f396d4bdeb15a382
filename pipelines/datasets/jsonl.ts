import { createReadStream } from 'node:fs';
import { basename } from 'node:path';
import { createInterface } from 'node:readline';
import { parseInputEvent, type InputEvent } from '../../schema/events.js';
import { timeOrder } from './order.js';
import { emptyReport, reportBadRow, type DatasetReport } from './problems.js';

/**
 * Generic JSONL events: one input event (behaviour, item or user) per line, as on the wire, validated with
 * `parseInputEvent`. Blank lines are skipped; invalid lines are reported with their line numbers and skipped.
 */

/**
 * A text file's non-blank lines with their 1-based numbers. readline splits on LF and CRLF alike; a read error is
 * rethrown naming the file.
 */
export async function* numberedLines(path: string): AsyncGenerator<{ readonly line: number; readonly text: string }> {
  const input = createReadStream(path, { encoding: 'utf8' });
  const lines = createInterface({ input, crlfDelay: Infinity });
  let line = 0;
  try {
    for await (const text of lines) {
      line++;
      if (text.trim() !== '') yield { line, text };
    }
  } catch (error) {
    throw new Error(`cannot read ${path}: ${(error as Error).message}`, { cause: error });
  } finally {
    lines.close();
    input.destroy();
  }
}

/** Streams a JSONL file's valid events in file order. */
export async function* readJsonlEvents(path: string, report: DatasetReport): AsyncGenerator<InputEvent> {
  const file = basename(path);
  for await (const { line, text } of numberedLines(path)) {
    report.rows++;
    const parsed = parseInputEvent(text);
    if (!parsed.ok) {
      const where = parsed.error.field ? `${parsed.error.field}: ` : '';
      reportBadRow(report, { file, line, reason: `${where}${parsed.error.message}` });
      continue;
    }
    report.events++;
    yield parsed.value;
  }
}

/** Reads a JSONL file into a time-ordered event list (metadata first at equal times). */
export async function loadJsonl(path: string): Promise<{ events: InputEvent[]; report: DatasetReport }> {
  const report = emptyReport();
  const events: InputEvent[] = [];
  for await (const event of readJsonlEvents(path, report)) events.push(event);
  return { events: timeOrder(events), report };
}
