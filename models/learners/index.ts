import type { ModelVersion, Predictor, SparseFeatures } from '../learner.js';
import { FTRL_KIND, FtrlLearner, ftrlPredictor } from './ftrl.js';
import { ONLINE_FM_KIND, OnlineFmLearner } from './online-fm.js';
import { ONLINE_HEAD_KIND, OnlineHeadLearner, OnlineHeadPredictor, type HeadFeatures } from './online-head.js';

/**
 * A predictor for an exported version of any learner kind here. FTRL and the online head get their serving forms;
 * the FM serves from a learner restored from the version (its prediction already reads flat arrays).
 */
export function predictorFor(version: ModelVersion): Predictor<SparseFeatures> | Predictor<HeadFeatures> {
  switch (version.kind) {
    case FTRL_KIND:
      return ftrlPredictor(version);
    case ONLINE_FM_KIND:
      return OnlineFmLearner.fromVersion(version);
    case ONLINE_HEAD_KIND:
      return new OnlineHeadPredictor(version);
    default:
      throw new Error(`no loader for model kind "${version.kind}" (model ${version.model}@${version.version})`);
  }
}

export { FtrlLearner, OnlineFmLearner, OnlineHeadLearner, OnlineHeadPredictor };
