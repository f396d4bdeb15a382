import { MemoryFeatureStore } from '../../connectors/memory-store.js';
import { FtrlLearner, type FtrlOptions } from '../../models/learners/ftrl.js';
import { mulberry32 } from '../../models/random.js';
import { RowEncoder } from '../../models/row-features.js';
import type { FeatureConfig } from '../../operators/features/config.js';
import type { ServedFeatures } from '../../operators/features/feature-log.js';
import type { FeatureRows } from '../../operators/features/rows.js';
import { OnlineRanker, type Ranker, type RankerScores } from '../../operators/rank.js';
import { Reranker } from '../../operators/rerank/reranker.js';
import type { BehaviourEvent } from '../../schema/events.js';
import { recallStack } from '../recall-stack.js';
import { ServingPipeline } from '../serving.js';
import { catalogueEvents } from './live.js';
import type { Policy } from './loop.js';
import type { World } from './world.js';

/**
 * Simulator policies that serve through Eddy's `ServingPipeline` (recall -> features -> rank -> re-rank), each with
 * its own feature store and recall state fed by the events the loop reports:
 * - `online`: an `OnlineRanker` whose FTRL model learns from every step's impressions and clicks, each impression
 *   labelled by whether it was clicked and encoded (RowEncoder) from the features it was served with (the pipeline's
 *   point-in-time feature log), so training sees exactly what serving saw;
 * - `frozen`: the same, but learning stops after `warmupSteps`; features keep updating, the model does not;
 * - `random`: the same pipeline with a ranker that scores at random: recall without ranking.
 * Items that join the catalogue reach each policy's store and recall as item events (`addItems`), as a catalogue
 * feed would deliver them.
 */

export type EddyPolicyKind = 'online' | 'frozen' | 'random';

export interface EddyPolicyOptions {
  readonly kind: EddyPolicyKind;
  /** Default: the kind. */
  readonly name?: string;
  /** Steps the frozen model learns from before it stops. Default 1,000. */
  readonly warmupSteps?: number;
  /** Default: alpha 0.1, l1 0.1, 18 bits. */
  readonly ftrl?: FtrlOptions;
  /** Candidates recalled per request. Default 100. */
  readonly recallCount?: number;
  /** Re-rank with the default stack's steps (freshness, MMR, caps). Default false: the comparison is of rankers. */
  readonly rerank?: boolean;
  /** Seed of the random ranker. Default 11. */
  readonly seed?: number;
  /** Event time of the catalogue. Default 2026-01-01. */
  readonly startTs?: number;
}

const MINUTE = 60_000;

/**
 * Features for a simulated world: clicks make the history and the genre affinities, which fade within the hour, so a
 * user whose taste moved is served their new taste once they have clicked on it for a while.
 */
export const SIMULATION_FEATURES: FeatureConfig = {
  user: {
    histories: [{ name: 'clicked', types: ['click'], length: 20 }],
    counterTypes: ['click', 'impression'],
    halfLivesMs: { '10m': 10 * MINUTE, '1h': 60 * MINUTE },
    affinityHalfLifeMs: 30 * MINUTE,
  },
  item: { attributeFields: ['genres'] },
  eventWeights: { impression: 0, click: 1 },
};

export interface EddyPolicy extends Policy {
  readonly serving: ServingPipeline;
  readonly store: MemoryFeatureStore;
  readonly learner: FtrlLearner;
  /** Impressions learned from so far. */
  readonly samples: number;
}

/** Scores at random: what recall alone earns. */
class RandomRanker implements Ranker {
  readonly name = 'random';
  readonly version = 'random';
  constructor(private readonly random: () => number) {}
  score(rows: FeatureRows): RankerScores {
    return { scores: Float32Array.from({ length: rows.count }, () => this.random()), version: this.version };
  }
}

export function eddyPolicy(world: World, options: EddyPolicyOptions): EddyPolicy {
  const bits = options.ftrl?.bits ?? 18;
  const learner = new FtrlLearner({ alpha: 0.1, l1: 0.1, ...options.ftrl, bits });
  const encoder = new RowEncoder({ bits });
  const ranker: Ranker = options.kind === 'random' ? new RandomRanker(mulberry32(options.seed ?? 11)) : new OnlineRanker('ftrl', encoder, learner, options.kind);
  const store = new MemoryFeatureStore({ features: SIMULATION_FEATURES });
  const stack = recallStack({ attributes: ['genres'] });
  const served = new Map<string, ServedFeatures>();
  let now = options.startTs ?? Date.UTC(2026, 0, 1);
  const serving = new ServingPipeline({
    store,
    recaller: stack.recaller,
    rankers: { default: ranker },
    reranker: options.rerank ? stack.reranker : new Reranker([]),
    recallCount: options.recallCount ?? 100,
    // The simulated users do not tire of what they clicked, so clicked items may be shown again.
    consumedRings: [],
    featureLog: { push: (entry) => served.set(entry.requestId, entry) },
    clock: () => now,
  });
  const catalogue = catalogueEvents(world, now);
  store.updateSync(catalogue);
  for (const event of catalogue) stack.recaller.observe(event);

  const learnsFor = options.kind === 'online' ? Infinity : options.kind === 'frozen' ? (options.warmupSteps ?? 1000) : 0;
  let steps = 0;
  let samples = 0;
  return {
    name: options.name ?? options.kind,
    serving,
    store,
    learner,
    get samples() {
      return samples;
    },
    async recommend(userId, count, at, requestId) {
      now = at;
      const response = await serving.recommend({ requestId, userId, count });
      return response.items.map((item) => item.itemId);
    },
    async observe(events: readonly BehaviourEvent[]) {
      const requestId = events[0]?.requestId;
      const entry = requestId === undefined ? undefined : served.get(requestId);
      if (requestId !== undefined) served.delete(requestId);
      if (entry && steps++ < learnsFor) {
        const clicked = new Set(events.filter((e) => e.type === 'click').map((e) => e.itemId));
        for (const item of entry.items) {
          learner.learn({ features: encoder.encode(entry.names, item.values, item.itemId), label: clicked.has(item.itemId) ? 1 : 0 });
          samples++;
        }
      }
      store.updateSync(events);
      for (const event of events) stack.recaller.observe(event);
    },
    async addItems(events) {
      store.updateSync(events);
      for (const event of events) stack.recaller.observe(event);
    },
  };
}
