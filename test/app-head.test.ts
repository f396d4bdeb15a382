import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { EmbeddedLog } from '../connectors/embedded-log.js';
import { decodeModelVersion } from '../models/learner.js';
import { headBaseOf, ONLINE_HEAD_KIND } from '../models/learners/online-head.js';
import { exportOnnx } from '../models/rankers/export.js';
import { onnxDigest } from '../models/rankers/import.js';
import { Ranker } from '../models/rankers/ranker.js';
import { DEFAULT_FEATURE_NAMES } from '../operators/features/config.js';
import { ITEM_FIELD } from '../operators/rank.js';
import { startEddy, type RunningEddy } from '../pipelines/app.js';
import { loadConfig } from '../pipelines/config.js';
import { readTopic } from '../pipelines/samples.js';
import type { RecommendationResponse } from '../schema/events.js';

async function waitFor<T>(probe: () => T | undefined | Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe('eddy all with EDDY_ONLINE_LEARNER=head', () => {
  const dir = mkdtempSync(join(tmpdir(), 'eddy-head-'));
  let eddy: RunningEddy | undefined;
  afterAll(async () => {
    await eddy?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('serves the deep model, learns a head from its served impressions and clicks, and serves the head', async () => {
    const deep = new Ranker({ kind: 'embedding-mlp', denseFeatures: DEFAULT_FEATURE_NAMES, categoricalFields: [{ name: ITEM_FIELD, vocabularySize: 1024 }], embeddingDim: 4, hidden: [16, 8] });
    const bytes = exportOnnx(deep);
    const modelFile = join(dir, 'deep.onnx');
    writeFileSync(modelFile, bytes);
    const log = new EmbeddedLog();
    eddy = await startEddy({
      config: loadConfig({
        EDDY_DATA_DIR: '',
        EDDY_MODEL_FILE: modelFile,
        EDDY_ONLINE_LEARNER: 'head',
        EDDY_EXPLORATION_SHARE: '0',
        EDDY_PUSH_DEBOUNCE_MS: '0',
        EDDY_ATTRIBUTION_WINDOW_MS: '1000',
        EDDY_PUBLISH_EVERY_SAMPLES: '10',
        EDDY_PUBLISH_INTERVAL_MS: '200',
      }),
      role: 'all',
      log,
      http: false,
    });
    const service = eddy.service!;
    const now = Date.now();
    const items = Array.from({ length: 40 }, (_, i) => ({ type: 'item', itemId: `m${i}`, ts: now - 60_000, fields: { title: `Movie ${i}` } }));
    expect((await service.ingest(items)).accepted).toBe(40);
    await waitFor(() => (eddy!.runners.get('serving-state')!.stats.records >= 40 ? true : undefined));

    const served: RecommendationResponse[] = [];
    for (let u = 0; u < 10; u++) served.push(await service.recommend({ requestId: `req-${u}`, userId: `u${u}`, count: 5 }));
    for (const response of served) {
      expect(response.model).toBe('onnx-head@deep.onnx');
      expect(response.items).toHaveLength(5);
    }
    // Half the users click their last item (the four above it become negatives), half click nothing (all negatives);
    // traffic an hour later closes the attribution windows.
    const clicks = served.filter((_, u) => u % 2 === 0).map((r) => ({ id: `click-${r.userId}`, type: 'click', userId: r.userId, itemId: r.items[4]!.itemId, ts: Date.now(), requestId: r.requestId, position: 4 }));
    const later = { id: 'later', type: 'view', userId: 'late-user', itemId: 'm0', ts: Date.now() + 3_600_000 };
    expect((await service.ingest([...clicks, later])).accepted).toBe(6);

    // The trainer learns the samples and publishes head versions named after the deep model ...
    const version = await waitFor(async () => {
      const records = (await readTopic(log, 'models')).map((r) => decodeModelVersion(r.value));
      return records.find((v) => v.samplesSeen >= 50);
    });
    expect(version.kind).toBe(ONLINE_HEAD_KIND);
    expect(headBaseOf(version)).toBe(onnxDigest(bytes));
    // ... and serving swaps them in: responses now name the deep model plus the head version.
    const response = await waitFor(async () => {
      const r = await service.recommend({ requestId: `after-${Date.now()}`, userId: 'u0', count: 5 });
      return r.model.startsWith('onnx-head@deep.onnx+v') ? r : undefined;
    });
    expect(response.items).toHaveLength(5);
    expect(response.items.every((i) => Number.isFinite(i.score) && i.score > 0 && i.score < 1)).toBe(true);
  }, 60_000);
});
