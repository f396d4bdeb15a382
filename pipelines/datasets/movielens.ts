import { basename } from 'node:path';
import { LIMITS, type BehaviourEvent, type InputEvent, type ItemEvent } from '../../schema/events.js';
import { readCsvFile } from './csv.js';
import { timeOrder } from './order.js';
import { emptyReport, reportBadRow, type DatasetReport } from './problems.js';

export { isPositive, POSITIVE_RATING } from '../../models/evaluation/positive.js';

/**
 * MovieLens in the ml-latest-small layout: `ratings.csv` (userId,movieId,rating,timestamp in seconds), `movies.csv`
 * (movieId,title,genres with genres joined by `|`) and optionally `tags.csv` (userId,movieId,tag,timestamp).
 * Each rating becomes a `rating` behaviour event; movies and tags become item metadata. Bad rows are reported with
 * their line numbers and skipped.
 */

export interface MovieLensPaths {
  readonly moviesPath: string;
  readonly tagsPath?: string | undefined;
}

export interface MovieFields {
  readonly title: string;
  readonly year?: number;
  readonly genres: string[];
  readonly tags: string[];
}

const RATINGS_HEADER = ['userId', 'movieId', 'rating', 'timestamp'];
const MOVIES_HEADER = ['movieId', 'title', 'genres'];
const TAGS_HEADER = ['userId', 'movieId', 'tag', 'timestamp'];
const NO_GENRES = '(no genres listed)';
const MIN_RATING = 0.5;
const MAX_RATING = 5;

/** The id of a rating event: the same row always gets the same id, so replays deduplicate. */
export function ratingEventId(userId: string, movieId: string, tsSeconds: number): string {
  return `ml-${userId}-${movieId}-${tsSeconds}`;
}

/** Splits "Heat (1995)" into its title and year; titles without a trailing year keep their text. */
export function parseTitle(raw: string): { title: string; year?: number } {
  const match = /^(.*?)\s*\((\d{4})(?:[-–]\d{0,4})?\)\s*$/.exec(raw.trim());
  if (!match || match[1] === '') return { title: raw.trim() };
  return { title: match[1]!, year: Number(match[2]) };
}

function validId(value: string | undefined): value is string {
  return value !== undefined && value.length > 0 && value.length <= LIMITS.idLength && value.trim() === value;
}

function parseSeconds(value: string | undefined): number | undefined {
  if (value === undefined || !/^\d+$/.test(value)) return undefined;
  const seconds = Number(value);
  return Number.isSafeInteger(seconds * 1000) ? seconds : undefined;
}

async function* dataRows(path: string, header: readonly string[], report: DatasetReport): AsyncGenerator<{ fields: string[]; line: number }> {
  const file = basename(path);
  let first = true;
  for await (const item of readCsvFile(path)) {
    if (first) {
      first = false;
      const got = item.ok ? item.fields.map((f) => f.trim().replace(/^\uFEFF/, '')) : [];
      if (!item.ok || got.length !== header.length || got.some((f, i) => f !== header[i])) {
        throw new Error(`${path}: expected the header "${header.join(',')}", got "${item.ok ? item.fields.join(',') : item.reason}"`);
      }
      continue;
    }
    report.rows++;
    if (!item.ok) {
      reportBadRow(report, { file, line: item.line, reason: item.reason });
      continue;
    }
    if (item.fields.length !== header.length) {
      reportBadRow(report, { file, line: item.line, reason: `expected ${header.length} fields, got ${item.fields.length}` });
      continue;
    }
    yield item;
  }
  if (first) throw new Error(`${path}: empty file, expected the header "${header.join(',')}"`);
}

/** Streams the ratings of a `ratings.csv` in file order as `rating` events with `ts` in milliseconds. */
export async function* readRatings(path: string, report: DatasetReport): AsyncGenerator<BehaviourEvent> {
  const file = basename(path);
  for await (const { fields, line } of dataRows(path, RATINGS_HEADER, report)) {
    const [userId, movieId, ratingText, tsText] = fields;
    const rating = Number(ratingText);
    const seconds = parseSeconds(tsText);
    let reason: string | undefined;
    if (!validId(userId)) reason = `bad userId "${userId}"`;
    else if (!validId(movieId)) reason = `bad movieId "${movieId}"`;
    else if (ratingText === '' || !Number.isFinite(rating) || rating < MIN_RATING || rating > MAX_RATING) {
      reason = `rating "${ratingText}" is not a number from ${MIN_RATING} to ${MAX_RATING}`;
    } else if (seconds === undefined) reason = `timestamp "${tsText}" is not a non-negative whole number of seconds`;
    if (reason !== undefined) {
      reportBadRow(report, { file, line, reason });
      continue;
    }
    report.events++;
    yield { id: ratingEventId(userId!, movieId!, seconds!), type: 'rating', userId: userId!, itemId: movieId!, ts: seconds! * 1000, value: rating };
  }
}

interface Movie {
  readonly title: string;
  readonly year: number | undefined;
  readonly genres: string[];
}

async function readMovies(path: string, report: DatasetReport): Promise<Map<string, Movie>> {
  const file = basename(path);
  const movies = new Map<string, Movie>();
  for await (const { fields, line } of dataRows(path, MOVIES_HEADER, report)) {
    const [movieId, rawTitle, rawGenres] = fields as [string, string, string];
    let reason: string | undefined;
    if (!validId(movieId)) reason = `bad movieId "${movieId}"`;
    else if (rawTitle.trim() === '' || rawTitle.length > LIMITS.stringLength) reason = 'title is empty or too long';
    else if (movies.has(movieId)) reason = `movie ${movieId} is listed twice`;
    if (reason !== undefined) {
      reportBadRow(report, { file, line, reason });
      continue;
    }
    const { title, year } = parseTitle(rawTitle);
    const genres = rawGenres === NO_GENRES || rawGenres === '' ? [] : [...new Set(rawGenres.split('|').map((g) => g.trim()).filter(Boolean))];
    movies.set(movieId, { title, year, genres: genres.slice(0, LIMITS.arrayLength) });
  }
  return movies;
}

interface Tag {
  readonly tag: string;
  readonly ts: number;
}

async function readTags(path: string, movies: ReadonlyMap<string, Movie>, report: DatasetReport): Promise<Map<string, Tag[]>> {
  const file = basename(path);
  const tags = new Map<string, Tag[]>();
  for await (const { fields, line } of dataRows(path, TAGS_HEADER, report)) {
    const [userId, movieId, rawTag, tsText] = fields as [string, string, string, string];
    const tag = rawTag.trim();
    const seconds = parseSeconds(tsText);
    let reason: string | undefined;
    if (!validId(userId)) reason = `bad userId "${userId}"`;
    else if (!validId(movieId)) reason = `bad movieId "${movieId}"`;
    else if (!movies.has(movieId)) reason = `movie ${movieId} is not in the movies file`;
    else if (tag === '' || tag.length > LIMITS.stringLength) reason = 'tag is empty or too long';
    else if (seconds === undefined) reason = `timestamp "${tsText}" is not a non-negative whole number of seconds`;
    if (reason !== undefined) {
      reportBadRow(report, { file, line, reason });
      continue;
    }
    let list = tags.get(movieId);
    if (!list) tags.set(movieId, (list = []));
    list.push({ tag, ts: seconds! * 1000 });
  }
  return tags;
}

/**
 * Item metadata as events. A movie appears at the time of its first rating (or at 0 when nobody rated it) with the
 * tags applied by then; every later tag time brings an updated event with all tags so far. So no event carries
 * tags from its future.
 */
function itemEvents(movies: ReadonlyMap<string, Movie>, tags: ReadonlyMap<string, Tag[]>, firstSeen: ReadonlyMap<string, number>): ItemEvent[] {
  const events: ItemEvent[] = [];
  for (const [itemId, movie] of movies) {
    const appears = firstSeen.get(itemId) ?? 0;
    const itemTags = [...(tags.get(itemId) ?? [])].sort((a, b) => a.ts - b.ts);
    const known: string[] = [];
    const seen = new Set<string>();
    const emit = (ts: number) => {
      const fields: Record<string, string | number | string[]> = Object.create(null);
      fields.title = movie.title;
      if (movie.year !== undefined) fields.year = movie.year;
      fields.genres = movie.genres;
      fields.tags = known.slice(0, LIMITS.arrayLength);
      events.push({ type: 'item', itemId, ts, fields });
    };
    let i = 0;
    for (; i < itemTags.length && itemTags[i]!.ts <= appears; i++) addTag(itemTags[i]!.tag);
    emit(appears);
    while (i < itemTags.length) {
      const ts = itemTags[i]!.ts;
      let added = false;
      for (; i < itemTags.length && itemTags[i]!.ts === ts; i++) added = addTag(itemTags[i]!.tag) || added;
      if (added) emit(ts);
    }
    function addTag(tag: string): boolean {
      const key = tag.toLowerCase();
      if (seen.has(key)) return false;
      seen.add(key);
      known.push(tag);
      return true;
    }
  }
  return events;
}

async function collect(paths: readonly string[], report: DatasetReport): Promise<BehaviourEvent[][]> {
  const streams: BehaviourEvent[][] = [];
  for (const path of paths) {
    const events: BehaviourEvent[] = [];
    for await (const event of readRatings(path, report)) events.push(event);
    streams.push(events);
  }
  return streams;
}

async function metadata(paths: MovieLensPaths, ratings: readonly BehaviourEvent[][], report: DatasetReport): Promise<ItemEvent[]> {
  const movies = await readMovies(paths.moviesPath, report);
  const tags = paths.tagsPath ? await readTags(paths.tagsPath, movies, report) : new Map<string, Tag[]>();
  const firstSeen = new Map<string, number>();
  const unknown = new Set<string>();
  for (const stream of ratings) {
    for (const event of stream) {
      const seen = firstSeen.get(event.itemId);
      if (seen === undefined || event.ts < seen) firstSeen.set(event.itemId, event.ts);
      if (!movies.has(event.itemId)) unknown.add(event.itemId);
    }
  }
  if (unknown.size > 0) report.notes.push(`${unknown.size} rated movies are not in ${basename(paths.moviesPath)}; they have no metadata`);
  const items = itemEvents(movies, tags, firstSeen);
  report.events += items.length;
  return items;
}

export interface MovieLensDataset {
  /** Item metadata and ratings, time-ordered (metadata first at equal times). */
  readonly events: InputEvent[];
  readonly report: DatasetReport;
}

/** Reads a MovieLens dataset into one time-ordered event stream. */
export async function loadMovieLens(paths: MovieLensPaths & { readonly ratingsPath: string }): Promise<MovieLensDataset> {
  const report = emptyReport();
  const [ratings] = (await collect([paths.ratingsPath], report)) as [BehaviourEvent[]];
  const items = await metadata(paths, [ratings], report);
  return { events: timeOrder([...items, ...ratings]), report };
}

export interface MovieLensSplit {
  /** Learned from before scoring starts. Holds the metadata of items first seen in it, or never rated. */
  readonly train: InputEvent[];
  /** Scored prequentially. Holds the metadata events later than the last training event. */
  readonly test: InputEvent[];
  readonly report: DatasetReport;
}

/** Reads a train and a test ratings file sharing one movies (and tags) file. */
export async function loadMovieLensSplit(paths: MovieLensPaths & { readonly trainPath: string; readonly testPath: string }): Promise<MovieLensSplit> {
  const report = emptyReport();
  const [train, test] = (await collect([paths.trainPath, paths.testPath], report)) as [BehaviourEvent[], BehaviourEvent[]];
  const items = await metadata(paths, [train, test], report);
  const trainEnd = train.reduce((max, e) => Math.max(max, e.ts), 0);
  const trainItems = items.filter((e) => e.ts <= trainEnd);
  const testItems = items.filter((e) => e.ts > trainEnd);
  return { train: timeOrder([...trainItems, ...train]), test: timeOrder([...testItems, ...test]), report };
}
