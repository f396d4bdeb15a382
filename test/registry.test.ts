import { describe, expect, it } from 'vitest';
import type { ModelVersion } from '../models/learner.js';
import { ModelRegistry, type RegistryChange } from '../models/registry.js';

const version = (v: string, parent: string | null, model = 'ctr'): ModelVersion => ({
  model,
  version: v,
  parent,
  kind: 'ftrl',
  createdAt: Number(v.slice(1)),
  samplesSeen: 0,
  params: {},
  tensors: {},
});

describe('ModelRegistry', () => {
  it('serves each new version, lists newest first and follows lineage', () => {
    const registry = new ModelRegistry();
    const changes: RegistryChange[] = [];
    registry.onChange((c) => changes.push(c));
    registry.register(version('v1', null));
    registry.register(version('v2', 'v1'));
    registry.register(version('v3', 'v2'));
    registry.register(version('v1', null, 'other'));
    expect(registry.list('ctr').map((e) => e.version)).toEqual(['v3', 'v2', 'v1']);
    expect(registry.serving('ctr')?.version).toBe('v3');
    expect(registry.list('ctr').map((e) => e.status)).toEqual(['serving', 'standby', 'standby']);
    expect(registry.lineage('ctr', 'v3').map((e) => e.version)).toEqual(['v3', 'v2', 'v1']);
    expect(registry.modelNames()).toEqual(['ctr', 'other']);
    expect(changes.map((c) => `${c.model}:${c.cause}:${c.serving.version}:${c.previous?.version ?? '-'}`)).toEqual([
      'ctr:register:v1:-',
      'ctr:register:v2:v1',
      'ctr:register:v3:v2',
      'other:register:v1:-',
    ]);
    expect(() => registry.register(version('v3', 'v2'))).toThrow(/already has a version v3/);
  });

  it('keeps serving a pinned version while newer ones arrive, until unpinned', () => {
    const registry = new ModelRegistry();
    registry.register(version('v1', null));
    registry.register(version('v2', 'v1'));
    registry.pin('ctr', 'v1');
    expect(registry.serving('ctr')?.version).toBe('v1');
    registry.register(version('v3', 'v2'));
    expect(registry.serving('ctr')?.version).toBe('v1');
    expect(registry.get('ctr', 'v1')?.pinned).toBe(true);
    expect(registry.unpin('ctr')?.version).toBe('v3');
    expect(registry.get('ctr', 'v1')?.pinned).toBe(false);
    expect(() => registry.pin('ctr', 'v9')).toThrow(/no version v9/);
  });

  it('rolls back to the parent or a named version, recording why, and unpin skips rolled-back versions', () => {
    const registry = new ModelRegistry();
    const causes: string[] = [];
    registry.onChange((c) => causes.push(`${c.cause}:${c.serving.version}`));
    registry.register(version('v1', null));
    registry.register(version('v2', 'v1'));
    registry.register(version('v3', 'v2'));
    expect(registry.rollback('ctr', { reason: 'logloss up' }).version).toBe('v2');
    expect(registry.get('ctr', 'v3')).toMatchObject({ status: 'rolled-back', rollbackReason: 'logloss up' });
    expect(registry.rollback('ctr', { to: 'v1', reason: 'manual' }).version).toBe('v1');
    expect(registry.serving('ctr')?.version).toBe('v1');
    expect(registry.unpin('ctr')?.version).toBe('v1');
    expect(causes.slice(-2)).toEqual(['rollback:v2', 'rollback:v1']);
    expect(() => registry.rollback('ctr', { reason: 'x' })).toThrow(/no parent/);
    expect(() => registry.rollback('none', { reason: 'x' })).toThrow(/no serving version/);
  });

  it('drops the oldest versions beyond the bound but keeps serving, pinned and parent', () => {
    const registry = new ModelRegistry({ maxVersions: 3 });
    registry.register(version('v1', null));
    registry.pin('ctr', 'v1');
    for (let i = 2; i <= 6; i++) registry.register(version(`v${i}`, `v${i - 1}`));
    expect(registry.list('ctr').map((e) => e.version)).toEqual(['v6', 'v5', 'v1']);
    registry.unpin('ctr');
    registry.register(version('v7', 'v6'));
    expect(registry.list('ctr').map((e) => e.version)).toEqual(['v7', 'v6', 'v5']);
    registry.recordMetrics('ctr', 'v7', { logloss: 0.4 });
    registry.recordMetrics('ctr', 'v7', { auc: 0.7 });
    expect(registry.get('ctr', 'v7')?.metrics).toEqual({ logloss: 0.4, auc: 0.7 });
  });
});
