import type { Log } from '../connectors/log.js';
import { encodeModelVersion, type Learner, type ModelVersion } from './learner.js';
import type { ModelRegistry, RegistryChange, RegistryEntry } from './registry.js';

/** Where serving versions go: the `models` topic, a local scorer, or both. */
export interface ModelSink {
  publish(version: ModelVersion): Promise<void> | void;
}

/** Appends each version to a Log topic (default `models`), keyed by model name so compaction keeps the newest. */
export class LogModelSink implements ModelSink {
  constructor(
    private readonly log: Log,
    private readonly topic = 'models',
  ) {}

  async publish(version: ModelVersion): Promise<void> {
    await this.log.append(this.topic, [{ key: version.model, value: encodeModelVersion(version) }]);
  }
}

/** Hands each version to an in-process subscriber, such as a scorer that swaps its model reference. */
export class CallbackModelSink implements ModelSink {
  constructor(private readonly callback: (version: ModelVersion) => void) {}

  publish(version: ModelVersion): void {
    this.callback(version);
  }
}

export interface ModelPublisherOptions<F> {
  readonly model: string;
  readonly learner: Learner<F>;
  readonly registry: ModelRegistry;
  readonly sinks: readonly ModelSink[];
  /** Publish at least this often while there are new samples. Default 5000 ms. */
  readonly everyMs?: number;
  /** Publish once this many samples were learned since the last version. Default 100,000. */
  readonly everySamples?: number;
  /** Default Date.now. */
  readonly clock?: () => number;
}

/**
 * Exports the learner as a new version every `everySamples` samples or `everyMs` (whichever comes first, and only
 * when something was learned), registers it, and sends whatever the registry then serves to every sink. Rollbacks
 * and pins reach the sinks the same way, so a scorer always follows the registry's serving version.
 */
export class ModelPublisher<F> {
  private readonly everyMs: number;
  private readonly everySamples: number;
  private readonly clock: () => number;
  private sinceLast = 0;
  private lastAt: number;
  private sequence = 0;
  private pending: Promise<void>[] = [];
  private timer: NodeJS.Timeout | undefined;
  private readonly unsubscribe: () => void;
  published = 0;

  constructor(private readonly options: ModelPublisherOptions<F>) {
    this.everyMs = options.everyMs ?? 5000;
    this.everySamples = options.everySamples ?? 100_000;
    this.clock = options.clock ?? Date.now;
    if (!(this.everyMs > 0) || !(this.everySamples > 0)) throw new RangeError('everyMs and everySamples must be positive');
    this.lastAt = this.clock();
    this.sequence = options.registry.list(options.model).length;
    this.unsubscribe = options.registry.onChange((change) => {
      if (change.model === options.model) this.send(change);
    });
  }

  /** Counts samples the learner has learned since the last version. */
  recordLearned(count: number): void {
    this.sinceLast += count;
  }

  /**
   * Starts the cadence over without publishing, for when the learner was just restored to the serving version (after
   * a rollback): publishing that state again would only copy it.
   */
  resetCadence(): void {
    this.sinceLast = 0;
    this.lastAt = this.clock();
  }

  due(now = this.clock()): boolean {
    return this.sinceLast >= this.everySamples || (this.sinceLast > 0 && now - this.lastAt >= this.everyMs);
  }

  /** Publishes when due; resolves with the new entry, or undefined when nothing was due. */
  async maybePublish(): Promise<RegistryEntry | undefined> {
    return this.due() ? this.publishNow() : undefined;
  }

  /** Exports and registers a version now, then waits until every sink has it. */
  async publishNow(): Promise<RegistryEntry> {
    const now = this.clock();
    const { model, learner, registry } = this.options;
    this.sequence++;
    const version = learner.export({
      model,
      version: `v${this.sequence}-${now}`,
      parent: registry.serving(model)?.version ?? null,
      createdAt: now,
    });
    this.sinceLast = 0;
    this.lastAt = now;
    const entry = registry.register(version);
    this.published++;
    await this.flush();
    return entry;
  }

  /** Waits for every sink delivery started so far; rejects with the first failure. */
  async flush(): Promise<void> {
    const pending = this.pending;
    this.pending = [];
    await Promise.all(pending);
  }

  /** Also publishes on a timer, so the last samples before traffic stops still reach serving within `everyMs`. */
  start(onError: (error: Error) => void): void {
    this.stop();
    this.timer = setInterval(() => {
      if (!this.due()) return;
      this.publishNow().catch((error: unknown) => onError(new Error(`publishing model ${this.options.model} failed`, { cause: error })));
    }, this.everyMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  close(): void {
    this.stop();
    this.unsubscribe();
  }

  private send(change: RegistryChange): void {
    for (const sink of this.options.sinks) {
      const delivery = Promise.resolve()
        .then(() => sink.publish(change.serving.payload))
        .catch((cause: unknown) => {
          throw new Error(`sending ${change.model}@${change.serving.version} (${change.cause}) to a model sink failed`, { cause });
        });
      // Flush reports the failure; until then it must not count as unhandled.
      delivery.catch(() => undefined);
      this.pending.push(delivery);
    }
  }
}
