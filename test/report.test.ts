import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ItemKnnRecommender } from '../models/evaluation/itemknn.js';
import { PopularityRecommender } from '../models/evaluation/popularity.js';
import { runEvaluation } from '../pipelines/report/evaluate.js';
import { renderHtmlReport } from '../pipelines/report/html.js';
import { writeReport } from '../pipelines/report/write.js';

const SHARED = resolve(import.meta.dirname, '..', '..', 'shared', 'data', 'movielens-small');
const ARTIFACTS = resolve(import.meta.dirname, 'artifacts');

/** A real run on a slice of MovieLens: the first 4000 ratings (CRLF, as shipped). */
async function sliceResult() {
  const dir = mkdtempSync(join(tmpdir(), 'eddy-report-'));
  const head = readFileSync(join(SHARED, 'ratings.csv'), 'utf8').split('\r\n').slice(0, 4001).join('\r\n') + '\r\n';
  const ratingsPath = join(dir, 'ratings.csv');
  writeFileSync(ratingsPath, head);
  const result = await runEvaluation({
    ratingsPath,
    moviesPath: join(SHARED, 'movies.csv'),
    k: 10,
    models: [new PopularityRecommender(), new ItemKnnRecommender(), new PopularityRecommender({ name: 'evil <script>', positiveOnly: false })],
    targetBuckets: 12,
  });
  return { dir, result };
}

describe('HTML report', () => {
  let dir: string;
  let result: Awaited<ReturnType<typeof sliceResult>>['result'];
  beforeAll(async () => {
    ({ dir, result } = await sliceResult());
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('is one page with the chart library inlined, no external references, and the data escaped', () => {
    const html = renderHtmlReport(result);
    expect(html).not.toMatch(/<script[^>]+src=/i);
    expect(html).not.toMatch(/<link[^>]+href=/i);
    expect(html).not.toMatch(/https?:\/\/(?!github\.com\/leeoniya)/);
    expect(html).toContain('uPlot');
    expect(html).not.toContain('evil <script>');
    expect(html).toContain('evil &#60;script&#62;');
    const embedded = /<script type="application\/json" id="eddy-data">(.*?)<\/script>/s.exec(html)![1]!;
    expect(JSON.parse(embedded).evaluated).toBe(result.evaluated);
  });

  it('writes the JSON and HTML reports', async () => {
    await writeReport(result, { jsonPath: join(dir, 'out', 'report.json'), htmlPath: join(dir, 'out', 'report.html') });
    const json = JSON.parse(readFileSync(join(dir, 'out', 'report.json'), 'utf8'));
    expect(json).toMatchObject({ protocol: 'prequential', events: 4000, k: 10 });
    expect(Object.keys(json.models)).toEqual(['popularity', 'itemknn', 'evil <script>']);
    expect(readFileSync(join(dir, 'out', 'report.html'), 'utf8')).toMatch(/^<!doctype html>/);
  });

  it('renders its charts in headless Chromium without any network', async () => {
    const htmlPath = join(dir, 'report.html');
    writeFileSync(htmlPath, renderHtmlReport(result, { subtitle: 'MovieLens slice' }));
    const profile = mkdtempSync(join(tmpdir(), 'eddy-chromium-'));
    const context = await chromium.launchPersistentContext(profile, {
      executablePath: '/usr/bin/chromium',
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run'],
      viewport: { width: 1200, height: 900 },
    });
    try {
      const requests: string[] = [];
      const errors: string[] = [];
      context.on('request', (request) => {
        if (!request.url().startsWith('file:')) requests.push(request.url());
      });
      await context.route(/^(?!file:)/, (route) => route.abort());
      const page = await context.newPage();
      page.on('pageerror', (error) => errors.push(error.message));
      await page.goto(pathToFileURL(htmlPath).href);
      await page.waitForSelector('body[data-charts="ready"]', { timeout: 10_000 });
      // Runs in the page (as a string: the test's TypeScript has no DOM types): how many pixels each chart painted.
      const charts = await page.evaluate<{ id: string; painted: number; width: number }[]>(`
        [...document.querySelectorAll('.chart')].map((chart) => {
          const canvas = chart.querySelector('canvas');
          if (!canvas) return { id: chart.id, painted: 0, width: 0 };
          const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
          let painted = 0;
          for (let i = 3; i < pixels.length; i += 4) if (pixels[i] > 0) painted++;
          return { id: chart.id, painted, width: canvas.width };
        })
      `);
      expect(errors).toEqual([]);
      expect(requests).toEqual([]);
      expect(charts.map((c) => c.id)).toEqual(['chart-compare', 'chart-hr', 'chart-ndcg', 'chart-mrr', 'chart-coverage', 'chart-latency']);
      for (const chart of charts) {
        expect(chart.width, chart.id).toBeGreaterThan(0);
        // Series, axes and bars paint well beyond a few stray pixels.
        expect(chart.painted, chart.id).toBeGreaterThan(500);
      }
      const legend = await page.locator('#chart-hr .u-legend').innerText();
      for (const name of Object.keys(result.models)) expect(legend).toContain(name);
      await page.screenshot({ path: join(ARTIFACTS, 'report.png'), fullPage: true });
    } finally {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    }
  });
});
