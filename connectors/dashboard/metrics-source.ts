import type { MetricValue } from 'prom-client';
import { wilsonInterval } from '../../models/ab/stats.js';
import type { EddyMetrics } from '../observability/metrics.js';
import type { DashboardSnapshot, DashboardSource, ExperimentSummary, LatencySummary, SampleRate, TopicRates } from './snapshot.js';

export interface MetricsSourceOptions {
  /** Latency percentiles cover the observations of this recent window. Default 10,000 ms. */
  readonly windowMs?: number;
  /** Clock, epoch milliseconds. Default `Date.now`. */
  readonly now?: () => number;
}

/** Cumulative counts per upper bound (`le`), for one histogram series. */
type Buckets = ReadonlyMap<number, number>;

interface HistogramReading {
  readonly ts: number;
  /** Per summary name. */
  readonly series: ReadonlyMap<string, Buckets>;
}

/**
 * The value below which a fraction `q` of the observations fall, interpolated linearly inside the bucket holding
 * it (as Prometheus' `histogram_quantile` does); null without observations. Observations above the largest finite
 * bound are reported at that bound.
 */
export function histogramQuantile(q: number, buckets: Buckets): number | null {
  const bounds = [...buckets.keys()].sort((a, b) => a - b);
  const total = buckets.get(Infinity) ?? (bounds.length > 0 ? buckets.get(bounds[bounds.length - 1]!)! : 0);
  if (total <= 0) return null;
  const rank = q * total;
  let lowerBound = 0;
  let lowerCount = 0;
  for (const bound of bounds) {
    const count = buckets.get(bound)!;
    if (count >= rank) {
      if (bound === Infinity) return lowerBound;
      const inBucket = count - lowerCount;
      return inBucket <= 0 ? bound : lowerBound + ((bound - lowerBound) * (rank - lowerCount)) / inBucket;
    }
    lowerBound = bound;
    lowerCount = count;
  }
  return lowerBound;
}

function sumBy(values: readonly MetricValue<string>[], label: string): Map<string, number> {
  const sums = new Map<string, number>();
  for (const { labels, value } of values) {
    const key = String(labels[label] ?? '');
    sums.set(key, (sums.get(key) ?? 0) + value);
  }
  return sums;
}

/** Buckets per value of `label` (all series summed when label is undefined), from a histogram's values. */
function bucketsBy(values: readonly MetricValue<string>[], label: string | undefined, prefix: string): Map<string, Map<number, number>> {
  const series = new Map<string, Map<number, number>>();
  for (const { labels, value, metricName } of values as (MetricValue<string> & { metricName?: string })[]) {
    if (!metricName?.endsWith('_bucket')) continue;
    const name = label === undefined ? prefix : `${prefix} ${String(labels[label] ?? '')}`;
    const le = labels.le === '+Inf' ? Infinity : Number(labels.le);
    let buckets = series.get(name);
    if (!buckets) series.set(name, (buckets = new Map()));
    buckets.set(le, (buckets.get(le) ?? 0) + value);
  }
  return series;
}

function difference(current: Buckets, earlier: Buckets | undefined): Buckets {
  if (!earlier) return current;
  const delta = new Map<number, number>();
  for (const [bound, count] of current) delta.set(bound, count - (earlier.get(bound) ?? 0));
  // A restarted process resets its counters; its whole history is then the window.
  return [...delta.values()].some((count) => count < 0) ? current : delta;
}

const toMs = (seconds: number | null) => (seconds === null ? null : seconds * 1000);

/**
 * A dashboard source reading this process' Eddy metrics: rates are the counters' change since the previous
 * snapshot, latency percentiles come from the histograms' buckets over the recent window, CTR intervals are Wilson
 * intervals of clicks per exposure.
 */
export function metricsDashboardSource(metrics: EddyMetrics, options: MetricsSourceOptions = {}): DashboardSource {
  const windowMs = options.windowMs ?? 10_000;
  const now = options.now ?? Date.now;
  let previousCounts: { ts: number; totals: ReadonlyMap<string, readonly [number, number, number]> } | undefined;
  let previousSamples: ReadonlyMap<string, number> = new Map();
  const readings: HistogramReading[] = [];

  return {
    async snapshot(): Promise<DashboardSnapshot> {
      const ts = now();
      const [eventsIn, eventsOut, deadLettered, lag, recommend, operators, freshness, versions, auc, logloss, exposures, clicks, labelled, closedEarly] =
        await Promise.all([
          metrics.eventsIn.get(),
          metrics.eventsOut.get(),
          metrics.eventsDeadLettered.get(),
          metrics.consumerLag.get(),
          metrics.recommendLatency.get(),
          metrics.operatorLatency.get(),
          metrics.featureFreshness.get(),
          metrics.modelVersion.get(),
          metrics.onlineAuc.get(),
          metrics.onlineLogloss.get(),
          metrics.abExposures.get(),
          metrics.abClicks.get(),
          metrics.samplesImpressions.get(),
          metrics.samplesClosedEarly.get(),
        ]);

      const inByTopic = sumBy(eventsIn.values, 'topic');
      const outByTopic = sumBy(eventsOut.values, 'topic');
      const deadByTopic = sumBy(deadLettered.values, 'topic');
      const topics = [...new Set([...inByTopic.keys(), ...outByTopic.keys(), ...deadByTopic.keys()])].sort();
      const totals = new Map(topics.map((t) => [t, [inByTopic.get(t) ?? 0, outByTopic.get(t) ?? 0, deadByTopic.get(t) ?? 0] as const]));
      const seconds = previousCounts ? (ts - previousCounts.ts) / 1000 : 0;
      const rate = (topic: string, index: 0 | 1 | 2) => {
        const current = totals.get(topic)![index];
        const before = previousCounts?.totals.get(topic)?.[index] ?? 0;
        if (seconds <= 0) return 0;
        return (current >= before ? current - before : current) / seconds;
      };
      const rates: TopicRates[] = topics.map((topic) => ({
        topic,
        inPerSecond: rate(topic, 0),
        outPerSecond: rate(topic, 1),
        deadLetteredPerSecond: rate(topic, 2),
      }));
      previousCounts = { ts, totals };

      const sampleTotals = sumBy(labelled.values, 'outcome');
      // An unlabelled counter reads 0 before its first increment, even in a process that runs no samples job.
      const closedEarlyTotal = closedEarly.values[0]?.value ?? 0;
      if (closedEarlyTotal > 0) sampleTotals.set('closed early', closedEarlyTotal);
      const samples: SampleRate[] = [...sampleTotals].map(([outcome, total]) => {
        const before = previousSamples.get(outcome) ?? 0;
        return { outcome: outcome.replace(/_/g, ' '), perSecond: seconds > 0 ? (total >= before ? total - before : total) / seconds : 0 };
      });
      previousSamples = sampleTotals;

      const series = new Map([...bucketsBy(recommend.values, undefined, 'recommend'), ...bucketsBy(operators.values, 'tap', 'operator')]);
      readings.push({ ts, series });
      while (readings.length > 1 && readings[1]!.ts <= ts - windowMs) readings.shift();
      const oldest = readings.length > 1 ? readings[0] : undefined;
      const latency: LatencySummary[] = [...series].map(([name, buckets]) => {
        const window = difference(buckets, oldest?.series.get(name));
        return {
          name,
          p50Ms: toMs(histogramQuantile(0.5, window)),
          p95Ms: toMs(histogramQuantile(0.95, window)),
          p99Ms: toMs(histogramQuantile(0.99, window)),
          count: window.get(Infinity) ?? 0,
        };
      });

      const qualityOf = (values: readonly MetricValue<string>[], model: string, version: string) => {
        const value = values.find((v) => v.labels.model === model && v.labels.version === version)?.value;
        return value === undefined || !Number.isFinite(value) ? null : value;
      };
      const models = versions.values
        .filter((v) => v.value === 1)
        .map(({ labels }) => {
          const model = String(labels.model);
          const version = String(labels.version);
          return { model, version, auc: qualityOf(auc.values, model, version), logloss: qualityOf(logloss.values, model, version) };
        });

      const variantKey = (labels: Partial<Record<string, string | number>>) => JSON.stringify([labels.experiment, labels.variant]);
      const clicksByVariant = new Map(clicks.values.map((v) => [variantKey(v.labels), v.value]));
      const experiments = new Map<string, ExperimentSummary['variants'][number][]>();
      for (const { labels, value } of exposures.values) {
        const experimentId = String(labels.experiment);
        const variantClicks = clicksByVariant.get(variantKey(labels)) ?? 0;
        const variants = experiments.get(experimentId) ?? [];
        variants.push({ name: String(labels.variant), exposures: value, clicks: variantClicks, ctr: wilsonInterval(variantClicks, value) });
        experiments.set(experimentId, variants);
      }

      return {
        ts,
        rates,
        lag: lag.values.map(({ labels, value }) => ({
          group: String(labels.group ?? ''),
          topic: String(labels.topic ?? ''),
          partition: Number(labels.partition ?? 0),
          lag: value,
        })),
        latency,
        freshness: freshness.values.map(({ labels, value }) => ({ kind: String(labels.kind ?? ''), seconds: value })),
        models,
        experiments: [...experiments].map(([experimentId, variants]) => ({
          experimentId,
          variants: variants.sort((a, b) => a.name.localeCompare(b.name)),
        })),
        samples,
      };
    },
  };
}
