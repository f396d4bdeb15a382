import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { PrequentialResult } from '../../models/evaluation/prequential.js';

/**
 * The evaluation report as one self-contained HTML page: a figures table, metrics over time, a model comparison and
 * the latency histograms. uPlot's script and stylesheet are inlined and the data is embedded, so the page opens from
 * disk with no network.
 */

const require = createRequire(import.meta.url);

function asset(path: string): string {
  try {
    return readFileSync(require.resolve(path), 'utf8');
  } catch (error) {
    throw new Error(`cannot read the chart library asset ${path}; is uplot installed?`, { cause: error });
  }
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** JSON that can sit inside a <script> element: no `<` can close it early. */
function scriptJson(value: unknown): string {
  return JSON.stringify(value).replace(/</g, '\\u003c').replace(/\u2028/g, '\\u2028').replace(/\u2029/g, '\\u2029');
}

/** Text that can sit inside a <script> or <style> element. */
function inlineable(text: string, tag: 'script' | 'style'): string {
  return text.replace(new RegExp(`</${tag}`, 'gi'), `<\\/${tag}`);
}

function format(value: number, digits = 4): string {
  return Number.isFinite(value) ? value.toFixed(digits) : '–';
}

function figuresTable(result: PrequentialResult): string {
  const rows = Object.entries(result.models).map(
    ([name, m]) =>
      `<tr><th scope="row">${escapeHtml(name)}</th><td>${format(m.hr)}</td><td>${format(m.ndcg)}</td><td>${format(m.mrr)}</td>` +
      `<td>${format(m.coverage)}</td><td>${format(m.novelty, 2)}</td><td>${format(m.latency.p50Ms, 3)}</td>` +
      `<td>${format(m.latency.p95Ms, 3)}</td><td>${format(m.latency.p99Ms, 3)}</td><td>${m.invalidItems}</td></tr>`,
  );
  return (
    `<table><thead><tr><th>model</th><th>HR@${result.k}</th><th>NDCG@${result.k}</th><th>MRR@${result.k}</th><th>coverage</th>` +
    `<th>novelty (bits)</th><th>p50 ms</th><th>p95 ms</th><th>p99 ms</th><th>invalid items</th></tr></thead><tbody>${rows.join('')}</tbody></table>`
  );
}

/** Runs in the page: draws every chart from the embedded result. */
const CLIENT = String.raw`
(function () {
  var result = JSON.parse(document.getElementById('eddy-data').textContent);
  var names = Object.keys(result.models);
  var palette = ['#2563eb', '#dc2626', '#16a34a', '#9333ea', '#ea580c', '#0891b2', '#ca8a04', '#4b5563'];
  function colour(i) { return palette[i % palette.length]; }
  function width(el) { return Math.max(360, Math.min(1100, el.clientWidth || 900)); }

  function overTime(id, metric, label) {
    var el = document.getElementById(id);
    var buckets = result.overTime.series;
    var x = buckets.map(function (b) { var first = b.models[names[0]]; return b.evaluatedBefore + (first ? first.evaluated : 0); });
    var data = [x].concat(names.map(function (n) {
      return buckets.map(function (b) { return b.models[n] ? b.models[n][metric] : null; });
    }));
    var series = [{ label: 'scored events' }].concat(names.map(function (n, i) {
      return { label: n, stroke: colour(i), width: 2, points: { show: buckets.length < 60 } };
    }));
    new uPlot({
      title: label + ' per bucket of scored events', width: width(el), height: 260,
      scales: { x: { time: false } }, series: series,
      axes: [{ label: 'scored events' }, { label: label }],
    }, data, el);
  }

  /** Grouped bars: one group per label, one bar per series, placed on a shared x axis with a gap after each group. */
  function groupedBars(id, title, groups, seriesNames, values, yLabel) {
    var el = document.getElementById(id);
    var per = seriesNames.length + 1;
    var x = [];
    var columns = seriesNames.map(function () { return []; });
    groups.forEach(function (_, g) {
      seriesNames.forEach(function (_, s) {
        x.push(g * per + s);
        columns.forEach(function (column, c) { column.push(c === s ? values[s][g] : null); });
      });
    });
    var centres = groups.map(function (_, g) { return g * per + (seriesNames.length - 1) / 2; });
    new uPlot({
      title: title, width: width(el), height: 280,
      scales: { x: { time: false, range: [-1, groups.length * per - 1] }, y: { range: function (u, min, max) { return [0, max > 0 ? max * 1.1 : 1]; } } },
      series: [{ label: 'x' }].concat(seriesNames.map(function (n, i) {
        return { label: n, fill: colour(i), stroke: colour(i), paths: uPlot.paths.bars({ size: [0.9, 80] }), points: { show: false } };
      })),
      axes: [
        { splits: function () { return centres; }, values: function () { return groups; }, grid: { show: false } },
        { label: yLabel },
      ],
      legend: { live: false },
    }, [x].concat(columns), el);
  }

  overTime('chart-hr', 'hr', 'HR@' + result.k);
  overTime('chart-ndcg', 'ndcg', 'NDCG@' + result.k);
  overTime('chart-mrr', 'mrr', 'MRR@' + result.k);
  overTime('chart-coverage', 'coverage', 'coverage');

  var metrics = ['hr', 'ndcg', 'mrr'];
  groupedBars('chart-compare', 'Model comparison', ['HR@' + result.k, 'NDCG@' + result.k, 'MRR@' + result.k], names,
    names.map(function (n) { return metrics.map(function (m) { return result.models[n][m]; }); }), 'value');

  var first = result.models[names[0]].latency.histogram;
  var bounds = first.boundsMs;
  var used = [];
  for (var b = 0; b <= bounds.length; b++) {
    if (names.some(function (n) { return result.models[n].latency.histogram.counts[b] > 0; })) used.push(b);
  }
  if (used.length === 0) used.push(0);
  var lo = used[0], hi = used[used.length - 1];
  var buckets = [];
  for (var i = lo; i <= hi; i++) buckets.push(i);
  groupedBars('chart-latency', 'recommend() latency: share of calls per bucket', buckets.map(function (i) {
    return i < bounds.length ? '≤' + bounds[i] + ' ms' : '>' + bounds[bounds.length - 1] + ' ms';
  }), names, names.map(function (n) {
    var h = result.models[n].latency;
    return buckets.map(function (i) { return h.count ? (100 * h.histogram.counts[i]) / h.count : 0; });
  }), '% of calls');
  document.body.setAttribute('data-charts', 'ready');
})();
`;

const STYLE = `
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #111; max-width: 1140px; }
h1 { font-size: 20px; } h2 { font-size: 16px; margin-top: 28px; }
table { border-collapse: collapse; } th, td { padding: 4px 10px; border-bottom: 1px solid #ddd; text-align: right; }
th[scope=row], thead th:first-child { text-align: left; }
.meta { color: #555; } .chart { margin: 12px 0; }
`;

export interface HtmlReportOptions {
  /** Default "Eddy evaluation". */
  readonly title?: string;
  /** Shown under the title, e.g. the dataset and when it ran. */
  readonly subtitle?: string;
}

export function renderHtmlReport(result: PrequentialResult, options: HtmlReportOptions = {}): string {
  const title = options.title ?? 'Eddy evaluation';
  const meta =
    `${result.protocol}, K = ${result.k}: ${result.evaluated} of ${result.events} events scored` +
    (result.trainEvents > 0 ? ` after learning ${result.trainEvents} training events` : '') +
    `; catalogue of ${result.catalogue} items; ${(result.elapsedMs / 1000).toFixed(1)} s.`;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}</title>
<style>${inlineable(asset('uplot/dist/uPlot.min.css'), 'style')}</style>
<style>${STYLE}</style>
</head><body>
<h1>${escapeHtml(title)}</h1>
${options.subtitle ? `<p class="meta">${escapeHtml(options.subtitle)}</p>` : ''}
<p class="meta">${escapeHtml(meta)}</p>
<h2>Figures</h2>
${figuresTable(result)}
<h2>Model comparison</h2>
<div class="chart" id="chart-compare"></div>
<h2>Metrics over time</h2>
<div class="chart" id="chart-hr"></div>
<div class="chart" id="chart-ndcg"></div>
<div class="chart" id="chart-mrr"></div>
<div class="chart" id="chart-coverage"></div>
<h2>Latency</h2>
<div class="chart" id="chart-latency"></div>
<script type="application/json" id="eddy-data">${scriptJson(result)}</script>
<script>${inlineable(asset('uplot/dist/uPlot.iife.min.js'), 'script')}</script>
<script>${inlineable(CLIENT, 'script')}</script>
</body></html>
`;
}
