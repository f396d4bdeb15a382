/**
 * One Log over two: the topics named `local` live in one log, every other topic in the other. The samples thread
 * keeps the samples topic in a log of its own this way, since the trainer beside it is that topic's only reader:
 * fifteen thousand samples a second at 1,500 requests a second would otherwise cross to the serving thread, be held
 * in its heap, and cross back.
 *
 * A consumer reads topics of one side only: a group spread over two logs could not commit as one.
 */
import type { ConsumerOptions, Log, LogConsumer, ProducerRecord, TopicConfig } from './log.js';

export class RoutedLog implements Log {
  readonly kind: Log['kind'];
  private readonly localTopics: ReadonlySet<string>;

  /** Closing this log closes `local` only: `rest` belongs to whoever handed it over. */
  constructor(
    private readonly local: Log,
    localTopics: readonly string[],
    private readonly rest: Log,
  ) {
    this.kind = rest.kind;
    this.localTopics = new Set(localTopics);
  }

  private logOf(topic: string): Log {
    return this.localTopics.has(topic) ? this.local : this.rest;
  }

  ensureTopic(topic: string, config: TopicConfig): Promise<void> {
    return this.logOf(topic).ensureTopic(topic, config);
  }

  partitionCount(topic: string): Promise<number> {
    return this.logOf(topic).partitionCount(topic);
  }

  append(topic: string, records: readonly ProducerRecord[]) {
    return this.logOf(topic).append(topic, records);
  }

  offsets(topic: string) {
    return this.logOf(topic).offsets(topic);
  }

  consumer(options: ConsumerOptions): LogConsumer {
    const local = options.topics.filter((topic) => this.localTopics.has(topic));
    if (local.length > 0 && local.length < options.topics.length) {
      throw new Error(`group ${options.group} reads ${local.join(', ')} from one log and ${options.topics.filter((t) => !this.localTopics.has(t)).join(', ')} from another`);
    }
    return (local.length > 0 ? this.local : this.rest).consumer(options);
  }

  close(): Promise<void> {
    return this.local.close();
  }
}
