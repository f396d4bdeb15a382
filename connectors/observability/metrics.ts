/**
 * Eddy's Prometheus metrics, defined once for every role. Each role creates the handles on its registry and updates
 * the ones it owns; `/metrics` exposes them, the live dashboard reads them and the Grafana dashboard queries them, so
 * the three agree by construction.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

type Metric = Counter<string> | Gauge<string> | Histogram<string>;

/**
 * The metric registered under `name`, or a new one. Several roles share one registry in `eddy all`, and
 * `operators/metrics.ts` registers the operator latency histogram on its own, so definitions must be idempotent.
 */
function getOrCreate<M extends Metric>(registry: Registry, name: string, create: (registers: Registry[]) => M): M {
  return (registry.getSingleMetric(name) as M | undefined) ?? create([registry]);
}

/** Buckets for request latencies, in seconds: 0.5 ms to 2.5 s. */
export const LATENCY_BUCKETS_SECONDS: readonly number[] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];

export interface EddyMetrics {
  readonly registry: Registry;
  /** Records read from a topic. */
  readonly eventsIn: Counter<'topic'>;
  /** Records written to a topic. */
  readonly eventsOut: Counter<'topic'>;
  /** Records from a topic that went to the dead-letter topic instead of being processed. */
  readonly eventsDeadLettered: Counter<'topic'>;
  /** Records a consumer group has yet to read from a partition: high watermark minus committed offset. */
  readonly consumerLag: Gauge<'group' | 'topic' | 'partition'>;
  /** Time from a batch entering an operator graph to a metrics tap (shared with `operators/metrics.ts`). */
  readonly operatorLatency: Histogram<'tap'>;
  /** Age of the newest event applied to the feature store, per entity kind (`user`, `item`). */
  readonly featureFreshness: Gauge<'kind'>;
  /** 1 for the version of each model being served; set it with `setServingVersion`. */
  readonly modelVersion: Gauge<'model' | 'version'>;
  /** Online (prequential) AUC of a model version over its rolling window. */
  readonly onlineAuc: Gauge<'model' | 'version'>;
  /** Online log loss of a model version over its rolling window. */
  readonly onlineLogloss: Gauge<'model' | 'version'>;
  /** Time to answer one recommendation request. */
  readonly recommendLatency: Histogram<'variant'>;
  /** Time a request spent in one serving stage (`recall`, `features`, `rank`, `rerank`), where latency goes. */
  readonly recommendStage: Histogram<'stage'>;
  /** Recommendation lists served under an experiment's variant. */
  readonly abExposures: Counter<'experiment' | 'variant'>;
  /** Clicks attributed to an experiment's variant. */
  readonly abClicks: Counter<'experiment' | 'variant'>;
  /** Clicks per exposure of an experiment's variant, derived from the two counters whenever it is read. */
  readonly abCtr: Gauge<'experiment' | 'variant'>;
  /**
   * Impressions the samples job has labelled, by outcome: `positive` and `negative` samples, `skipped` by the labelling
   * policy, and `missing_features` (dead-lettered: no served features were logged for them).
   */
  readonly samplesImpressions: Counter<'outcome'>;
  /** Impressions labelled before their attribution window ended, because the join held its item bound. */
  readonly samplesClosedEarly: Counter<never>;
  /** Items the samples job's attribution join holds: impressions, outcomes and served features. */
  readonly samplesJoinItems: Gauge<never>;
  /**
   * Marks `version` as the one served for `model`, removing the previous version's series (and its online
   * metrics), so Prometheus sees exactly one serving version per model.
   */
  setServingVersion(model: string, version: string): void;
}

const metricsByRegistry = new WeakMap<Registry, EddyMetrics>();

/**
 * Every Eddy metric on `registry`. Calling it again with the same registry returns the same handles, so roles sharing
 * a process (`eddy all`) share the serving-version bookkeeping too.
 */
export function createMetrics(registry: Registry): EddyMetrics {
  let metrics = metricsByRegistry.get(registry);
  if (!metrics) metricsByRegistry.set(registry, (metrics = defineMetrics(registry)));
  return metrics;
}

function defineMetrics(registry: Registry): EddyMetrics {
  const counter = <L extends string>(name: string, help: string, labelNames: readonly L[]) =>
    getOrCreate(registry, name, (registers) => new Counter<L>({ name, help, labelNames, registers }));
  const gauge = <L extends string>(name: string, help: string, labelNames: readonly L[]) =>
    getOrCreate(registry, name, (registers) => new Gauge<L>({ name, help, labelNames, registers }));

  const modelVersion = gauge('eddy_model_serving_version', 'Model version being served (1 for the serving version)', ['model', 'version']);
  const onlineAuc = gauge('eddy_model_online_auc', 'Online AUC of a model version over its rolling window', ['model', 'version']);
  const onlineLogloss = gauge('eddy_model_online_logloss', 'Online log loss of a model version over its rolling window', ['model', 'version']);
  const abExposures = counter('eddy_ab_exposures_total', 'Recommendation lists served per experiment variant', ['experiment', 'variant']);
  const abClicks = counter('eddy_ab_clicks_total', 'Clicks attributed per experiment variant', ['experiment', 'variant']);
  const abCtr = getOrCreate(
    registry,
    'eddy_ab_ctr',
    (registers) =>
      new Gauge<'experiment' | 'variant'>({
        name: 'eddy_ab_ctr',
        help: 'Clicks per exposure per experiment variant',
        labelNames: ['experiment', 'variant'],
        registers,
        // Derived at scrape time from the two counters, so it can never disagree with them.
        async collect() {
          const [exposures, clicks] = await Promise.all([abExposures.get(), abClicks.get()]);
          const clicksOf = new Map(clicks.values.map(({ labels, value }) => [JSON.stringify([labels.experiment, labels.variant]), value]));
          this.reset();
          for (const { labels, value } of exposures.values) {
            if (value <= 0) continue;
            const { experiment, variant } = labels;
            const variantClicks = clicksOf.get(JSON.stringify([experiment, variant])) ?? 0;
            this.set({ experiment: String(experiment), variant: String(variant) }, variantClicks / value);
          }
        },
      }),
  );

  const servingVersions = new Map<string, string>();

  return {
    registry,
    eventsIn: counter('eddy_events_in_total', 'Records read per topic', ['topic']),
    eventsOut: counter('eddy_events_out_total', 'Records written per topic', ['topic']),
    eventsDeadLettered: counter('eddy_events_dead_lettered_total', 'Records dead-lettered per source topic', ['topic']),
    consumerLag: gauge('eddy_consumer_lag_messages', 'Records a consumer group has yet to read per partition', ['group', 'topic', 'partition']),
    operatorLatency: getOrCreate(
      registry,
      'eddy_operator_batch_latency_seconds',
      (registers) =>
        new Histogram<'tap'>({
          name: 'eddy_operator_batch_latency_seconds',
          help: 'Time from a batch entering the graph to reaching a metrics tap',
          labelNames: ['tap'],
          // The same buckets as operators/metrics.ts, whichever of the two registers first.
          buckets: [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
          registers,
        }),
    ),
    featureFreshness: gauge('eddy_feature_freshness_seconds', 'Age of the newest event applied to the feature store', ['kind']),
    modelVersion,
    onlineAuc,
    onlineLogloss,
    recommendLatency: getOrCreate(
      registry,
      'eddy_recommend_latency_seconds',
      (registers) =>
        new Histogram<'variant'>({
          name: 'eddy_recommend_latency_seconds',
          help: 'Time to answer one recommendation request',
          labelNames: ['variant'],
          buckets: [...LATENCY_BUCKETS_SECONDS],
          registers,
        }),
    ),
    recommendStage: getOrCreate(
      registry,
      'eddy_recommend_stage_seconds',
      (registers) =>
        new Histogram<'stage'>({
          name: 'eddy_recommend_stage_seconds',
          help: 'Time one recommendation request spent in each serving stage: recall, features, rank, rerank',
          labelNames: ['stage'],
          buckets: [0.0001, 0.00025, ...LATENCY_BUCKETS_SECONDS],
          registers,
        }),
    ),
    abExposures,
    abClicks,
    abCtr,
    samplesImpressions: counter(
      'eddy_samples_impressions_total',
      'Impressions the samples job labelled, by outcome: positive, negative, skipped, missing_features',
      ['outcome'],
    ),
    samplesClosedEarly: counter(
      'eddy_samples_closed_early_total',
      'Impressions labelled before their attribution window ended, because the join held EDDY_SAMPLES_MAX_ITEMS items',
      [],
    ),
    samplesJoinItems: gauge('eddy_samples_join_items', 'Items the attribution join of the samples job holds', []),
    setServingVersion(model, version) {
      const previous = servingVersions.get(model);
      if (previous !== undefined && previous !== version) {
        for (const metric of [modelVersion, onlineAuc, onlineLogloss]) metric.remove({ model, version: previous });
      }
      servingVersions.set(model, version);
      modelVersion.set({ model, version }, 1);
    },
  };
}
