import { join } from 'node:path';
import { EddyRecommender } from '../pipelines/eddy-recommender.js';
import { baselines, runEvaluation, summarise } from '../pipelines/report/evaluate.js';

/**
 * The accuracy target, measured: prequential K = 10 on MovieLens ml-latest-small with Eddy's serving path
 * and the baselines in one run. `--ratings=FILE --movies=FILE` point elsewhere (default ../shared/data/movielens-small).
 * Targets: Eddy's NDCG@10 >= 1.3x item-kNN's and >= 2x popularity's, the whole run in under 5 minutes.
 */
export async function run({ args, log }: { args: Record<string, string>; log: (line: string) => void }): Promise<Record<string, unknown>> {
  const data = join(import.meta.dirname, '../../shared/data/movielens-small');
  const started = performance.now();
  let reported = 0;
  const result = await runEvaluation({
    ratingsPath: args.ratings ?? join(data, 'ratings.csv'),
    moviesPath: args.movies ?? join(data, 'movies.csv'),
    k: 10,
    models: [new EddyRecommender(), ...baselines()],
    onProgress: (done, total) => {
      if (done - reported >= total / 10) {
        reported = done;
        log(`${done}/${total} events`);
      }
    },
  });
  const summary = summarise(result);
  const ndcg = (name: string) => summary.models[name]?.ndcg ?? Number.NaN;
  return {
    ...summary,
    eddyOverItemknn: ndcg('eddy') / ndcg('itemknn'),
    eddyOverPopularity: ndcg('eddy') / ndcg('popularity'),
    eddyLatencyP50Ms: result.models.eddy?.latency.p50Ms,
    eddyLatencyP99Ms: result.models.eddy?.latency.p99Ms,
    elapsedS: (performance.now() - started) / 1000,
  };
}
