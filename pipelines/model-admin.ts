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
    list: () => registry.modelNames().flatMap((model) => registry.list(model).map(summary)),
    pin: (model, version) => summary(registry.pin(model, version)),
    unpin: (model) => {
      const entry = registry.unpin(model);
      return entry ? summary(entry) : undefined;
    },
    rollback: (model, to, reason) => summary(registry.rollback(model, { ...(to ? { to } : {}), reason })),
  };
}
