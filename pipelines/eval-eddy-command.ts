import { EddyRecommender } from './eddy-recommender.js';
import { baselines } from './report/evaluate.js';
import { runEvalCommand } from './report/eval-command.js';

/**
 * `eddy eval` with Eddy's full serving path next to the baselines, all fed the same events in one run. Arguments as
 * in `EVAL_USAGE`; `--json` prints `{"protocol":"prequential",...,"models":{"eddy":…,"popularity":…,"itemknn":…}}`.
 */
export async function main(argv: readonly string[]): Promise<number> {
  return runEvalCommand(argv, { models: [new EddyRecommender(), ...baselines()] });
}
