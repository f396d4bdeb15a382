import { concatMap, map, Observable } from 'rxjs';
import { DeferredJson, type Log, type LogConsumer, type LogRecord, type TopicPartition } from '../connectors/log.js';
import { withItems, Ticket, type Batch, type SourcePosition } from '../operators/batch.js';
import { DeadLetterBuffer, deadLetterOf, type DeadLetter, type DeadLetterSink } from '../operators/dead-letters.js';
import { eventTime, type EventTimeSnapshot } from '../operators/event-time.js';
import { intervalJoin, type IntervalJoinSnapshot, type JoinedGroup, type JoinSideRecord } from '../operators/interval-join.js';
import { decodeServedBlock, type ServedFeaturesRecord } from '../operators/features/feature-log.js';
import { defineOperator, type Operator } from '../operators/operator.js';
import { Pipeline } from '../operators/pipeline.js';
import { PipelineRunner } from '../operators/runtime.js';
import { BEHAVIOUR_TYPES, LIMITS, parseInputEvent, type BehaviourEvent, type BehaviourType } from '../schema/events.js';
import { remembered } from '../schema/remembered.js';
import { MAX_SAMPLE_FEATURES, type LabelledSample } from '../schema/samples.js';

/**
 * The `samples` role: served impressions joined, in event time, with the clicks and conversions of the same user and
 * item within the attribution window, labelled cascade-style per request, and carrying the feature values each item
 * was scored with at serving time (from the `feature-log` topic).
 *
 * How it fits together: `events` and `feature-log` records are parsed into items (an impression, an outcome, or the
 * served features of one request). Served features are attached to their impressions by request id (see
 * `ServedFeatureMatcher`); impressions and outcomes then meet in an interval join, on the left and on the right. Both
 * states are snapshotted together at each checkpoint. An impression leaves the join once the watermark passes its
 * time plus the window, with the outcomes that matched it; impressions of one request share one time (serving stamps
 * them together), so they leave together and are labelled together.
 *
 * Labels, per request:
 * - an impression with a positive outcome (`positiveTypes`, attributed to it) is 1;
 * - one shown above the lowest-placed positive and not clicked is 0 (the user saw it and passed over it);
 * - one below the lowest-placed positive: `belowLastClick`, default `skip` (the user may never have looked that far);
 * - every impression of a request with no positive: `noClick`, default `negative`. The cascade argument for
 *   skipping them is weaker than the online learner's need for negatives: without them a model never learns what is
 *   ignored, and most requests get no click.
 * Conversions (`conversionTypes`, default `purchase`) count as positives when they are in `positiveTypes` (they are
 * by default) and also set `converted: 1`, a separate target a conversion model can train on.
 *
 * Attribution: an outcome that carries a `requestId` counts only for that request's impression; one without counts
 * for every impression of the same user and item in the window before it.
 *
 * Accounting: every record read is parsed into join items, ignored (events the samples job has no use for: views,
 * ratings, item and user metadata; counted in `stats.ignored`), or dead-lettered. Every accepted impression ends as a
 * sample, as `skipped` by the labelling policy, or dead-lettered (`no served features`, `late`). Outcomes that match
 * no impression (organic clicks) and served features whose impression never came are counted, not dead-lettered: they
 * are normal.
 *
 * Bound: the join holds at most `maxStateItems` impressions and outcomes. Past it, the oldest impressions are labelled
 * early, with what they matched so far (counted in `closedEarly`), so a window is shortened rather than its samples
 * lost; outcomes are freed early (and dead-lettered as `evicted` if they matched nothing) only when no impression is
 * held. Served features wait outside it, and only until the watermark passes their time.
 *
 * Watermark: bounded out-of-orderness per partition (`maxOutOfOrdernessMs`), partitions idle for `idleMs` stop
 * holding it back, and, so that samples still come out when traffic stops, once no record has arrived for `idleMs`
 * the watermark advances with processing time (a tick every `tickIntervalMs` carries it). In a live setting a
 * sample is therefore out at most window + maxOutOfOrdernessMs + idleMs + tickIntervalMs after its impression.
 */

export interface SamplesTopics {
  /** Default `events`. */
  readonly events: string;
  /** Default `feature-log`. */
  readonly featureLog: string;
  /** Default `samples`. */
  readonly samples: string;
  /** Default `dead-letters`. */
  readonly deadLetters: string;
}

export const DEFAULT_SAMPLES_TOPICS: SamplesTopics = {
  events: 'events',
  featureLog: 'feature-log',
  samples: 'samples',
  deadLetters: 'dead-letters',
};

export interface LabellingPolicy {
  /** Outcomes that make an impression positive. Default click, like, add_to_cart, purchase. */
  readonly positiveTypes: readonly BehaviourType[];
  /** Outcomes that also set `converted`. Default purchase. */
  readonly conversionTypes: readonly BehaviourType[];
  /** Impressions placed below the lowest positive of their request. Default `skip`. */
  readonly belowLastClick: 'skip' | 'negative';
  /** Impressions of a request that got no positive. Default `negative`. */
  readonly noClick: 'skip' | 'negative';
}

export const DEFAULT_LABELLING: LabellingPolicy = {
  positiveTypes: ['click', 'like', 'add_to_cart', 'purchase'],
  conversionTypes: ['purchase'],
  belowLastClick: 'skip',
  noClick: 'negative',
};

export const SAMPLES_DEFAULTS = {
  attributionWindowMs: 30 * 60_000,
  maxOutOfOrdernessMs: 5_000,
  idleMs: 5_000,
  tickIntervalMs: 1_000,
  maxStateItems: 1_000_000,
} as const;

/** Where in the log a join item came from, for its dead letter. */
interface SourceRef {
  readonly topic: string;
  readonly partition: number;
  readonly offset: number;
}

/** The served features of one item. */
export interface ServedJoinItem {
  readonly kind: 'served';
  readonly userId: string;
  readonly itemId: string;
  readonly requestId: string;
  readonly ts: number;
  readonly names: readonly string[];
  /** The item's row of its request's float32 block (a plain array in a checkpoint). */
  readonly values: Float32Array | readonly number[];
  readonly source: SourceRef;
}

/** 2^30: below it, an integer is held unboxed (a small integer) on every platform V8 runs on. */
const TS_SPLIT = 2 ** 30;

/** An impression as a checkpoint carries it. */
interface PlainImpression {
  readonly kind: 'impression';
  readonly event: BehaviourEvent;
  readonly requestId: string;
  readonly position: number;
  readonly source: SourceRef;
}

/**
 * An impression as the join holds it, for its whole attribution window: its event's fields and its place in the log
 * in one object. Holding the decoded event and a source object as well took two more objects and about 90 bytes an
 * impression. The event and the source are made again when read (for a dead letter), and a checkpoint carries the
 * plain form.
 */
export class HeldImpression {
  readonly kind = 'impression';
  /** The event's id, unless it is the `requestId:position` serving gives every impression: then it is made when read. */
  private readonly ownId: string | undefined;
  /**
   * The event time as two small integers: a number field that holds milliseconds since the epoch is boxed in a heap
   * object of its own, one more for the collector to mark per held impression.
   */
  private readonly tsHigh: number;
  private readonly tsLow: number;
  /** Its request's served features, once they are known: the request's block and its row in it. */
  private servedRequest: ServedRequest | undefined = undefined;
  private servedRow = -1;

  constructor(
    id: string,
    readonly userId: string,
    readonly itemId: string,
    ts: number,
    readonly requestId: string,
    readonly position: number,
    private readonly topic: string,
    private readonly partition: number,
    private readonly offset: number,
  ) {
    this.ownId = isServedId(id, requestId, position) ? undefined : id;
    this.tsHigh = Math.floor(ts / TS_SPLIT);
    this.tsLow = ts - this.tsHigh * TS_SPLIT;
  }

  get ts(): number {
    return this.tsHigh * TS_SPLIT + this.tsLow;
  }

  attach(request: ServedRequest, row: number): void {
    this.servedRequest = request;
    this.servedRow = row;
  }

  /** Whether its served features are known. */
  get hasServed(): boolean {
    return this.servedRequest !== undefined;
  }

  /** The features it was served with, or undefined while none are known. */
  get served(): ServedJoinItem | undefined {
    return this.servedRequest && new ServedRow(this.servedRequest, this.itemId, this.servedRow);
  }

  static of(event: BehaviourEvent, requestId: string, position: number, source: SourceRef): HeldImpression {
    return new HeldImpression(event.id, event.userId, event.itemId, event.ts, requestId, position, source.topic, source.partition, source.offset);
  }

  get id(): string {
    return this.ownId ?? `${this.requestId}:${this.position}`;
  }

  get event(): BehaviourEvent {
    const { id, userId, itemId, ts, requestId, position } = this;
    return { id, type: 'impression', userId, itemId, ts, requestId, position };
  }

  get source(): SourceRef {
    return { topic: this.topic, partition: this.partition, offset: this.offset };
  }

  toJSON(): PlainImpression {
    return { kind: 'impression', event: this.event, requestId: this.requestId, position: this.position, source: this.source };
  }
}

/** Whether `id` is `${requestId}:${position}`, compared in place rather than by building that string. */
function isServedId(id: string, requestId: string, position: number): boolean {
  const digits = String(position);
  return (
    id.length === requestId.length + 1 + digits.length &&
    id.startsWith(requestId) &&
    id.charCodeAt(requestId.length) === 58 &&
    id.endsWith(digits)
  );
}

/** The served features of one request, as parsed from its feature-log record. */
interface ServedRequestItem {
  readonly kind: 'served-request';
  readonly request: ServedRequest;
  /** The served items, in the order of the block's rows. */
  readonly itemIds: readonly string[];
  readonly source: SourceRef;
}

/**
 * What the job's stages pass on: impressions, outcomes and the served features of requests. The join holds
 * impressions on the left and outcomes on the right; served features are attached to their impressions before it.
 * The served features of one item (`ServedJoinItem`) are what a checkpoint and a dead letter carry.
 */
export type SampleJoinItem =
  | HeldImpression
  | { readonly kind: 'outcome'; readonly event: BehaviourEvent; readonly source: SourceRef }
  | ServedJoinItem
  | ServedRequestItem;

/** What the served items of one feature-log record share. */
interface ServedRequest {
  readonly userId: string;
  readonly requestId: string;
  readonly ts: number;
  readonly names: readonly string[];
  /** A row of `names.length` values per item, in the record's order. */
  readonly block: Float32Array;
  readonly source: SourceRef;
}

/** The served features of one item, as a view of its row of its request's block, made when they are read. */
class ServedRow implements ServedJoinItem {
  readonly kind = 'served';

  constructor(
    private readonly request: ServedRequest,
    readonly itemId: string,
    private readonly row: number,
  ) {}

  get userId(): string {
    return this.request.userId;
  }

  get requestId(): string {
    return this.request.requestId;
  }

  get ts(): number {
    return this.request.ts;
  }

  get names(): readonly string[] {
    return this.request.names;
  }

  get source(): SourceRef {
    return this.request.source;
  }

  get values(): Float32Array {
    const width = this.request.names.length;
    return this.request.block.subarray(this.row * width, (this.row + 1) * width);
  }
}

export interface SamplesStats {
  /** Records read from both topics. */
  received: number;
  /** Records that did not parse (dead-lettered). */
  invalid: number;
  /** Well-formed records the job has no use for (views, ratings, metadata). */
  ignored: number;
  impressions: number;
  outcomes: number;
  /** Feature-log records (one per request). */
  servedRequests: number;
  samples: number;
  positives: number;
  negatives: number;
  /** Impressions the labelling policy leaves out. */
  skipped: number;
  /** Impressions dead-lettered because no served features were logged for them. */
  missingFeatures: number;
  /** Items of any kind dead-lettered because they arrived below the watermark. */
  late: number;
  /** Impressions labelled before their attribution window ended, because the join held `maxStateItems` items. */
  closedEarly: number;
  /** Outcomes freed unmatched because the join held `maxStateItems` items (dead-lettered). */
  evicted: number;
  /** Outcomes no impression matched: organic clicks. */
  unattributedOutcomes: number;
  /** Served features whose impression never came. */
  unusedFeatures: number;
}

function emptyStats(): SamplesStats {
  return {
    received: 0,
    invalid: 0,
    ignored: 0,
    impressions: 0,
    outcomes: 0,
    servedRequests: 0,
    samples: 0,
    positives: 0,
    negatives: 0,
    skipped: 0,
    missingFeatures: 0,
    late: 0,
    closedEarly: 0,
    evicted: 0,
    unattributedOutcomes: 0,
    unusedFeatures: 0,
  };
}

/** The longest base64 `values` a record may carry: the largest block of float32 rows there can be. */
const MAX_VALUES_LENGTH = Math.ceil((LIMITS.candidates * MAX_SAMPLE_FEATURES * 4) / 3) + 4;
const RECORD_FIELDS = new Set(['requestId', 'userId', 'ts', 'names', 'items', 'values']);

function isText(value: unknown, maxLength: number): value is string {
  return typeof value === 'string' && value.length >= 1 && value.length <= maxLength;
}

/**
 * A parsed feature-log record checked field by field; throws an error naming the first field that is wrong. Written
 * out rather than declared as a schema because every served response passes here, and a schema library's per-element
 * checks of the 40-odd names were most of the samples job's parsing. Names equal to `checkedNames`, a list already
 * checked (every record of one serving store has the same), are not checked again one by one.
 */
function checkServedRecord(value: unknown, checkedNames: readonly string[]): ServedFeaturesRecord {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error('entry: expected an object');
  const record = value as Record<string, unknown>;
  for (const key in record) if (!RECORD_FIELDS.has(key)) throw new Error(`${key}: not a field of a feature-log record`);
  const { requestId, userId, ts, names, items, values } = record;
  if (!isText(requestId, LIMITS.idLength)) throw new Error(`requestId: expected a string of 1 to ${LIMITS.idLength} characters`);
  if (!isText(userId, LIMITS.idLength)) throw new Error(`userId: expected a string of 1 to ${LIMITS.idLength} characters`);
  if (!(typeof ts === 'number' && Number.isInteger(ts) && ts >= 0 && ts <= 8.64e15)) throw new Error('ts: expected a whole number of ms from 0 to 8.64e15');
  if (!Array.isArray(names) || names.length > MAX_SAMPLE_FEATURES) throw new Error(`names: expected an array of at most ${MAX_SAMPLE_FEATURES} names`);
  if (!sameNames(names as string[], checkedNames)) {
    names.forEach((name: unknown, i) => {
      if (!isText(name, LIMITS.stringLength)) throw new Error(`names.${i}: expected a string of 1 to ${LIMITS.stringLength} characters`);
    });
  }
  if (!Array.isArray(items) || items.length > LIMITS.candidates) throw new Error(`items: expected an array of at most ${LIMITS.candidates} item ids`);
  items.forEach((itemId: unknown, i) => {
    if (!isText(itemId, LIMITS.idLength)) throw new Error(`items.${i}: expected a string of 1 to ${LIMITS.idLength} characters`);
  });
  if (typeof values !== 'string' || values.length > MAX_VALUES_LENGTH) throw new Error(`values: expected a base64 string of at most ${MAX_VALUES_LENGTH} characters`);
  return record as unknown as ServedFeaturesRecord;
}

/** Where labelled samples go. */
export interface SampleSink {
  append(samples: readonly LabelledSample[]): Promise<void>;
}

/**
 * About how long a sample's JSON is, for the embedded log's retention by bytes, without writing it: the fields' names
 * and punctuation, the ids, the feature names (summed once per list: every sample of a job shares one), and up to 20
 * characters a value.
 */
const SAMPLE_JSON_FIXED_LENGTH = 200;
const SAMPLE_JSON_VALUE_LENGTH = 20;
let namesMeasured: readonly string[] = [];
let namesLength = 0;
function estimatedSampleLength(sample: LabelledSample): number {
  if (sample.names !== namesMeasured) {
    namesMeasured = sample.names;
    namesLength = sample.names.reduce((sum, name) => sum + name.length + 3, 0);
  }
  return (
    SAMPLE_JSON_FIXED_LENGTH + sample.id.length + sample.requestId.length + sample.userId.length + sample.itemId.length + namesLength + sample.values.length * SAMPLE_JSON_VALUE_LENGTH
  );
}

/**
 * Appends samples to a log topic keyed by user, the partitioning of `events`. Each goes as a deferred JSON value: a
 * trainer in this thread reads the sample as it is (15,000 a second at 1,500 requests a second once the join is full),
 * where writing and parsing its text cost a fifth of a core; any other log writes the text at append.
 */
export class TopicSampleSink implements SampleSink {
  constructor(
    private readonly log: Log,
    readonly topic = DEFAULT_SAMPLES_TOPICS.samples,
  ) {}

  async append(samples: readonly LabelledSample[]): Promise<void> {
    if (samples.length === 0) return;
    try {
      await this.log.append(this.topic, samples.map((s) => ({ key: s.userId, value: new DeferredJson(s, estimatedSampleLength(s)) })));
    } catch (error) {
      throw new Error(`cannot append ${samples.length} samples to ${this.topic}`, { cause: error });
    }
  }
}

export interface SamplesPipelineOptions {
  readonly sink: SampleSink;
  readonly deadLetters: DeadLetterSink;
  readonly topics?: Partial<SamplesTopics>;
  /** How long after an impression an outcome still counts for it. Default 30 min. */
  readonly attributionWindowMs?: number;
  readonly labelling?: Partial<LabellingPolicy>;
  /** How far behind the newest event of a partition an event may arrive without being late. Default 5000 ms. */
  readonly maxOutOfOrdernessMs?: number;
  /** Quiet time after which a partition stops holding the watermark and the watermark follows the clock. Default 5000 ms. */
  readonly idleMs?: number;
  /** Processing-time ticks that move the watermark while no records arrive; 0 turns them off. Default 1000 ms. */
  readonly tickIntervalMs?: number;
  /**
   * Impressions and outcomes the join may hold; past it the oldest impressions are labelled before their window
   * ends. Default 1,000,000.
   */
  readonly maxStateItems?: number;
  /** Counters, shared with the caller. Default a fresh set. */
  readonly stats?: SamplesStats;
  /** Processing-time clock (ms). Default `performance.now`. */
  readonly clock?: () => number;
}

/** What a checkpoint saves: the join and watermark state, and the positions that state reflects. */
export interface SamplesCheckpoint {
  readonly positions: readonly SourcePosition[];
  readonly eventTime: EventTimeSnapshot;
  /** null stands for -Infinity. */
  readonly watermark: number | null;
  readonly join: IntervalJoinSnapshot<SampleJoinItem>;
  readonly stats: SamplesStats;
}

export interface SamplesStateStore {
  load(): Promise<SamplesCheckpoint | undefined>;
  save(checkpoint: SamplesCheckpoint): Promise<void>;
}

/** Keeps the checkpoint in memory: survives a rebalance or a runner restart within the process, not a crash. */
export class MemorySamplesStateStore implements SamplesStateStore {
  private saved: string | undefined;

  async load(): Promise<SamplesCheckpoint | undefined> {
    return this.saved === undefined ? undefined : (JSON.parse(this.saved) as SamplesCheckpoint);
  }

  async save(checkpoint: SamplesCheckpoint): Promise<void> {
    this.saved = JSON.stringify(checkpoint);
  }
}

/** Keeps checkpoints on a log topic (compacted in Kafka), keyed by consumer group; the newest one wins. */
export class TopicSamplesStateStore implements SamplesStateStore {
  constructor(
    private readonly log: Log,
    private readonly key: string,
    readonly topic = 'samples-state',
  ) {}

  async load(): Promise<SamplesCheckpoint | undefined> {
    let latest: string | undefined;
    for (const record of await readTopic(this.log, this.topic)) if (record.key === this.key) latest = record.value;
    if (latest === undefined) return undefined;
    try {
      return JSON.parse(latest) as SamplesCheckpoint;
    } catch (error) {
      throw new Error(`the samples checkpoint on ${this.topic} (key ${this.key}) is not valid JSON`, { cause: error });
    }
  }

  async save(checkpoint: SamplesCheckpoint): Promise<void> {
    await this.log.append(this.topic, [{ key: this.key, value: JSON.stringify(checkpoint) }]);
  }
}

/**
 * Every record of `topic` from the oldest kept to the end as of the call, in offset order per partition, read by a
 * throwaway consumer group that commits nothing.
 */
export async function readTopic(log: Log, topic: string, options: { group?: string } = {}): Promise<LogRecord[]> {
  const ends = await log.offsets(topic);
  const remaining = new Map(ends.filter((p) => p.high > p.low).map((p) => [p.partition, p.high]));
  const out: LogRecord[] = [];
  if (remaining.size === 0) return out;
  const consumer = log.consumer({
    group: options.group ?? `read-${topic}-${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2)}`,
    topics: [topic],
    fromBeginning: true,
  });
  try {
    while (remaining.size > 0) {
      const batch = await consumer.next();
      if (batch === undefined) break;
      if (batch === null) continue;
      const end = remaining.get(batch.partition);
      if (end === undefined) continue;
      for (const record of batch.records) if (record.offset < end) out.push(record);
      if (batch.records[batch.records.length - 1]!.offset + 1 >= end) remaining.delete(batch.partition);
    }
  } finally {
    await consumer.close();
  }
  return out;
}

/**
 * The join's key is the user: ids the job holds already, where a key per user and item was a string more for every
 * held impression. The item is part of `sameItemAndRequest`, so an outcome is compared with every impression its user
 * has in the join: a few hundred for a user who asks every few seconds for half an hour.
 */
function keyOf(item: SampleJoinItem): string {
  if (item.kind === 'outcome') return item.event.userId;
  return item.kind === 'served-request' ? item.request.userId : item.userId;
}

/**
 * Whether an outcome belongs to a held impression of its user: the same item, and the same request when it names
 * one.
 */
function sameItemAndRequest(left: SampleJoinItem, right: SampleJoinItem): boolean {
  if (right.kind !== 'outcome') return false;
  const impression = left as HeldImpression;
  return right.event.itemId === impression.itemId && (right.event.requestId === undefined || right.event.requestId === impression.requestId);
}

function timeOf(item: SampleJoinItem): number {
  if (item.kind === 'outcome') return item.event.ts;
  return item.kind === 'served-request' ? item.request.ts : item.ts;
}

/** A request's served features item by item, as the checkpoint and dead letters carry them. */
function rowsOf({ request, itemIds }: ServedRequestItem): ServedJoinItem[] {
  return itemIds.map((itemId, row) => new ServedRow(request, itemId, row));
}

function rawOf(item: SampleJoinItem): string {
  if (item.kind === 'outcome' || item.kind === 'impression') return JSON.stringify(item.event);
  const { userId, requestId, ts, names } = item.kind === 'served' ? item : item.request;
  const rows = item.kind === 'served' ? [item] : rowsOf(item);
  return JSON.stringify({ requestId, userId, ts, names, items: rows.map(({ itemId, values }) => ({ itemId, values: Array.from(values) })) });
}

/** The item as a checkpoint carries it: JSON has no typed arrays. */
function plainItem(item: SampleJoinItem): SampleJoinItem {
  if (item.kind !== 'served' || Array.isArray(item.values)) return item;
  const { userId, itemId, requestId, ts, names, values, source } = item;
  return { kind: 'served', userId, itemId, requestId, ts, names, values: Array.from(values), source };
}

function deadLetterOfItem(item: SampleJoinItem, reason: string): DeadLetter {
  return { reason, raw: rawOf(item), source: item.source };
}

/** A request's served features while they wait for impressions: which rows an impression has taken. */
interface PendingRequest {
  readonly item: ServedRequestItem;
  readonly taken: Uint8Array;
}

/** When the matcher lets go of a request's features: once the watermark is above `at`. */
interface Expiry {
  readonly at: number;
  readonly requestId: string;
}

/**
 * Served features to their impressions by request id, ahead of the join, which then holds impressions and outcomes
 * only. Joined there as items of their own, each served item took a join entry, an object and a share of its key's
 * bucket for as long as its impression was held; now an impression holds its request's block and its row.
 *
 * The rules are the join's: features match an impression of the same request, user and item whose time is at most
 * the window before theirs; items below the watermark they arrive under are late. A request's features are let go
 * once the watermark passes their time (rows no impression took are counted as unused features). Impressions that
 * came first wait for them until they leave the join (`forget`).
 */
class ServedFeatureMatcher {
  private readonly requests = new Map<string, PendingRequest>();
  private readonly waiting = new Map<string, HeldImpression[]>();
  /** A min-heap on `at`. */
  private readonly expiries: Expiry[] = [];
  private watermarkNow = -Infinity;

  constructor(
    private readonly windowMs: number,
    private readonly stats: SamplesStats,
    private readonly deadLetters: DeadLetterSink,
  ) {}

  get watermark(): number {
    return this.watermarkNow;
  }

  /** Matches a batch's items under the current watermark, passes on all but served requests, then advances. */
  process(items: readonly SampleJoinItem[], watermark: number, out: SampleJoinItem[]): void {
    for (const item of items) {
      if (item.kind === 'served-request') {
        this.addRequest(item);
        continue;
      }
      if (item.kind === 'impression' && item.ts >= this.watermarkNow) this.addImpression(item);
      out.push(item);
    }
    if (watermark > this.watermarkNow) this.watermarkNow = watermark;
    this.expire();
  }

  /** The features held, as the items a checkpoint carries, with whether an impression took each. */
  heldRows(): { item: ServedJoinItem; taken: boolean }[] {
    return [...this.requests.values()].flatMap(({ item, taken }) => rowsOf(item).map((row, r) => ({ item: row, taken: taken[r] === 1 })));
  }

  /** Starts again from a checkpoint: the features held then, and the held impressions still without any. */
  restore(watermark: number, rows: readonly { item: ServedJoinItem; taken: boolean }[], impressions: readonly HeldImpression[]): void {
    this.requests.clear();
    this.waiting.clear();
    this.expiries.length = 0;
    this.watermarkNow = watermark;
    const byRequest = new Map<string, { item: ServedJoinItem; taken: boolean }[]>();
    for (const row of rows) {
      const list = byRequest.get(row.item.requestId);
      if (list) list.push(row);
      else byRequest.set(row.item.requestId, [row]);
    }
    for (const list of byRequest.values()) {
      const item = requestOfRows(list.map((row) => row.item));
      const pending = this.register(item);
      list.forEach((row, r) => (pending.taken[r] = row.taken ? 1 : 0));
    }
    for (const impression of impressions) if (!impression.hasServed) this.wait(impression);
  }

  private addRequest(item: ServedRequestItem): void {
    const { request } = item;
    if (request.ts < this.watermarkNow) {
      for (const row of rowsOf(item)) {
        this.stats.late++;
        this.deadLetters.push(deadLetterOfItem(row, `late served: event time ${request.ts} is below the watermark ${this.watermarkNow}`));
      }
      return;
    }
    // A repeated record (a redelivery) finds the first one's rows still held and adds nothing.
    if (this.requests.has(request.requestId)) return;
    const pending = this.register(item);
    const waiting = this.waiting.get(request.requestId);
    if (!waiting) return;
    for (const impression of waiting) this.match(pending, impression);
    this.waiting.delete(request.requestId);
  }

  private register(item: ServedRequestItem): PendingRequest {
    const pending = { item, taken: new Uint8Array(item.itemIds.length) };
    this.requests.set(item.request.requestId, pending);
    this.push({ at: item.request.ts, requestId: item.request.requestId });
    return pending;
  }

  /** Stops waiting for the features of an impression that has left the join without them. */
  forget(impression: HeldImpression): void {
    const list = this.waiting.get(impression.requestId);
    const at = list?.indexOf(impression) ?? -1;
    if (at < 0) return;
    list!.splice(at, 1);
    if (list!.length === 0) this.waiting.delete(impression.requestId);
  }

  private addImpression(impression: HeldImpression): void {
    const pending = this.requests.get(impression.requestId);
    if (pending) this.match(pending, impression);
    else this.wait(impression);
  }

  private wait(impression: HeldImpression): void {
    const list = this.waiting.get(impression.requestId);
    if (list) list.push(impression);
    else this.waiting.set(impression.requestId, [impression]);
  }

  private match({ item, taken }: PendingRequest, impression: HeldImpression): void {
    const { request, itemIds } = item;
    if (request.userId !== impression.userId || request.ts < impression.ts || request.ts > impression.ts + this.windowMs) return;
    // Serving logs items in the order it showed them, so an impression's position is usually its row.
    const row = itemIds[impression.position] === impression.itemId ? impression.position : itemIds.indexOf(impression.itemId);
    if (row < 0) return;
    impression.attach(request, row);
    taken[row] = 1;
  }

  private expire(): void {
    const heap = this.expiries;
    while (heap.length > 0 && heap[0]!.at < this.watermarkNow) {
      const { at, requestId } = this.pop();
      const pending = this.requests.get(requestId);
      if (!pending || pending.item.request.ts !== at) continue;
      this.requests.delete(requestId);
      for (const taken of pending.taken) if (taken === 0) this.stats.unusedFeatures++;
    }
  }

  private push(expiry: Expiry): void {
    const heap = this.expiries;
    let i = heap.length;
    heap.push(expiry);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (heap[parent]!.at <= expiry.at) break;
      heap[i] = heap[parent]!;
      i = parent;
    }
    heap[i] = expiry;
  }

  private pop(): Expiry {
    const heap = this.expiries;
    const top = heap[0]!;
    const last = heap.pop()!;
    if (heap.length === 0) return top;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= heap.length) break;
      const child = l + 1 < heap.length && heap[l + 1]!.at < heap[l]!.at ? l + 1 : l;
      if (heap[child]!.at >= last.at) break;
      heap[i] = heap[child]!;
      i = child;
    }
    heap[i] = last;
    return top;
  }
}

/** One request's served items, as a checkpoint carries them (each with its values), back to one block. */
function requestOfRows(rows: readonly ServedJoinItem[]): ServedRequestItem {
  const { userId, requestId, ts, names, source } = rows[0]!;
  const block = new Float32Array(rows.length * names.length);
  rows.forEach((row, r) => block.set(row.values, r * names.length));
  return { kind: 'served-request', request: { userId, requestId, ts, names, block, source }, itemIds: rows.map((row) => row.itemId), source };
}

/**
 * The checkpoint of the join and the matcher, in the form checkpoints have always had: an impression with its served
 * features among its matches, and the features no impression has taken yet as the join's right items.
 */
function plainSnapshot(snapshot: IntervalJoinSnapshot<SampleJoinItem>, rows: readonly { item: ServedJoinItem; taken: boolean }[]): IntervalJoinSnapshot<SampleJoinItem> {
  let seq = snapshot.entries.reduce((most, entry) => Math.max(most, entry.seq + 1), 0);
  const entries: IntervalJoinSnapshot<SampleJoinItem>['entries'][number][] = snapshot.entries.map((entry) => {
    const served = entry.item.kind === 'impression' ? entry.item.served : undefined;
    const matches = [...(served ? [served] : []), ...(entry.matches ?? [])].map(plainItem);
    return { ...entry, item: plainItem(entry.item), matched: entry.matched || served !== undefined, ...(matches.length > 0 ? { matches } : {}) };
  });
  for (const { item, taken } of rows) entries.push({ side: 'right', item: plainItem(item), seq: seq++, matched: taken });
  return { ...snapshot, entries };
}

/**
 * A checkpoint's state split back into the join's (impressions as the join holds them, with their served features
 * attached, and outcomes) and the matcher's (served features no impression has taken). Checkpoints of versions that
 * joined features in the join read the same way.
 */
function restoredState(snapshot: IntervalJoinSnapshot<SampleJoinItem>): {
  join: IntervalJoinSnapshot<SampleJoinItem>;
  rows: { item: ServedJoinItem; taken: boolean }[];
  impressions: HeldImpression[];
} {
  const rows: { item: ServedJoinItem; taken: boolean }[] = [];
  const impressions: HeldImpression[] = [];
  const entries: IntervalJoinSnapshot<SampleJoinItem>['entries'][number][] = [];
  for (const entry of snapshot.entries) {
    const item = entry.item as SampleJoinItem | PlainImpression;
    if (item.kind === 'served') {
      rows.push({ item, taken: entry.matched });
      continue;
    }
    if (item.kind !== 'impression') {
      entries.push(entry);
      continue;
    }
    const impression = item instanceof HeldImpression ? item : HeldImpression.of(item.event, item.requestId, item.position, item.source);
    const served = entry.matches?.find((match) => match.kind === 'served' && match.requestId === impression.requestId) as ServedJoinItem | undefined;
    if (served) impression.attach(requestOfRows([served]).request, 0);
    impressions.push(impression);
    const outcomes = entry.matches?.filter((match) => match.kind === 'outcome') ?? [];
    entries.push({ side: entry.side, item: impression, seq: entry.seq, matched: outcomes.length > 0, ...(outcomes.length > 0 ? { matches: outcomes } : {}) });
  }
  return { join: { ...snapshot, entries }, rows, impressions };
}

/** Served features to their impressions (see `ServedFeatureMatcher`), as an operator. */
function attachServedFeatures(matcher: ServedFeatureMatcher): Operator<SampleJoinItem, SampleJoinItem> {
  return defineOperator<SampleJoinItem, SampleJoinItem>(
    { name: 'attach-served-features', kind: 'match', params: { by: 'requestId' }, sideOutputs: ['dead-letters'] },
    (source$) =>
      source$.pipe(
        map((batch) => {
          const out: SampleJoinItem[] = [];
          matcher.process(batch.items, batch.watermark, out);
          return withItems(batch, out);
        }),
      ),
  );
}

function sameNames(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * Ids the parser shares at most, over two generations. Each record parses into strings of its own, so the ten
 * impressions of a request held ten copies of its request id and user id, and its features record another copy of
 * each item id: about 1.5 KB a request that the join holds for the whole attribution window.
 */
const SHARED_STRINGS = 32_768;

/** Log records from `events` and `feature-log` to join items; the rest is ignored or dead-lettered. */
function parseSampleInputs(
  topics: SamplesTopics,
  outcomeTypes: ReadonlySet<string>,
  deadLetters: DeadLetterSink,
  stats: SamplesStats,
): Operator<LogRecord, SampleJoinItem> {
  let heldNames: readonly string[] = [];
  const sharedCopy = remembered((text: string) => text, SHARED_STRINGS);
  const parseRecord = (record: LogRecord, out: SampleJoinItem[]): void => {
    const source = { topic: record.topic, partition: record.partition, offset: record.offset };
    if (record.topic === topics.featureLog) {
      let value: unknown;
      try {
        value = JSON.parse(record.value) as unknown;
      } catch (error) {
        throw new Error(`malformed JSON: ${(error as Error).message}`);
      }
      const entry = checkServedRecord(value, heldNames);
      // The join holds each item's row of the request's one block: it holds served features for the whole
      // attribution window, and a plain array of numbers per item would take several times the memory, and the
      // collector's time, of the block itself.
      const block = decodeServedBlock(entry);
      // Every request logs the same feature names: the join holds one list of them, not one per request.
      if (!sameNames(entry.names, heldNames)) heldNames = entry.names;
      const request: ServedRequest = { userId: sharedCopy(entry.userId), requestId: sharedCopy(entry.requestId), ts: entry.ts, names: heldNames, block, source };
      stats.servedRequests++;
      out.push({ kind: 'served-request', request, itemIds: entry.items.map(sharedCopy), source });
      return;
    }
    const parsed = parseInputEvent(record.value);
    if (!parsed.ok) throw new Error(`${parsed.error.field ? `${parsed.error.field}: ` : ''}${parsed.error.message}`);
    const event = parsed.value;
    if (event.type === 'item' || event.type === 'user') {
      stats.ignored++;
      return;
    }
    if (event.type === 'impression') {
      if (event.requestId === undefined || event.position === undefined) {
        throw new Error('an impression needs requestId and position to be labelled per request');
      }
      stats.impressions++;
      out.push(
        new HeldImpression(
          event.id,
          sharedCopy(event.userId),
          sharedCopy(event.itemId),
          event.ts,
          sharedCopy(event.requestId),
          event.position,
          source.topic,
          source.partition,
          source.offset,
        ),
      );
      return;
    }
    if (outcomeTypes.has(event.type)) {
      stats.outcomes++;
      out.push({ kind: 'outcome', event, source });
      return;
    }
    stats.ignored++;
  };
  return defineOperator<LogRecord, SampleJoinItem>(
    { name: 'parse-sample-inputs', kind: 'parse', params: { topics: [topics.events, topics.featureLog] }, sideOutputs: ['dead-letters'] },
    (source$) =>
      source$.pipe(
        map((batch) => {
          const out: SampleJoinItem[] = [];
          for (const record of batch.items) {
            stats.received++;
            try {
              parseRecord(record, out);
            } catch (error) {
              stats.invalid++;
              deadLetters.push(deadLetterOf(record, (error as Error).message));
            }
          }
          return withItems(batch, out);
        }),
      ),
  );
}

/** Empty batches every `intervalMs` while the source runs, so processing time can move the watermark. */
function processingTimeTicks<T>(intervalMs: number): Operator<T, T> {
  return defineOperator<T, T>({ name: 'ticks', kind: 'processing-time', params: { intervalMs } }, (source$) =>
    intervalMs <= 0
      ? source$
      : new Observable<Batch<T>>((subscriber) => {
          const timer = setInterval(() => subscriber.next({ items: [], watermark: -Infinity, ticket: new Ticket([]) }), intervalMs);
          const subscription = source$.subscribe({
            next: (batch) => subscriber.next(batch),
            error: (error: unknown) => {
              clearInterval(timer);
              subscriber.error(error);
            },
            complete: () => {
              clearInterval(timer);
              subscriber.complete();
            },
          });
          return () => {
            clearInterval(timer);
            subscription.unsubscribe();
          };
        }),
  );
}

export type IdleAdvanceOperator<T> = Operator<T, T> & { watermark: number };

/**
 * Keeps the event-time watermark, and once no items have arrived for `idleMs` moves it forward with processing time,
 * so held work completes when traffic stops. Ticks carry no watermark of their own; the last one seen is kept.
 */
function idleAdvance<T>(idleMs: number, clock: () => number): IdleAdvanceOperator<T> {
  let watermark = -Infinity;
  let eventWatermark = -Infinity;
  let lastDataAt = clock();
  const operator = defineOperator<T, T>({ name: 'idle-advance', kind: 'watermark', params: { idleMs } }, (source$) =>
    source$.pipe(
      map((batch) => {
        const now = clock();
        if (batch.items.length > 0) lastDataAt = now;
        if (batch.watermark > eventWatermark) eventWatermark = batch.watermark;
        const idleFor = now - lastDataAt - idleMs;
        const candidate = idleFor > 0 ? eventWatermark + idleFor : eventWatermark;
        if (candidate > watermark) watermark = candidate;
        return { items: batch.items, watermark, ticket: batch.ticket };
      }),
    ),
  );
  return Object.defineProperty(operator, 'watermark', {
    get: () => watermark,
    set: (value: number) => {
      watermark = value;
      eventWatermark = value;
      lastDataAt = clock();
    },
    enumerable: true,
  }) as IdleAdvanceOperator<T>;
}

/** Cascade labelling of the impressions that left the join in one batch, request by request. */
function labelRequests(
  policy: LabellingPolicy,
  deadLetters: DeadLetterSink,
  stats: SamplesStats,
  matcher: ServedFeatureMatcher,
): Operator<JoinedGroup<SampleJoinItem>, LabelledSample> {
  const positive = new Set<string>(policy.positiveTypes);
  const conversion = new Set<string>(policy.conversionTypes);
  return defineOperator<JoinedGroup<SampleJoinItem>, LabelledSample>(
    { name: 'label-cascade', kind: 'label', params: { ...policy }, sideOutputs: ['dead-letters'] },
    (source$) =>
      source$.pipe(
        map((batch) => {
          const byRequest = new Map<string, JoinedGroup<SampleJoinItem>[]>();
          for (const group of batch.items) {
            if (group.left.kind !== 'impression') continue;
            if (group.closedEarly) stats.closedEarly++;
            if (!group.left.hasServed) matcher.forget(group.left);
            const list = byRequest.get(group.left.requestId);
            if (list) list.push(group);
            else byRequest.set(group.left.requestId, [group]);
          }
          const out: LabelledSample[] = [];
          for (const groups of byRequest.values()) labelRequest(groups, out);
          return withItems(batch, out);
        }),
      ),
  );

  function labelRequest(groups: readonly JoinedGroup<SampleJoinItem>[], out: LabelledSample[]): void {
    const labelled = groups.map((group) => {
      const impression = group.left as HeldImpression;
      const outcomes: BehaviourType[] = [];
      const served = impression.served;
      for (const match of group.matches) {
        if (match.kind === 'outcome') {
          const requestId = match.event.requestId;
          if ((requestId === undefined || requestId === impression.requestId) && !outcomes.includes(match.event.type)) {
            outcomes.push(match.event.type);
          }
        }
      }
      return { impression, outcomes, served, positive: outcomes.some((t) => positive.has(t)) };
    });
    const lastPositive = labelled.reduce((deepest, l) => (l.positive && l.impression.position > deepest ? l.impression.position : deepest), -1);
    for (const { impression, outcomes, served, positive: isPositive } of labelled) {
      let label: 0 | 1 | undefined;
      if (isPositive) label = 1;
      else if (lastPositive < 0) label = policy.noClick === 'negative' ? 0 : undefined;
      else if (impression.position < lastPositive) label = 0;
      else label = policy.belowLastClick === 'negative' ? 0 : undefined;
      if (label === undefined) {
        stats.skipped++;
        continue;
      }
      if (!served) {
        stats.missingFeatures++;
        deadLetters.push(
          deadLetterOfItem(impression, `no served features logged for request ${impression.requestId} item ${impression.itemId}`),
        );
        continue;
      }
      out.push({
        id: `${impression.requestId}:${impression.position}`,
        requestId: impression.requestId,
        userId: impression.userId,
        itemId: impression.itemId,
        position: impression.position,
        ts: impression.ts,
        label,
        converted: outcomes.some((t) => conversion.has(t)) ? 1 : 0,
        outcomes,
        featuresTs: served.ts,
        // Shared, not copied: every sample of a request carries the one list, and nothing changes a sample once made.
        names: served.names as string[],
        values: Array.from(served.values),
      });
      stats.samples++;
      if (label === 1) stats.positives++;
      else stats.negatives++;
    }
  }
}

/** Appends each batch's samples before the batch is done, so its offsets are committed only after they are written. */
function appendSamples(sink: SampleSink, topic: string): Operator<LabelledSample, LabelledSample> {
  return defineOperator<LabelledSample, LabelledSample>({ name: 'append-samples', kind: 'sink', params: { topic } }, (source$) =>
    source$.pipe(
      concatMap(async (batch) => {
        await sink.append(batch.items);
        return batch;
      }),
    ),
  );
}

export interface SamplesPipelineParts {
  readonly pipeline: Pipeline<LogRecord, LabelledSample>;
  readonly stats: SamplesStats;
  /** Impressions and outcomes the attribution join holds now (served features wait outside it, for seconds). */
  heldItems(): number;
  /** Snapshot of join and watermark state, for a checkpoint. */
  snapshot(positions: readonly SourcePosition[]): SamplesCheckpoint;
  restore(checkpoint: SamplesCheckpoint): void;
}

/** Builds the samples pipeline and the hooks that snapshot and restore its state. */
export function samplesPipeline(options: SamplesPipelineOptions): SamplesPipelineParts {
  const topics = { ...DEFAULT_SAMPLES_TOPICS, ...options.topics };
  const policy: LabellingPolicy = { ...DEFAULT_LABELLING, ...options.labelling };
  const windowMs = options.attributionWindowMs ?? SAMPLES_DEFAULTS.attributionWindowMs;
  const idleMs = options.idleMs ?? SAMPLES_DEFAULTS.idleMs;
  const clock = options.clock ?? (() => performance.now());
  const stats = options.stats ?? emptyStats();
  const { deadLetters } = options;
  for (const type of [...policy.positiveTypes, ...policy.conversionTypes]) {
    if (!(BEHAVIOUR_TYPES as readonly string[]).includes(type) || type === 'impression') {
      throw new RangeError(`labelling: '${type}' is not an outcome type; use one of ${BEHAVIOUR_TYPES.filter((t) => t !== 'impression').join(', ')}`);
    }
  }
  if (!(windowMs > 0) || !Number.isFinite(windowMs)) throw new RangeError(`attributionWindowMs must be a positive number, got ${windowMs}`);
  const outcomeTypes = new Set<string>([...policy.positiveTypes, ...policy.conversionTypes]);

  const watermarks = eventTime<SampleJoinItem>({
    timestamp: timeOf,
    maxOutOfOrdernessMs: options.maxOutOfOrdernessMs ?? SAMPLES_DEFAULTS.maxOutOfOrdernessMs,
    idleTimeoutMs: idleMs,
    clock,
  });
  const advance = idleAdvance<SampleJoinItem>(idleMs, clock);
  const matcher = new ServedFeatureMatcher(windowMs, stats, deadLetters);
  const join = intervalJoin<SampleJoinItem>({
    name: 'attribute',
    mode: 'grouped',
    left: (item) => item.kind === 'impression',
    right: (item) => item.kind === 'outcome',
    key: keyOf,
    condition: sameItemAndRequest,
    timestamp: timeOf,
    lowerMs: 0,
    upperMs: windowMs,
    maxStateItems: options.maxStateItems ?? SAMPLES_DEFAULTS.maxStateItems,
    flushOnComplete: false,
    sideOutput: {
      push: (record: JoinSideRecord<SampleJoinItem>) => {
        const { item } = record;
        switch (record.reason) {
          case 'unmatched':
            stats.unattributedOutcomes++;
            return;
          case 'late':
            stats.late++;
            deadLetters.push(deadLetterOfItem(item, `late ${item.kind}: event time ${timeOf(item)} is below the watermark ${join.state.watermark}`));
            return;
          case 'state-full':
            stats.evicted++;
            deadLetters.push(deadLetterOfItem(item, `evicted ${item.kind}: the attribution join held its limit of items and no impression`));
            return;
          case 'invalid-timestamp':
            deadLetters.push(deadLetterOfItem(item, `${item.kind} has no finite event time`));
        }
      },
    },
  });

  const pipeline = Pipeline.from<LogRecord>('samples', { name: topics.events, kind: 'topic' }, { name: topics.featureLog, kind: 'topic' })
    .pipe(parseSampleInputs(topics, outcomeTypes, deadLetters, stats))
    .pipe(watermarks)
    .pipe(processingTimeTicks<SampleJoinItem>(options.tickIntervalMs ?? SAMPLES_DEFAULTS.tickIntervalMs))
    .pipe(advance)
    .pipe(attachServedFeatures(matcher))
    .pipe(join)
    .pipe(labelRequests(policy, deadLetters, stats, matcher))
    .pipe(appendSamples(options.sink, topics.samples))
    .to({ name: topics.samples, kind: 'topic', params: { key: 'userId', attributionWindowMs: windowMs } })
    .routeSide('dead-letters', { name: topics.deadLetters, kind: 'topic' });

  return {
    pipeline,
    stats,
    heldItems: () => join.state.size,
    snapshot: (positions) => ({
      positions,
      eventTime: watermarks.snapshot(),
      watermark: Number.isFinite(advance.watermark) ? advance.watermark : null,
      join: plainSnapshot(join.state.snapshot(), matcher.heldRows()),
      stats: { ...stats },
    }),
    restore: (checkpoint) => {
      watermarks.restore(checkpoint.eventTime);
      advance.watermark = checkpoint.watermark ?? -Infinity;
      const restored = restoredState(checkpoint.join);
      join.state.restore(restored.join);
      matcher.restore(checkpoint.join.watermark ?? -Infinity, restored.rows, restored.impressions);
      Object.assign(stats, checkpoint.stats);
    },
  };
}

export interface RunSamplesOptions extends Omit<SamplesPipelineOptions, 'sink' | 'deadLetters' | 'stats'> {
  readonly log: Log;
  /** Consumer group. Default `samples`. */
  readonly group?: string;
  /**
   * Where the join state is checkpointed. Default in memory (a crash loses at most one window of held impressions);
   * `null` keeps no checkpoint at all, for a log that does not outlive the process either, so no snapshot is taken.
   */
  readonly state?: SamplesStateStore | null;
  /** Least time between checkpoints (each snapshots the whole join state). Default 1000 ms. */
  readonly commitIntervalMs?: number;
  readonly maxBatchRecords?: number;
  /**
   * Batching of the consumer (see `ConsumerOptions.fetchMinRecords`): labels wait for their attribution window
   * anyway, so a few tens of milliseconds of batching cost nothing and spare the per-batch work. Default none.
   */
  readonly fetchMinRecords?: number;
  readonly fetchMaxWaitMs?: number;
}

export interface SamplesJob {
  readonly runner: PipelineRunner;
  readonly stats: SamplesStats;
  readonly deadLetters: DeadLetterBuffer;
  readonly pipeline: Pipeline<LogRecord, LabelledSample>;
  /** Impressions and outcomes the attribution join holds now (served features wait outside it, for seconds). */
  heldItems(): number;
  /** Finishes in-flight batches, checkpoints, commits and leaves the group. */
  stop(): Promise<void>;
}

/**
 * Runs the samples role: restores the checkpointed join state and seeks each assigned partition to the position
 * saved with it (without a checkpoint, the group's committed offset or the beginning). Samples are appended as each
 * batch completes; at each checkpoint dead letters are written, then the state with its positions, and only then
 * are the offsets committed. Delivery is at least once: after a crash, samples emitted since the last checkpoint are
 * emitted again (their `id` identifies the repeats).
 */
export async function runSamples(options: RunSamplesOptions): Promise<SamplesJob> {
  const topics = { ...DEFAULT_SAMPLES_TOPICS, ...options.topics };
  const deadLetters = new DeadLetterBuffer();
  const state = options.state === undefined ? new MemorySamplesStateStore() : options.state;
  const samples = new TopicSampleSink(options.log, topics.samples);
  // Dead letters go out with the samples of the same batch: batches that ticks produce reach no checkpoint.
  const sink: SampleSink = {
    append: async (batch) => {
      await samples.append(batch);
      await deadLetters.flush(options.log, topics.deadLetters);
    },
  };
  const parts = samplesPipeline({ ...options, topics, sink, deadLetters });
  const saved = await state?.load();
  if (saved) parts.restore(saved);
  const positions = new Map<string, SourcePosition>((saved?.positions ?? []).map((p) => [`${p.topic}/${p.partition}`, p]));

  const runner = new PipelineRunner(parts.pipeline as Pipeline<LogRecord, unknown>, {
    log: options.log,
    group: options.group ?? 'samples',
    topics: [topics.events, topics.featureLog],
    fromBeginning: true,
    commitIntervalMs: options.commitIntervalMs ?? 1000,
    ...(options.maxBatchRecords !== undefined ? { maxBatchRecords: options.maxBatchRecords } : {}),
    ...(options.fetchMinRecords !== undefined ? { fetchMinRecords: options.fetchMinRecords } : {}),
    ...(options.fetchMaxWaitMs !== undefined ? { fetchMaxWaitMs: options.fetchMaxWaitMs } : {}),
    onAssign: (assigned: readonly TopicPartition[], consumer: LogConsumer) => {
      for (const tp of assigned) {
        const stored = positions.get(`${tp.topic}/${tp.partition}`);
        if (stored) consumer.seek(tp, stored.offset);
      }
    },
    checkpoint: async (committable) => {
      for (const p of committable) positions.set(`${p.topic}/${p.partition}`, p);
      await deadLetters.flush(options.log, topics.deadLetters);
      // The snapshot copies every held impression, so it is taken only when something keeps it.
      if (state) await state.save(parts.snapshot([...positions.values()]));
    },
  });
  runner.start();
  return { runner, stats: parts.stats, deadLetters, pipeline: parts.pipeline, heldItems: parts.heldItems, stop: () => runner.stop() };
}
