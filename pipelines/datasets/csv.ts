import { createReadStream } from 'node:fs';

/**
 * A streaming RFC 4180 reader: fields separated by commas, records by CRLF, LF or a lone CR, fields optionally quoted
 * with `"` and quotes inside them doubled. Quoted fields may hold commas and line breaks, so a record can span lines;
 * each record carries the line it starts on. No CSV package is installed, and this one idea fits in a page.
 */

export interface CsvRecord {
  readonly fields: string[];
  /** 1-based line number where the record starts, counting every line break (the header is line 1). */
  readonly line: number;
}

export type CsvItem =
  | ({ readonly ok: true } & CsvRecord)
  | { readonly ok: false; readonly line: number; readonly reason: string };

const enum State {
  FieldStart,
  Unquoted,
  Quoted,
  /** A quote inside a quoted field: either the first of a doubled quote or the closing one. */
  QuoteInQuoted,
  /** After a closing quote: only a separator may follow. */
  Closed,
}

/**
 * Parses CSV text arriving in chunks of any size (a chunk may end anywhere, even between CR and LF or inside `""`).
 * Malformed records become `{ ok: false }` items and parsing resumes at the next record.
 */
export class CsvParser {
  private state = State.FieldStart;
  private fields: string[] = [];
  private field = '';
  private broken: string | undefined;
  /** The previous character was a CR, so an LF now completes the same line break. */
  private afterCR = false;
  private line = 1;
  private recordLine = 1;

  /** Feeds one chunk and returns the records it completed. */
  push(chunk: string): CsvItem[] {
    const out: CsvItem[] = [];
    for (let i = 0; i < chunk.length; i++) {
      const ch = chunk[i]!;
      const afterCR = this.afterCR;
      this.afterCR = ch === '\r';
      if (ch === '\n' && afterCR) continue;
      const lineBreak = ch === '\n' || ch === '\r';

      if (this.state === State.QuoteInQuoted) {
        if (ch === '"') {
          this.field += '"';
          this.state = State.Quoted;
          continue;
        }
        this.state = State.Closed;
      }
      if (this.state === State.Quoted) {
        if (ch === '"') this.state = State.QuoteInQuoted;
        else {
          // Line breaks inside quotes come out as LF whatever the file used.
          this.field += lineBreak ? '\n' : ch;
          if (lineBreak) this.line++;
        }
        continue;
      }
      if (ch === ',') {
        this.endField();
      } else if (lineBreak) {
        this.endField();
        const item = this.endRecord();
        if (item) out.push(item);
        this.line++;
        this.recordLine = this.line;
      } else if (ch === '"') {
        if (this.state === State.FieldStart) this.state = State.Quoted;
        else this.broken ??= this.state === State.Closed ? 'a quote after a closing quote' : 'a quote inside an unquoted field';
      } else if (this.state === State.Closed) {
        this.broken ??= 'text after a closing quote';
      } else {
        this.field += ch;
        this.state = State.Unquoted;
      }
    }
    return out;
  }

  /** Flushes the last record when the input has no trailing line break. */
  end(): CsvItem[] {
    if (this.state === State.Quoted) {
      const item: CsvItem = { ok: false, line: this.recordLine, reason: 'unterminated quoted field at end of input' };
      this.fields = [];
      this.field = '';
      this.state = State.FieldStart;
      return [item];
    }
    if (this.state === State.FieldStart && this.fields.length === 0) return [];
    this.endField();
    const item = this.endRecord();
    return item ? [item] : [];
  }

  private endField(): void {
    this.fields.push(this.field);
    this.field = '';
    this.state = State.FieldStart;
  }

  private endRecord(): CsvItem | undefined {
    const { fields, broken } = this;
    this.fields = [];
    this.broken = undefined;
    if (broken) return { ok: false, line: this.recordLine, reason: broken };
    // A blank line is no record at all.
    if (fields.length === 1 && fields[0] === '') return undefined;
    return { ok: true, fields, line: this.recordLine };
  }
}

/** Parses a whole CSV string (small inputs and tests). */
export function parseCsv(text: string): CsvItem[] {
  const parser = new CsvParser();
  return [...parser.push(text), ...parser.end()];
}

/** Streams a CSV file's records without loading it whole. */
export async function* readCsvFile(path: string): AsyncGenerator<CsvItem> {
  const parser = new CsvParser();
  let stream;
  try {
    stream = createReadStream(path, { encoding: 'utf8', highWaterMark: 256 * 1024 });
    for await (const chunk of stream) yield* parser.push(chunk as string);
  } catch (error) {
    throw new Error(`cannot read ${path}: ${(error as Error).message}`, { cause: error });
  }
  yield* parser.end();
}
