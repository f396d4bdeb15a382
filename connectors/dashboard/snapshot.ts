/**
 * What the live dashboard shows, one snapshot per tick. Numbers that cannot be known yet (no samples, no requests)
 * are null, so a snapshot always serialises to JSON faithfully.
 */

/** Records per second through one topic since the previous snapshot. */
export interface TopicRates {
  readonly topic: string;
  readonly inPerSecond: number;
  readonly outPerSecond: number;
  readonly deadLetteredPerSecond: number;
}

export interface PartitionLag {
  readonly group: string;
  readonly topic: string;
  readonly partition: number;
  readonly lag: number;
}

/** Latency percentiles of one operation over the recent window, in milliseconds. */
export interface LatencySummary {
  readonly name: string;
  readonly p50Ms: number | null;
  readonly p95Ms: number | null;
  readonly p99Ms: number | null;
  /** Observations in the window. */
  readonly count: number;
}

export interface Freshness {
  /** Entity kind, e.g. `user` or `item`. */
  readonly kind: string;
  readonly seconds: number;
}

export interface ModelQuality {
  readonly model: string;
  readonly version: string;
  readonly auc: number | null;
  readonly logloss: number | null;
}

export interface Interval {
  readonly value: number;
  readonly low: number;
  readonly high: number;
}

export interface VariantSummary {
  readonly name: string;
  readonly exposures: number;
  readonly clicks: number;
  /** Clicks per exposure with its 95% confidence interval. */
  readonly ctr: Interval;
}

export interface ExperimentSummary {
  readonly experimentId: string;
  readonly variants: readonly VariantSummary[];
}

/** Impressions the samples job labelled per second since the previous snapshot, by outcome (or `closed early`). */
export interface SampleRate {
  readonly outcome: string;
  readonly perSecond: number;
}

export interface DashboardSnapshot {
  /** When the snapshot was taken, epoch milliseconds. */
  readonly ts: number;
  readonly rates: readonly TopicRates[];
  readonly lag: readonly PartitionLag[];
  readonly latency: readonly LatencySummary[];
  readonly freshness: readonly Freshness[];
  readonly models: readonly ModelQuality[];
  readonly experiments: readonly ExperimentSummary[];
  /** Empty until a samples job in the process has labelled something. */
  readonly samples: readonly SampleRate[];
}

/** Where the dashboard gets its numbers: asked once per tick, per process (not per browser). */
export interface DashboardSource {
  snapshot(): DashboardSnapshot | Promise<DashboardSnapshot>;
}
