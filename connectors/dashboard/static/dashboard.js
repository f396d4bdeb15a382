// The live dashboard's client: keeps the last HISTORY snapshots' numbers and redraws uPlot charts and tables from
// the server's Server-Sent Events stream.
/* global uPlot */
'use strict';

const HISTORY = 300;
const PALETTE = ['#2680c2', '#e12d39', '#3ebd93', '#f0b429', '#9446ed', '#0b69a3', '#cb6e17', '#27ab83', '#d64545', '#647acb'];

const round = (value, digits) => (value === null || value === undefined || !Number.isFinite(value) ? '–' : value.toFixed(digits));

/** Bounds of an interval (keys ending in BOUND_SUFFIXES) are thin dashed lines in the colour of their series. */
const BOUND_SUFFIXES = [' low', ' high'];
const baseKey = (key) => BOUND_SUFFIXES.reduce((k, suffix) => (k.endsWith(suffix) ? k.slice(0, -suffix.length) : k), key);

function seriesStyle(key, keys) {
  const bases = [...new Set(keys.map(baseKey))];
  const stroke = PALETTE[bases.indexOf(baseKey(key)) % PALETTE.length];
  const bound = baseKey(key) !== key;
  return { label: key, stroke, width: bound ? 1 : 2, dash: bound ? [4, 4] : undefined, points: { show: !bound }, spanGaps: true };
}

/** One chart: a time column plus one column per series key; keys appear as the snapshot names them. */
function timeChart(element, extract, digits) {
  const times = [];
  const columns = new Map();
  let plot;
  let drawnKeys = 0;

  const options = (keys) => ({
    width: Math.max(300, element.clientWidth),
    height: 220,
    legend: { live: false },
    scales: { x: { time: true } },
    axes: [{}, { values: (_u, ticks) => ticks.map((t) => round(t, digits)) }],
    series: [{}, ...keys.map((key) => seriesStyle(key, keys))],
  });

  return {
    push(snapshot) {
      const values = extract(snapshot);
      times.push(snapshot.ts / 1000);
      for (const key of Object.keys(values)) {
        if (!columns.has(key)) columns.set(key, new Array(times.length - 1).fill(null));
      }
      for (const [key, column] of columns) column.push(values[key] ?? null);
      if (times.length > HISTORY) {
        times.shift();
        for (const column of columns.values()) column.shift();
      }
      const keys = [...columns.keys()];
      const data = [times, ...keys.map((key) => columns.get(key))];
      if (!plot || keys.length !== drawnKeys) {
        if (plot) plot.destroy();
        plot = new uPlot(options(keys), data, element);
        drawnKeys = keys.length;
      } else {
        plot.setData(data);
      }
    },
    resize() {
      if (plot) plot.setSize({ width: Math.max(300, element.clientWidth), height: 220 });
    },
  };
}

const byKey = (entries) => Object.fromEntries(entries);

const charts = [
  timeChart(document.getElementById('chart-rates'), (s) =>
    byKey(s.rates.flatMap((r) => [[`${r.topic} in`, r.inPerSecond], [`${r.topic} out`, r.outPerSecond], [`${r.topic} dead-lettered`, r.deadLetteredPerSecond]])), 1),
  timeChart(document.getElementById('chart-lag'), (s) => {
    const totals = {};
    for (const l of s.lag) totals[`${l.group} · ${l.topic}`] = (totals[`${l.group} · ${l.topic}`] ?? 0) + l.lag;
    return totals;
  }, 0),
  timeChart(document.getElementById('chart-latency'), (s) =>
    byKey(s.latency.flatMap((l) => [[`${l.name} p50`, l.p50Ms], [`${l.name} p95`, l.p95Ms], [`${l.name} p99`, l.p99Ms]])), 1),
  timeChart(document.getElementById('chart-freshness'), (s) => byKey(s.freshness.map((f) => [f.kind, f.seconds])), 1),
  timeChart(document.getElementById('chart-auc'), (s) => byKey(s.models.map((m) => [m.model, m.auc])), 3),
  timeChart(document.getElementById('chart-logloss'), (s) => byKey(s.models.map((m) => [m.model, m.logloss])), 3),
  timeChart(document.getElementById('chart-samples'), (s) => byKey(s.samples.map((r) => [r.outcome, r.perSecond])), 1),
  timeChart(document.getElementById('chart-ctr'), (s) =>
    byKey(s.experiments.flatMap((e) => e.variants.flatMap((v) => {
      const name = `${e.experimentId} · ${v.name}`;
      return [[name, v.ctr.value], [`${name} low`, v.ctr.low], [`${name} high`, v.ctr.high]];
    }))), 3),
];

function fillTable(id, rows, columns) {
  const body = document.querySelector(`#${id} tbody`);
  body.replaceChildren();
  if (rows.length === 0) {
    const row = body.insertRow();
    const cell = row.insertCell();
    cell.colSpan = columns;
    cell.className = 'empty';
    cell.textContent = 'nothing yet';
    return;
  }
  for (const values of rows) {
    const row = body.insertRow();
    for (const value of values) row.insertCell().textContent = String(value);
  }
}

function renderTables(s) {
  fillTable('table-models', s.models.map((m) => [m.model, m.version, round(m.auc, 4), round(m.logloss, 4)]), 4);
  fillTable('table-experiments', s.experiments.flatMap((e) => e.variants.map((v) => [
    e.experimentId, v.name, v.exposures, v.clicks, `${round(v.ctr.value * 100, 2)}%`,
    `${round(v.ctr.low * 100, 2)}% – ${round(v.ctr.high * 100, 2)}%`,
  ])), 6);
  fillTable('table-latency', s.latency.map((l) => [l.name, round(l.p50Ms, 2), round(l.p95Ms, 2), round(l.p99Ms, 2), l.count]), 5);
  fillTable('table-lag', s.lag.map((l) => [l.group, l.topic, l.partition, round(l.lag, 0)]), 4);
}

const status = document.getElementById('status');
const updated = document.getElementById('updated');
let ticks = 0;

function setStatus(name) {
  status.className = `status ${name}`;
  status.textContent = name;
}

const events = new EventSource('/dashboard/events');
events.addEventListener('open', () => setStatus('live'));
events.addEventListener('error', () => setStatus('reconnecting'));
events.addEventListener('snapshot', (message) => {
  const snapshot = JSON.parse(message.data);
  for (const chart of charts) chart.push(snapshot);
  renderTables(snapshot);
  ticks += 1;
  document.body.dataset.ticks = String(ticks);
  updated.textContent = `updated ${new Date(snapshot.ts).toLocaleTimeString()}`;
  setStatus('live');
});

window.addEventListener('resize', () => {
  for (const chart of charts) chart.resize();
});
