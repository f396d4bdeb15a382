/**
 * The typed client for services that use Eddy: push behaviour and metadata events to the right topic with the right
 * key, subscribe to recommendations (all, or one user's), and ask for recommendations over HTTP.
 *
 * ```ts
 * const log = await createLog(kafkaConfigFromEnv());
 * const eddy = new EddyClient({ log, httpUrl: 'http://eddy:8080' });
 * await eddy.push({ id: 'e1', type: 'click', userId: 'u1', itemId: 'i9', ts: Date.now() });
 * const { items } = await eddy.recommend({ requestId: 'r1', userId: 'u1', count: 10 });
 * const sub = eddy.subscribe({ userId: 'u1', onRecommendation: (r) => console.log(r.items) });
 * await sub.close();
 * ```
 */
import { randomUUID } from 'node:crypto';
import type { AppendResult, Log, LogConsumer, ProducerRecord } from './log.js';
import {
  isBehaviourEvent,
  parseInputEvent,
  parseRecommendationRequest,
  parseRecommendationResponse,
  type InputEvent,
  type RecommendationRequest,
  type RecommendationResponse,
  type ValidationError,
} from '../schema/events.js';

export interface ClientTopics {
  readonly events: string;
  readonly items: string;
  readonly users: string;
  readonly recommendations: string;
}

export const DEFAULT_CLIENT_TOPICS: ClientTopics = {
  events: 'events',
  items: 'items',
  users: 'users',
  recommendations: 'recommendations',
};

export interface EddyClientOptions {
  /** The log Eddy runs on: embedded (same process), kafkajs or confluent. Needed for `push` and `subscribe`. */
  readonly log?: Log;
  /** Topic names, where they differ from the defaults (`events`, `items`, `users`, `recommendations`). */
  readonly topics?: Partial<ClientTopics>;
  /** Base URL of an Eddy `serve` role, e.g. `http://eddy:8080`. Needed for `recommend`. */
  readonly httpUrl?: string;
  /** Default the global `fetch`. */
  readonly fetch?: typeof fetch;
  /** Longest an HTTP request may take. Default 5,000 ms. */
  readonly timeoutMs?: number;
}

/** An event or request the schema refuses; `issue.field` names the offending field. */
export class EddyValidationError extends Error {
  constructor(
    readonly issue: ValidationError,
    readonly index?: number,
  ) {
    super(`invalid ${index === undefined ? 'value' : `event #${index}`}: ${issue.field ? `${issue.field}: ` : ''}${issue.message}`);
    this.name = 'EddyValidationError';
  }
}

export class EddyHttpError extends Error {
  constructor(
    readonly status: number,
    readonly body: string,
  ) {
    super(`Eddy answered ${status}: ${body.slice(0, 500)}`);
    this.name = 'EddyHttpError';
  }
}

export interface SubscribeOptions {
  /** Only this user's recommendations. Default: everyone's. */
  readonly userId?: string;
  /** Consumer group; subscribers sharing one split the stream. Default: a fresh group, so each gets everything. */
  readonly group?: string;
  /** Start at the oldest kept recommendation instead of new ones only. Default false. */
  readonly fromBeginning?: boolean;
  readonly onRecommendation: (response: RecommendationResponse) => Promise<void> | void;
  /** A record on the topic that is not a valid response. Default: rethrown, which ends the subscription. */
  readonly onInvalid?: (error: EddyValidationError, raw: string) => void;
  /** The subscription failed (callback or log error); it has stopped. */
  readonly onError?: (error: unknown) => void;
}

export interface Subscription {
  /** Resolves once the subscription has stopped, by `close()` or an error. */
  readonly done: Promise<void>;
  close(): Promise<void>;
}

/** Which topic an input event goes to, and its key: behaviour and user events by user, item events by item. */
export function routeEvent(event: InputEvent, topics: ClientTopics = DEFAULT_CLIENT_TOPICS): { topic: string; key: string } {
  if (isBehaviourEvent(event)) return { topic: topics.events, key: event.userId };
  if (event.type === 'item') return { topic: topics.items, key: event.itemId };
  return { topic: topics.users, key: event.userId };
}

export class EddyClient {
  readonly topics: ClientTopics;
  private readonly subscriptions = new Set<Subscription>();

  constructor(private readonly options: EddyClientOptions) {
    this.topics = { ...DEFAULT_CLIENT_TOPICS, ...options.topics };
  }

  /**
   * Validates every event first (nothing is sent if one is invalid), then appends each to its topic keyed as Eddy
   * partitions it. Resolves with where each event landed, in input order.
   */
  async push(events: InputEvent | readonly InputEvent[]): Promise<AppendResult[]> {
    const log = this.requireLog('push');
    const list: readonly unknown[] = Array.isArray(events) ? events : [events];
    const byTopic = new Map<string, { index: number; record: ProducerRecord }[]>();
    list.forEach((raw, index) => {
      const parsed = parseInputEvent(raw);
      if (!parsed.ok) throw new EddyValidationError(parsed.error, index);
      const { topic, key } = routeEvent(parsed.value, this.topics);
      const records = byTopic.get(topic) ?? [];
      records.push({ index, record: { key, value: JSON.stringify(parsed.value) } });
      byTopic.set(topic, records);
    });
    const results: AppendResult[] = new Array(list.length);
    await Promise.all(
      [...byTopic].map(async ([topic, records]) => {
        const appended = await log.append(
          topic,
          records.map((r) => r.record),
        );
        records.forEach((r, i) => (results[r.index] = appended[i]!));
      }),
    );
    return results;
  }

  /** Streams recommendations as the serving pipeline publishes them. */
  subscribe(options: SubscribeOptions): Subscription {
    const log = this.requireLog('subscribe');
    const consumer: LogConsumer = log.consumer({
      group: options.group ?? `eddy-client-${randomUUID()}`,
      topics: [this.topics.recommendations],
      fromBeginning: options.fromBeginning ?? false,
      pollTimeoutMs: 200,
    });
    let running = true;
    const loop = async () => {
      while (running) {
        const batch = await consumer.next();
        if (batch === undefined) return;
        if (batch === null) continue;
        for (const record of batch.records) {
          // Recommendations are keyed by user, so the key filters without parsing other users' responses.
          if (options.userId !== undefined && record.key !== options.userId) continue;
          const parsed = parseRecommendationResponse(record.value);
          if (!parsed.ok) {
            const error = new EddyValidationError(parsed.error);
            if (!options.onInvalid) throw error;
            options.onInvalid(error, record.value);
            continue;
          }
          if (options.userId !== undefined && parsed.value.userId !== options.userId) continue;
          await options.onRecommendation(parsed.value);
        }
        await consumer.commit([{ topic: batch.topic, partition: batch.partition, offset: batch.records.at(-1)!.offset + 1 }]);
      }
    };
    const done = loop()
      .catch((error: unknown) => {
        running = false;
        options.onError?.(error);
      })
      .finally(() => consumer.close());
    const subscription: Subscription = {
      done: done.then(() => undefined),
      close: async () => {
        running = false;
        await done;
        this.subscriptions.delete(subscription);
      },
    };
    this.subscriptions.add(subscription);
    return subscription;
  }

  /** `POST /v1/recommend`: validates the request, and the response before handing it back. */
  async recommend(request: RecommendationRequest, init: { signal?: AbortSignal } = {}): Promise<RecommendationResponse> {
    if (!this.options.httpUrl) throw new Error('EddyClient.recommend needs the httpUrl option');
    const valid = parseRecommendationRequest(request);
    if (!valid.ok) throw new EddyValidationError(valid.error);
    const timeout = AbortSignal.timeout(this.options.timeoutMs ?? 5000);
    const signal = init.signal ? AbortSignal.any([init.signal, timeout]) : timeout;
    const doFetch = this.options.fetch ?? fetch;
    let response: Response;
    try {
      response = await doFetch(new URL('/v1/recommend', this.options.httpUrl), {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json' },
        body: JSON.stringify(valid.value),
        signal,
      });
    } catch (error) {
      throw new Error(`cannot reach Eddy at ${this.options.httpUrl}`, { cause: error });
    }
    const body = await response.text();
    if (!response.ok) throw new EddyHttpError(response.status, body);
    const parsed = parseRecommendationResponse(body);
    if (!parsed.ok) throw new EddyValidationError(parsed.error);
    return parsed.value;
  }

  /** Stops every subscription; the log stays open for its owner to close. */
  async close(): Promise<void> {
    await Promise.all([...this.subscriptions].map((s) => s.close()));
  }

  private requireLog(what: string): Log {
    if (!this.options.log) throw new Error(`EddyClient.${what} needs the log option`);
    return this.options.log;
  }
}
