import type { ChainableCommander, Redis } from 'ioredis';
import { partitionId, type LogConsumer, type TopicPartition } from '../log.js';
import type { SourcePosition } from '../../operators/batch.js';

/**
 * Offsets kept in Redis next to the state they cover, for exactly-once state over an at-least-once log: a checkpoint
 * writes state changes and positions in one MULTI/EXEC, and a newly assigned partition seeks to the stored position,
 * so no record is counted twice or lost whatever the log's own committed offsets say.
 */
export class RedisOffsets {
  /** `key` is a hash of `topic/partition` -> next offset, one per consumer group. */
  constructor(
    private readonly redis: Redis,
    readonly key: string,
  ) {}

  /** Adds the positions to a transaction that also carries the state they cover. */
  write(multi: ChainableCommander, positions: readonly SourcePosition[]): ChainableCommander {
    if (positions.length === 0) return multi;
    return multi.hset(this.key, Object.fromEntries(positions.map((p) => [partitionId(p), String(p.offset)])));
  }

  async read(partitions: readonly TopicPartition[]): Promise<(number | undefined)[]> {
    if (partitions.length === 0) return [];
    const stored = await this.redis.hmget(this.key, ...partitions.map(partitionId));
    return stored.map((s) => (s === null ? undefined : Number(s)));
  }

  /** Seeks each partition to its stored position; one with none starts where the group's committed offset says. */
  async restore(partitions: readonly TopicPartition[], consumer: LogConsumer): Promise<void> {
    const stored = await this.read(partitions);
    partitions.forEach((p, i) => {
      const offset = stored[i];
      if (offset !== undefined) consumer.seek(p, offset);
    });
  }
}

/** Executes a MULTI and fails, with the first command's error as the cause, unless every command succeeded. */
export async function execAtomically(multi: ChainableCommander): Promise<void> {
  const results = await multi.exec();
  if (results === null) throw new Error('Redis transaction aborted');
  const failed = results.find(([error]) => error !== null);
  if (failed) throw new Error('Redis transaction failed', { cause: failed[0] });
}
