import { concatMap, map } from 'rxjs';
import type { Registry } from 'prom-client';
import type { EddyMetrics } from '../connectors/observability/metrics.js';
import type { FeatureStore } from '../connectors/feature-store.js';
import { routeEvent } from '../connectors/client.js';
import type { EddyService, IngestResult, Readiness } from '../connectors/http.js';
import type { Log, LogRecord } from '../connectors/log.js';
import type { Experiments } from '../models/ab/experiments.js';
import { withItems } from '../operators/batch.js';
import { DeadLetterBuffer, deadLetterOf, parseRecords, type DeadLetterSink } from '../operators/dead-letters.js';
import { featureStoreReadiness } from '../operators/features/metrics.js';
import { defineOperator, type Operator } from '../operators/operator.js';
import { Pipeline } from '../operators/pipeline.js';
import { PipelineRunner } from '../operators/runtime.js';
import {
  isBehaviourEvent,
  parseInputEvent,
  parseRecommendationRequest,
  type InputEvent,
  type RecommendationRequest,
  type RecommendationResponse,
} from '../schema/events.js';
import type { RecallStack } from './recall-stack.js';
import type { ServingPipeline } from './serving.js';

export interface ServeTopics {
  readonly events: string;
  readonly items: string;
  readonly users: string;
  readonly requests: string;
  readonly recommendations: string;
  readonly deadLetters: string;
}

/** The topic names of DESIGN.md, for logs that do not take them from the configuration. */
export const DEFAULT_SERVE_TOPICS: ServeTopics = {
  events: 'events',
  items: 'items',
  users: 'users',
  requests: 'recommendation-requests',
  recommendations: 'recommendations',
  deadLetters: 'dead-letters',
};

export interface ServiceOptions {
  readonly log: Log;
  readonly topics: ServeTopics;
  readonly serving: ServingPipeline;
  readonly stack: RecallStack;
  readonly store: FeatureStore;
  readonly experiments: Experiments;
  readonly registry: Registry;
  readonly metrics: EddyMetrics;
  /** Extra readiness checks (the log, running pipelines). */
  readonly checks?: () => Readiness['checks'];
}

/** The EddyService the HTTP layer (and the in-process simulator) calls. */
export function createService(options: ServiceOptions): EddyService {
  const { log, topics, serving, stack, store, experiments, registry, metrics } = options;
  return {
    async ingest(events): Promise<IngestResult> {
      const rejected: { index: number; field: string; error: string }[] = [];
      const byTopic = new Map<string, { key: string; value: string }[]>();
      events.forEach((raw, index) => {
        const parsed = parseInputEvent(raw);
        if (!parsed.ok) {
          rejected.push({ index, field: parsed.error.field, error: parsed.error.message });
          return;
        }
        const { topic, key } = routeEvent(parsed.value, topics);
        const list = byTopic.get(topic) ?? [];
        list.push({ key, value: JSON.stringify(parsed.value) });
        byTopic.set(topic, list);
      });
      for (const [topic, records] of byTopic) await log.append(topic, records);
      return { accepted: events.length - rejected.length, rejected };
    },
    async recommend(request) {
      const started = performance.now();
      const response = await serving.recommend(request);
      metrics.recommendLatency.labels(response.variant).observe((performance.now() - started) / 1000);
      return response;
    },
    async similar(itemId, count) {
      if (!stack.catalogue.has(itemId) && !stack.embeddings.has(itemId)) return undefined;
      const now = Date.now();
      const neighbours = stack.covisitation.neighbours(itemId, count, now);
      const seen = new Set(neighbours.map((n) => n.itemId));
      const fill = stack.embedding.similar(itemId, count, now, (id) => id !== itemId && !seen.has(id));
      return [...neighbours, ...fill].slice(0, count).map((c) => ({ itemId: c.itemId, score: c.score, source: c.source }));
    },
    experiment(id) {
      return experiments.ids.includes(id) ? experiments.report(id) : undefined;
    },
    async readiness() {
      const storeCheck = featureStoreReadiness(store);
      const checks = { store: { ok: storeCheck.ready, ...storeCheck }, ...options.checks?.() };
      return { ready: Object.values(checks).every((c) => c.ok), checks };
    },
    async metrics() {
      return { contentType: registry.contentType, body: await registry.metrics() };
    },
  };
}

/** Feeds what serving keeps in memory (recall indices, experiment counters) and tells the pusher who acted. */
function observeForServing(stack: RecallStack, experiments: Experiments, onBehaviour?: (userId: string) => void): Operator<InputEvent, InputEvent> {
  return defineOperator({ name: 'observe-serving-state', kind: 'state', params: { recall: true, experiments: experiments.ids } }, (source$) =>
    source$.pipe(
      map((batch) => {
        for (const event of batch.items) {
          if (event.type === 'user') continue;
          stack.recaller.observe(event);
          if (isBehaviourEvent(event)) {
            experiments.observe(event);
            if (event.type !== 'impression') onBehaviour?.(event.userId);
          }
        }
        return batch;
      }),
    ),
  );
}

export function servingStatePipeline(stack: RecallStack, experiments: Experiments, deadLetters: DeadLetterSink, topics: ServeTopics, onBehaviour?: (userId: string) => void) {
  return Pipeline.from<LogRecord>('serving-state', { name: topics.events, kind: 'topic' }, { name: topics.items, kind: 'topic' })
    .pipe(parseRecords(parseInputEvent, deadLetters, 'parse-input'))
    .pipe(observeForServing(stack, experiments, onBehaviour))
    .to({ name: 'recall-indices', kind: 'memory' }, { name: 'experiment-counters', kind: 'memory' })
    .routeSide('dead-letters', { name: topics.deadLetters, kind: 'topic' });
}

function answerRequests(serving: ServingPipeline, deadLetters: DeadLetterSink, raw: Map<RecommendationRequest, LogRecord>): Operator<RecommendationRequest, RecommendationResponse> {
  return defineOperator({ name: 'recommend', kind: 'serve', sideOutputs: ['dead-letters'] }, (source$) =>
    source$.pipe(
      concatMap(async (batch) => {
        const responses: RecommendationResponse[] = [];
        for (const request of batch.items) {
          try {
            responses.push(await serving.recommend(request));
          } catch (error) {
            const record = raw.get(request);
            if (record) deadLetters.push(deadLetterOf(record, `recommend failed: ${error instanceof Error ? error.message : String(error)}`));
          } finally {
            raw.delete(request);
          }
        }
        return withItems(batch, responses);
      }),
    ),
  );
}

function publishResponses(log: Log, topic: string, onPublished?: (count: number) => void): Operator<RecommendationResponse, RecommendationResponse> {
  return defineOperator({ name: 'publish', kind: 'sink', params: { topic } }, (source$) =>
    source$.pipe(
      concatMap(async (batch) => {
        if (batch.items.length > 0) {
          await log.append(topic, batch.items.map((r) => ({ key: r.userId, value: JSON.stringify(r) })));
          onPublished?.(batch.items.length);
        }
        return batch;
      }),
    ),
  );
}

/** `recommendation-requests` -> serving -> `recommendations`, keyed by user, each response carrying its request id. */
export function requestsPipeline(log: Log, serving: ServingPipeline, deadLetters: DeadLetterSink, topics: ServeTopics, onPublished?: (count: number) => void) {
  const raw = new Map<RecommendationRequest, LogRecord>();
  const parse = defineOperator<LogRecord, RecommendationRequest>({ name: 'parse-request', kind: 'parse', sideOutputs: ['dead-letters'] }, (source$) =>
    source$.pipe(
      map((batch) => {
        const out: RecommendationRequest[] = [];
        for (const record of batch.items) {
          const parsed = parseRecommendationRequest(record.value);
          if (parsed.ok) {
            raw.set(parsed.value, record);
            out.push(parsed.value);
          } else {
            deadLetters.push(deadLetterOf(record, `${parsed.error.field ? `${parsed.error.field}: ` : ''}${parsed.error.message}`));
          }
        }
        return withItems(batch, out);
      }),
    ),
  );
  return Pipeline.from<LogRecord>('requests', { name: topics.requests, kind: 'topic' })
    .pipe(parse)
    .pipe(answerRequests(serving, deadLetters, raw))
    .pipe(publishResponses(log, topics.recommendations, onPublished))
    .to({ name: topics.recommendations, kind: 'topic' })
    .routeSide('dead-letters', { name: topics.deadLetters, kind: 'topic' });
}

/**
 * Proactive push: after a user's behaviour event, a refreshed list for that user is published to `recommendations`,
 * at most once per `debounceMs` per user, so a burst of clicks gives one push after it settles.
 */
export class ProactivePusher {
  private readonly due = new Map<string, NodeJS.Timeout>();
  /** Users whose push is due, each once, served a few at a time so a burst of events never starves requests. */
  private readonly ready = new Set<string>();
  private active = 0;
  private closed = false;
  pushed = 0;

  constructor(
    private readonly log: Log,
    private readonly serving: ServingPipeline,
    private readonly topic: string,
    private readonly debounceMs: number,
    private readonly count = 10,
    private readonly onError: (error: unknown) => void = () => undefined,
    private readonly onPushed?: () => void,
    private readonly maxConcurrent = 2,
  ) {}

  notify(userId: string): void {
    if (this.closed || this.debounceMs <= 0) return;
    const pending = this.due.get(userId);
    if (pending) clearTimeout(pending);
    this.due.set(
      userId,
      setTimeout(() => {
        this.due.delete(userId);
        this.ready.add(userId);
        this.drain();
      }, this.debounceMs),
    );
  }

  private drain(): void {
    while (!this.closed && this.active < this.maxConcurrent && this.ready.size > 0) {
      const userId = this.ready.values().next().value as string;
      this.ready.delete(userId);
      this.active++;
      void this.push(userId)
        .catch(this.onError)
        .finally(() => {
          this.active--;
          this.drain();
        });
    }
  }

  private async push(userId: string): Promise<void> {
    const requestId = `push-${userId}-${Date.now()}`;
    const response = await this.serving.recommend({ requestId, userId, count: this.count });
    await this.log.append(this.topic, [{ key: userId, value: JSON.stringify({ ...response, push: true }) }]);
    this.pushed++;
    this.onPushed?.();
  }

  close(): void {
    this.closed = true;
    for (const timer of this.due.values()) clearTimeout(timer);
    this.due.clear();
    this.ready.clear();
  }
}

/** Runs a pipeline over a consumer group with dead letters flushed at each checkpoint. */
export function runWithDeadLetters(
  log: Log,
  pipeline: Pipeline<LogRecord, unknown>,
  deadLetters: DeadLetterBuffer,
  options: { group: string; topics: readonly string[]; deadLetterTopic: string; fromBeginning?: boolean; fetchMinRecords?: number; fetchMaxWaitMs?: number },
): PipelineRunner {
  return new PipelineRunner(pipeline, {
    log,
    group: options.group,
    topics: options.topics,
    fromBeginning: options.fromBeginning ?? true,
    ...(options.fetchMinRecords !== undefined ? { fetchMinRecords: options.fetchMinRecords } : {}),
    ...(options.fetchMaxWaitMs !== undefined ? { fetchMaxWaitMs: options.fetchMaxWaitMs } : {}),
    checkpoint: () => deadLetters.flush(log, options.deadLetterTopic),
  }).start();
}
