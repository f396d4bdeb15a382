import { map } from 'rxjs';
import type { Batch } from './batch.js';
import { defineOperator, type Operator } from './operator.js';

export interface EventTimeOptions<T> {
  /** The item's event time in ms. Items whose time is not a finite number do not move the watermark. */
  readonly timestamp: (item: T) => number;
  /** How far behind the newest event of a partition an event may still arrive without being late. */
  readonly maxOutOfOrdernessMs: number;
  /**
   * A partition that has delivered no batch for this long (processing time) stops holding the watermark back, so one
   * quiet partition cannot stall every window. It holds it again as soon as it delivers. Default: never idle.
   */
  readonly idleTimeoutMs?: number;
  /** Processing-time clock in ms, for idleness. Default `performance.now`. */
  readonly clock?: () => number;
  readonly name?: string;
}

/** JSON-serialisable watermark state; `null` stands for -Infinity, which JSON cannot carry. */
export interface EventTimeSnapshot {
  readonly watermark: number | null;
  /** `[partition, newest event time seen]`, partition as `topic/partition`. */
  readonly partitions: readonly (readonly [string, number | null])[];
}

export type EventTimeOperator<T> = Operator<T, T> & {
  /** The watermark set on the last batch (-Infinity before the first). */
  readonly watermark: number;
  snapshot(): EventTimeSnapshot;
  /** Replaces the state with a snapshot's; every restored partition counts as active from now. */
  restore(snapshot: EventTimeSnapshot): void;
};

interface PartitionClock {
  maxEventTime: number;
  lastActiveAt: number;
}

/** The partition a batch without positions (tests, HTTP, replays) counts as. */
const IMPLICIT_PARTITION = '';

/**
 * Sets each batch's watermark from event time, bounded out-of-orderness style: per source partition (from the
 * batch's ticket positions) the newest event time seen minus `maxOutOfOrdernessMs`, and for the batch the least of
 * these over the partitions that are not idle. Watermarks never go backwards. The incoming watermark is replaced.
 *
 * A batch whose ticket spans several partitions advances each of them with its newest event time. Partitions are
 * known once they deliver a batch; until then they cannot hold the watermark back. The state is per operator
 * instance: subscribe each instance once.
 */
export function eventTime<T>(options: EventTimeOptions<T>): EventTimeOperator<T> {
  const { timestamp, maxOutOfOrdernessMs } = options;
  const idleTimeoutMs = options.idleTimeoutMs ?? Infinity;
  const clock = options.clock ?? (() => performance.now());
  if (!(maxOutOfOrdernessMs >= 0)) throw new RangeError(`maxOutOfOrdernessMs must be >= 0, got ${maxOutOfOrdernessMs}`);
  if (!(idleTimeoutMs >= 0)) throw new RangeError(`idleTimeoutMs must be >= 0, got ${idleTimeoutMs}`);

  let partitions = new Map<string, PartitionClock>();
  let watermark = -Infinity;

  const touch = (id: string, newest: number, now: number): void => {
    const partition = partitions.get(id);
    if (partition === undefined) partitions.set(id, { maxEventTime: newest, lastActiveAt: now });
    else {
      if (newest > partition.maxEventTime) partition.maxEventTime = newest;
      partition.lastActiveAt = now;
    }
  };

  const assign = (batch: Batch<T>): Batch<T> => {
    let newest = -Infinity;
    const items = batch.items;
    for (let i = 0; i < items.length; i++) {
      const ts = timestamp(items[i]!);
      if (ts > newest && ts !== Infinity) newest = ts;
    }
    const now = clock();
    const positions = batch.ticket.positions;
    if (positions.length === 0) touch(IMPLICIT_PARTITION, newest, now);
    else for (const p of positions) touch(`${p.topic}/${p.partition}`, newest, now);

    let least = Infinity;
    for (const partition of partitions.values()) {
      if (now - partition.lastActiveAt > idleTimeoutMs) continue;
      if (partition.maxEventTime < least) least = partition.maxEventTime;
    }
    const candidate = least - maxOutOfOrdernessMs;
    if (least !== Infinity && candidate > watermark) watermark = candidate;
    return { items: batch.items, watermark, ticket: batch.ticket };
  };

  const operator = defineOperator<T, T>(
    {
      name: options.name ?? 'event-time',
      kind: 'watermark',
      params: { maxOutOfOrdernessMs, ...(Number.isFinite(idleTimeoutMs) ? { idleTimeoutMs } : {}) },
    },
    (source$) => source$.pipe(map(assign)),
  );
  return Object.defineProperties(operator, {
    watermark: { get: () => watermark, enumerable: true },
    snapshot: {
      value: (): EventTimeSnapshot => ({
        watermark: finiteOrNull(watermark),
        partitions: [...partitions].map(([id, p]) => [id, finiteOrNull(p.maxEventTime)] as const),
      }),
    },
    restore: {
      value: (snapshot: EventTimeSnapshot): void => {
        const now = clock();
        watermark = snapshot.watermark ?? -Infinity;
        partitions = new Map(snapshot.partitions.map(([id, max]) => [id, { maxEventTime: max ?? -Infinity, lastActiveAt: now }]));
      },
    },
  }) as EventTimeOperator<T>;
}

function finiteOrNull(value: number): number | null {
  return Number.isFinite(value) ? value : null;
}
