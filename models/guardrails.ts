import type { ModelVersion, Predictor, Sample } from './learner.js';
import { RollingMetrics, type MetricsSnapshot } from './metrics.js';
import type { ModelRegistry, RegistryChange } from './registry.js';

/**
 * Progressive validation and automatic rollback for one model. Every sample is scored, before anything learns from
 * it, by the serving version and by that version's parent, both as published (frozen snapshots), so the two are
 * compared on exactly the same samples. Each version gets a rolling window of logloss and AUC. Once the serving
 * version has `minSamples` scored, `check()` rolls it back to its parent if its rolling logloss exceeds the parent's
 * by both `maxLoglossRatio` and `minLoglossIncrease`. A version the loader rejects (wrong kind, broken tensors) is
 * rolled back at the next check without waiting for samples.
 *
 * Publish versions no faster than every `minSamples` samples: a version replaced before it was judged is never judged.
 */
export interface GuardrailOptions {
  /** Samples in each rolling window. Default 5000. */
  readonly window?: number;
  /** Samples the serving version must have scored (alongside its parent) before it can be rolled back. Default 1000. */
  readonly minSamples?: number;
  /** Roll back when serving logloss > parent logloss x this. Default 1.1 (10% worse). */
  readonly maxLoglossRatio?: number;
  /** ... and serving logloss - parent logloss > this, so tiny losses do not trip the ratio. Default 0.005. */
  readonly minLoglossIncrease?: number;
}

export interface RollbackDecision {
  readonly model: string;
  readonly rolledBack: string;
  readonly restored: string;
  readonly servingLogloss: number;
  readonly parentLogloss: number;
  readonly samples: number;
  readonly reason: string;
}

interface Scored<F> {
  readonly version: string;
  readonly predictor: Predictor<F>;
}

export class Guardrails<F> {
  private readonly window: number;
  private readonly minSamples: number;
  private readonly maxLoglossRatio: number;
  private readonly minLoglossIncrease: number;
  private readonly byVersion = new Map<string, RollingMetrics>();
  private serving: Scored<F> | undefined;
  private parent: Scored<F> | undefined;
  /** The parent scored on the samples the serving version has scored since it started serving. */
  private parentShadow: RollingMetrics;
  private servingSince: RollingMetrics;
  private readonly unsubscribe: () => void;
  private loadError: { version: string; error: Error } | undefined;
  /** The serving version's AUC as last recorded in the registry, and the samples it had scored then. */
  private recordedAuc = { version: '', total: 0, auc: NaN };

  constructor(
    private readonly registry: ModelRegistry,
    readonly model: string,
    private readonly load: (version: ModelVersion) => Predictor<F>,
    options: GuardrailOptions = {},
  ) {
    this.window = options.window ?? 5000;
    this.minSamples = options.minSamples ?? 1000;
    this.maxLoglossRatio = options.maxLoglossRatio ?? 1.1;
    this.minLoglossIncrease = options.minLoglossIncrease ?? 0.005;
    if (this.minSamples > this.window) throw new RangeError('guardrail minSamples must not exceed window');
    this.parentShadow = new RollingMetrics(this.window);
    this.servingSince = new RollingMetrics(this.window);
    this.unsubscribe = registry.onChange((change) => {
      if (change.model === model) this.follow(change);
    });
    const current = registry.serving(model);
    if (current) this.follow({ model, cause: 'register', serving: current, previous: undefined });
  }

  private follow(change: RegistryChange): void {
    const entry = change.serving;
    this.parentShadow = new RollingMetrics(this.window);
    this.servingSince = new RollingMetrics(this.window);
    this.loadError = undefined;
    const parent = entry.parent === null ? undefined : this.registry.get(this.model, entry.parent);
    try {
      this.parent = parent ? { version: parent.version, predictor: this.load(parent.payload) } : undefined;
    } catch {
      this.parent = undefined;
    }
    try {
      this.serving = { version: entry.version, predictor: this.load(entry.payload) };
    } catch (error) {
      // A version that cannot be loaded is rolled back by the next check, if it has a loadable parent.
      this.serving = undefined;
      this.loadError = { version: entry.version, error: error instanceof Error ? error : new Error(String(error)) };
    }
  }

  private metricsOf(version: string): RollingMetrics {
    let metrics = this.byVersion.get(version);
    if (!metrics) {
      metrics = new RollingMetrics(this.window);
      this.byVersion.set(version, metrics);
      // Versions the registry has dropped need no metrics either.
      for (const known of this.byVersion.keys()) if (!this.registry.get(this.model, known)) this.byVersion.delete(known);
    }
    return metrics;
  }

  /** Scores the sample with the serving version (and its parent); returns the serving probability, or NaN if none serves. */
  observe(sample: Sample<F>): number {
    if (!this.serving) return NaN;
    const p = this.serving.predictor.predict(sample.features);
    this.metricsOf(this.serving.version).add(p, sample.label);
    this.servingSince.add(p, sample.label);
    if (this.parent) this.parentShadow.add(this.parent.predictor.predict(sample.features), sample.label);
    return p;
  }

  /** Rolling metrics of a version over the samples it scored while serving. */
  metrics(version: string): MetricsSnapshot | undefined {
    return this.byVersion.get(version)?.snapshot();
  }

  /** The serving version against its parent on the same samples, since it started serving. */
  comparison(): { serving: MetricsSnapshot; parent: MetricsSnapshot } | undefined {
    if (!this.serving || !this.parent) return undefined;
    return { serving: this.servingSince.snapshot(), parent: this.parentShadow.snapshot() };
  }

  /**
   * Records the serving version's metrics in the registry and rolls it back when it has degraded. Pinned versions
   * are never rolled back automatically: someone chose them.
   */
  check(): RollbackDecision | undefined {
    if (this.loadError && this.parent) {
      const entry = this.registry.get(this.model, this.loadError.version);
      if (entry && !entry.pinned) {
        const reason = `version ${this.loadError.version} could not be loaded: ${this.loadError.error.message}`;
        const decision: RollbackDecision = {
          model: this.model,
          rolledBack: this.loadError.version,
          restored: this.parent.version,
          servingLogloss: NaN,
          parentLogloss: NaN,
          samples: 0,
          reason,
        };
        this.registry.rollback(this.model, { to: this.parent.version, reason });
        return decision;
      }
    }
    const serving = this.serving;
    if (!serving) return undefined;
    const metrics = this.byVersion.get(serving.version);
    if (metrics) {
      // The AUC sorts the whole window: a trainer checks after every batch, many a second, so the AUC it records is
      // computed again only once a tenth of a window has been scored since. Logloss is a running sum, always current.
      if (this.recordedAuc.version !== serving.version || metrics.total - this.recordedAuc.total >= Math.max(1, this.window / 10)) {
        this.recordedAuc = { version: serving.version, total: metrics.total, auc: metrics.auc() };
      }
      this.registry.recordMetrics(this.model, serving.version, {
        logloss: metrics.logloss(),
        auc: this.recordedAuc.auc,
        samples: metrics.total,
      });
    }
    const entry = this.registry.get(this.model, serving.version);
    if (!this.parent || !entry || entry.pinned || this.servingSince.count < this.minSamples) return undefined;
    const servingLogloss = this.servingSince.logloss();
    const parentLogloss = this.parentShadow.logloss();
    const degraded =
      servingLogloss > parentLogloss * this.maxLoglossRatio && servingLogloss - parentLogloss > this.minLoglossIncrease;
    if (!degraded) return undefined;
    const reason =
      `rolling logloss ${servingLogloss.toFixed(4)} over ${this.servingSince.count} samples is worse than parent ` +
      `${this.parent.version}'s ${parentLogloss.toFixed(4)} by more than x${this.maxLoglossRatio}`;
    const decision: RollbackDecision = {
      model: this.model,
      rolledBack: serving.version,
      restored: this.parent.version,
      servingLogloss,
      parentLogloss,
      samples: this.servingSince.count,
      reason,
    };
    this.registry.rollback(this.model, { to: this.parent.version, reason });
    return decision;
  }

  close(): void {
    this.unsubscribe();
  }
}
