import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { Registry } from 'prom-client';
import { createHttpServer, type EddyService } from '../connectors/http.js';
import { dashboardPlugin } from '../connectors/dashboard/plugin.js';
import { metricsDashboardSource } from '../connectors/dashboard/metrics-source.js';
import type { DashboardSnapshot, DashboardSource } from '../connectors/dashboard/snapshot.js';
import { createMetrics } from '../connectors/observability/metrics.js';

/** The HTTP layer needs a service; the dashboard never calls it. */
const idleService: EddyService = {
  ingest: async () => ({ accepted: 0, rejected: [] }),
  recommend: async (request) => ({ requestId: request.requestId, userId: request.userId, items: [], model: 'm', variant: 'control', tookMs: 0 }),
  similar: async () => undefined,
  experiment: () => undefined,
  readiness: async () => ({ ready: true, checks: {} }),
  metrics: async () => ({ contentType: 'text/plain', body: '' }),
};

/**
 * Real Eddy metrics driven by a synthetic workload that changes at every snapshot, read through the real
 * metrics source: what the page shows has gone through the same path as in production.
 */
function changingSource(): DashboardSource & { snapshots: number } {
  const metrics = createMetrics(new Registry());
  const source = metricsDashboardSource(metrics, { windowMs: 5000 });
  let step = 0;
  const wrapper = {
    snapshots: 0,
    async snapshot(): Promise<DashboardSnapshot> {
      step += 1;
      metrics.eventsIn.inc({ topic: 'events' }, 50 + 40 * Math.sin(step / 2));
      metrics.eventsOut.inc({ topic: 'samples' }, 20 + 10 * Math.cos(step / 3));
      metrics.eventsDeadLettered.inc({ topic: 'events' }, step % 3);
      metrics.consumerLag.set({ group: 'eddy-features', topic: 'events', partition: '0' }, 100 + 80 * Math.sin(step));
      metrics.consumerLag.set({ group: 'eddy-features', topic: 'events', partition: '1' }, 40 + step);
      for (let i = 0; i < 40; i++) metrics.recommendLatency.observe({ variant: 'control' }, 0.002 + ((i * step) % 17) / 1000);
      metrics.featureFreshness.set({ kind: 'user' }, 0.5 + (step % 5) / 4);
      metrics.featureFreshness.set({ kind: 'item' }, 1.5 + (step % 4) / 3);
      const version = `v${1 + Math.floor(step / 4)}`;
      metrics.setServingVersion('ftrl', version);
      metrics.onlineAuc.set({ model: 'ftrl', version }, 0.6 + 0.1 * Math.tanh(step / 10));
      metrics.onlineLogloss.set({ model: 'ftrl', version }, 0.6 - 0.1 * Math.tanh(step / 10));
      metrics.abExposures.inc({ experiment: 'ranker-test', variant: 'control' }, 30);
      metrics.abClicks.inc({ experiment: 'ranker-test', variant: 'control' }, 1 + (step % 3));
      metrics.abExposures.inc({ experiment: 'ranker-test', variant: 'treatment' }, 30);
      metrics.abClicks.inc({ experiment: 'ranker-test', variant: 'treatment' }, 2 + (step % 2));
      metrics.samplesImpressions.inc({ outcome: 'positive' }, 2 + (step % 3));
      metrics.samplesImpressions.inc({ outcome: 'negative' }, 20 + 8 * Math.sin(step / 2));
      metrics.samplesClosedEarly.inc(step % 4);
      wrapper.snapshots += 1;
      return source.snapshot();
    },
  };
  return wrapper;
}

/** The little of the DOM these checks touch (the project's TypeScript has no DOM library). */
interface Canvas {
  width: number;
  height: number;
  getContext(kind: '2d'): { getImageData(x: number, y: number, width: number, height: number): { data: Uint8ClampedArray } } | null;
}
/** A page expression: true once the page has rendered `count` snapshots. */
const ticksReached = (count: number) => `Number(document.body.dataset.ticks ?? 0) >= ${count}`;

/** Pixels of a canvas that are not fully transparent, and a digest that changes when the drawing does. */
async function canvasInk(page: Page, selector: string): Promise<{ inked: number; digest: string }> {
  return page.$eval(selector, (canvas) => {
    const element = canvas as unknown as Canvas;
    const pixels = element.getContext('2d')!.getImageData(0, 0, element.width, element.height).data;
    let inked = 0;
    let hash = 0;
    for (let i = 3; i < pixels.length; i += 4) {
      if (pixels[i]! > 0) inked++;
      hash = (hash * 31 + pixels[i - 3]! + pixels[i - 2]! * 7 + pixels[i]! * 13) | 0;
    }
    return { inked, digest: String(hash) };
  });
}

describe('live dashboard in headless Chromium', () => {
  let app: FastifyInstance;
  let browser: BrowserContext;
  let page: Page;
  let source: ReturnType<typeof changingSource>;
  let baseUrl: string;
  const userDataDir = mkdtempSync(join(tmpdir(), 'eddy-chromium-'));

  beforeAll(async () => {
    source = changingSource();
    app = await createHttpServer(idleService, { plugins: [dashboardPlugin(source, { intervalMs: 250 })] });
    await app.listen({ port: 0, host: '127.0.0.1' });
    baseUrl = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
    // playwright passes the fresh profile directory as --user-data-dir.
    browser = await chromium.launchPersistentContext(userDataDir, {
      executablePath: '/usr/bin/chromium',
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run'],
      viewport: { width: 1400, height: 1700 },
    });
    page = await browser.newPage();
  });

  afterAll(async () => {
    await browser?.close();
    await app?.close();
    rmSync(userDataDir, { recursive: true, force: true });
  });

  it('loads, renders every chart and updates them live from the SSE stream', async () => {
    const pageErrors: string[] = [];
    page.on('pageerror', (error) => pageErrors.push(error.message));
    const response = await page.goto(`${baseUrl}/`);
    expect(response?.status()).toBe(200);
    await page.waitForFunction(ticksReached(3), undefined, { timeout: 10_000 });
    expect(await page.textContent('#status')).toBe('live');

    const chartIds = ['rates', 'lag', 'latency', 'freshness', 'auc', 'logloss', 'samples', 'ctr'];
    const before = new Map<string, string>();
    for (const id of chartIds) {
      const ink = await canvasInk(page, `#chart-${id} canvas`);
      expect(ink.inked, `chart ${id} is blank`).toBeGreaterThan(500);
      before.set(id, ink.digest);
    }
    const tablesBefore = await page.textContent('#table-experiments');
    expect(tablesBefore).toContain('treatment');
    expect(await page.textContent('#table-models')).toMatch(/ftrl\s*v\d/);

    const ticks = Number(await page.getAttribute('body', 'data-ticks'));
    await page.waitForFunction(ticksReached(ticks + 3), undefined, { timeout: 10_000 });
    for (const id of chartIds) {
      expect((await canvasInk(page, `#chart-${id} canvas`)).digest, `chart ${id} did not change`).not.toBe(before.get(id));
    }
    expect(await page.textContent('#table-experiments')).not.toBe(tablesBefore);

    mkdirSync(join(import.meta.dirname, 'artifacts'), { recursive: true });
    await page.screenshot({ path: join(import.meta.dirname, 'artifacts', 'dashboard.png'), fullPage: true });
    expect(pageErrors).toEqual([]);
  });

  it('serves uPlot from node_modules and asks the source once per tick however many browsers watch', async () => {
    const script = await fetch(`${baseUrl}/dashboard/uplot.min.js`);
    expect(script.status).toBe(200);
    expect(await script.text()).toContain('uPlot');
    const second = await browser.newPage();
    await second.goto(`${baseUrl}/`);
    await second.waitForFunction(ticksReached(2), undefined, { timeout: 10_000 });
    const startCount = source.snapshots;
    const started = Date.now();
    await new Promise((resolve) => setTimeout(resolve, 1250));
    const perTick = (source.snapshots - startCount) / ((Date.now() - started) / 250);
    // Two browsers at one snapshot per 250 ms tick: about one call per tick, not two.
    expect(perTick).toBeLessThan(1.5);
    await second.close();
  });
});
