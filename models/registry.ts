import type { ModelVersion } from './learner.js';

/**
 * Model versions and their lineage, per model name, with the one that serves. A new version serves as soon as it is
 * registered unless a version is pinned; `rollback` moves serving back to the parent (or a named version) and marks
 * the abandoned one. Listeners hear about every change of the serving version, which is how publishers and scorers
 * follow it.
 */

export type VersionStatus = 'serving' | 'standby' | 'rolled-back';

export interface RegistryEntry {
  readonly model: string;
  readonly version: string;
  readonly parent: string | null;
  readonly kind: string;
  readonly createdAt: number;
  readonly samplesSeen: number;
  /** The latest metrics recorded for this version (for instance rolling logloss and AUC while it served). */
  metrics: Readonly<Record<string, number>>;
  pinned: boolean;
  status: VersionStatus;
  /** Why the version was rolled back, when it was. */
  rollbackReason?: string;
  readonly payload: ModelVersion;
}

export type RegistryChangeCause = 'register' | 'pin' | 'unpin' | 'rollback';

export interface RegistryChange {
  readonly model: string;
  readonly cause: RegistryChangeCause;
  readonly serving: RegistryEntry;
  readonly previous: RegistryEntry | undefined;
}

export interface ModelRegistryOptions {
  /** Versions kept per model; the serving and pinned versions and the serving version's parent are never dropped. Default 20. */
  readonly maxVersions?: number;
}

interface ModelHistory {
  /** Oldest first. */
  readonly entries: RegistryEntry[];
  serving: RegistryEntry | undefined;
}

export class ModelRegistry {
  private readonly models = new Map<string, ModelHistory>();
  private readonly listeners = new Set<(change: RegistryChange) => void>();
  private readonly maxVersions: number;

  constructor(options: ModelRegistryOptions = {}) {
    this.maxVersions = options.maxVersions ?? 20;
    if (!Number.isInteger(this.maxVersions) || this.maxVersions < 2) throw new RangeError('maxVersions must be an integer >= 2');
  }

  /** Adds a version; it serves at once unless the model has a pinned version. */
  register(version: ModelVersion): RegistryEntry {
    const history = this.history(version.model);
    if (history.entries.some((e) => e.version === version.version)) {
      throw new Error(`model ${version.model} already has a version ${version.version}`);
    }
    const entry: RegistryEntry = {
      model: version.model,
      version: version.version,
      parent: version.parent,
      kind: version.kind,
      createdAt: version.createdAt,
      samplesSeen: version.samplesSeen,
      metrics: {},
      pinned: false,
      status: 'standby',
      payload: version,
    };
    history.entries.push(entry);
    if (!history.serving?.pinned) this.serve(history, entry, 'register');
    this.evict(history);
    return entry;
  }

  /** Newest first. */
  list(model: string): readonly RegistryEntry[] {
    return [...(this.models.get(model)?.entries ?? [])].reverse();
  }

  modelNames(): readonly string[] {
    return [...this.models.keys()];
  }

  get(model: string, version: string): RegistryEntry | undefined {
    return this.models.get(model)?.entries.find((e) => e.version === version);
  }

  serving(model: string): RegistryEntry | undefined {
    return this.models.get(model)?.serving;
  }

  /** The version, its parent, grandparent and so on, as far as the registry still holds them. */
  lineage(model: string, version: string): readonly RegistryEntry[] {
    const chain: RegistryEntry[] = [];
    let entry = this.get(model, version);
    while (entry && !chain.includes(entry)) {
      chain.push(entry);
      entry = entry.parent === null ? undefined : this.get(model, entry.parent);
    }
    return chain;
  }

  /** Serves `version` and keeps serving it whatever is registered later, until `unpin` or `rollback`. */
  pin(model: string, version: string): RegistryEntry {
    const history = this.history(model);
    const entry = this.require(model, version);
    for (const e of history.entries) e.pinned = e === entry;
    if (history.serving !== entry) this.serve(history, entry, 'pin');
    return entry;
  }

  /** Lifts the pin and serves the newest version that has not been rolled back. */
  unpin(model: string): RegistryEntry | undefined {
    const history = this.history(model);
    for (const e of history.entries) e.pinned = false;
    const newest = [...history.entries].reverse().find((e) => e.status !== 'rolled-back');
    if (newest && newest !== history.serving) this.serve(history, newest, 'unpin');
    return history.serving;
  }

  /**
   * Stops serving the current version, marks it rolled back with `reason`, and serves `to` (default: its parent).
   * Any pin is lifted.
   */
  rollback(model: string, options: { to?: string; reason: string }): RegistryEntry {
    const history = this.history(model);
    const current = history.serving;
    if (!current) throw new Error(`model ${model} has no serving version to roll back`);
    const targetVersion = options.to ?? current.parent;
    if (targetVersion === null) throw new Error(`model ${model}@${current.version} has no parent to roll back to`);
    if (targetVersion === current.version) throw new Error(`model ${model}@${current.version} is already serving`);
    const target = this.require(model, targetVersion);
    for (const e of history.entries) e.pinned = false;
    current.status = 'rolled-back';
    current.rollbackReason = options.reason;
    this.serve(history, target, 'rollback');
    return target;
  }

  recordMetrics(model: string, version: string, metrics: Readonly<Record<string, number>>): void {
    const entry = this.get(model, version);
    if (entry) entry.metrics = { ...entry.metrics, ...metrics };
  }

  /** Calls `listener` after every change of a serving version; returns the unsubscribe function. */
  onChange(listener: (change: RegistryChange) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private history(model: string): ModelHistory {
    let history = this.models.get(model);
    if (!history) {
      history = { entries: [], serving: undefined };
      this.models.set(model, history);
    }
    return history;
  }

  private require(model: string, version: string): RegistryEntry {
    const entry = this.get(model, version);
    if (!entry) throw new Error(`model ${model} has no version ${version} in the registry`);
    return entry;
  }

  private serve(history: ModelHistory, entry: RegistryEntry, cause: RegistryChangeCause): void {
    const previous = history.serving;
    if (previous && previous.status === 'serving') previous.status = 'standby';
    entry.status = 'serving';
    history.serving = entry;
    const change: RegistryChange = { model: entry.model, cause, serving: entry, previous };
    // Every listener hears the change even if one fails; the failures are reported together afterwards.
    const failures: unknown[] = [];
    for (const listener of this.listeners) {
      try {
        listener(change);
      } catch (error) {
        failures.push(error);
      }
    }
    if (failures.length > 0) {
      throw new AggregateError(failures, `${failures.length} registry listener(s) failed on ${entry.model}@${entry.version} (${cause})`);
    }
  }

  private evict(history: ModelHistory): void {
    const keep = (e: RegistryEntry) =>
      e === history.serving || e.pinned || (history.serving !== undefined && e.version === history.serving.parent);
    while (history.entries.length > this.maxVersions) {
      const index = history.entries.findIndex((e) => !keep(e));
      if (index < 0) return;
      history.entries.splice(index, 1);
    }
  }
}
