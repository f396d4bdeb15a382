import type { ModelAdmin, ModelVersionSummary } from '../connectors/http.js';
import type { ModelRegistry, RegistryEntry } from '../models/registry.js';

function summary(entry: RegistryEntry): ModelVersionSummary {
  return {
    model: entry.model,
    version: entry.version,
    parent: entry.parent,
    status: entry.status,
    pinned: entry.pinned,
    createdAt: entry.createdAt,
    samplesSeen: entry.samplesSeen,
    metrics: entry.metrics,
    ...(entry.rollbackReason ? { rollbackReason: entry.rollbackReason } : {}),
  };
}

/** The registry's list, pin and rollback, for the HTTP admin API; the publisher carries every change to serving. */
export function registryAdmin(registry: ModelRegistry): ModelAdmin {
  return {
    list: async () => registry.modelNames().flatMap((model) => registry.list(model).map(summary)),
    pin: async (model, version) => summary(registry.pin(model, version)),
    unpin: async (model) => {
      const entry = registry.unpin(model);
      return entry ? summary(entry) : undefined;
    },
    rollback: async (model, to, reason) => summary(registry.rollback(model, { ...(to ? { to } : {}), reason })),
  };
}

/** The version a model's registry serves, with its online quality (what the trainer's guardrails recorded). */
export interface ServingQuality {
  readonly version: string;
  readonly auc?: number;
  readonly logloss?: number;
}

export function servingQuality(registry: ModelRegistry, model: string): ServingQuality | undefined {
  const serving = registry.serving(model);
  if (!serving) return undefined;
  const { auc, logloss } = serving.metrics as { auc?: number; logloss?: number };
  return { version: serving.version, ...(auc !== undefined ? { auc } : {}), ...(logloss !== undefined ? { logloss } : {}) };
}
