/** A row a dataset adapter could not use, with where it is and why. */
export interface BadRow {
  readonly file: string;
  /** 1-based line number in that file. */
  readonly line: number;
  readonly reason: string;
}

/** What an adapter read: rows accepted, rows rejected. Bad rows are collected here, never thrown. */
export interface DatasetReport {
  /** Data rows seen (header excluded), good or bad. */
  rows: number;
  /** Events produced. */
  events: number;
  /** Every bad row counts here; only the first `maxBadRows` are kept in `bad`. */
  badCount: number;
  readonly bad: BadRow[];
  /** Notes that are not errors, e.g. ratings of movies that movies.csv does not list. */
  readonly notes: string[];
}

/** Bad rows kept with their details; beyond this only the count grows, so a broken file cannot exhaust memory. */
export const MAX_BAD_ROWS = 1000;

export function emptyReport(): DatasetReport {
  return { rows: 0, events: 0, badCount: 0, bad: [], notes: [] };
}

export function reportBadRow(report: DatasetReport, row: BadRow): void {
  report.badCount++;
  if (report.bad.length < MAX_BAD_ROWS) report.bad.push(row);
}

/** One line per bad row (up to `limit`), for a CLI to print. */
export function describeBadRows(report: DatasetReport, limit = 20): string[] {
  const lines = report.bad.slice(0, limit).map((b) => `${b.file}:${b.line}: ${b.reason}`);
  if (report.badCount > lines.length) lines.push(`... and ${report.badCount - lines.length} more bad rows`);
  return lines;
}
