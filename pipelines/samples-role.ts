import type { Log } from '../connectors/log.js';
import { runSamples, TopicSamplesStateStore, type SamplesJob } from './samples.js';

const SAMPLES_FETCH_MIN_RECORDS = 1000;
const SAMPLES_FETCH_MAX_WAIT_MS = 50;

export interface SamplesRoleOptions {
  readonly log: Log;
  readonly topics: { readonly events: string; readonly samples: string; readonly deadLetters: string };
  readonly attributionWindowMs: number;
  readonly maxStateItems: number;
  /**
   * Kafka deployments keep the join state on a topic so a restarted worker resumes its open impressions. The embedded
   * log itself does not outlive the process, so snapshotting the join state there would only cost time.
   */
  readonly checkpointOnLog: boolean;
}

/** The samples role as `eddy samples` and `eddy all` run it, in their process or on its jobs thread. */
export function startSamplesRole(options: SamplesRoleOptions): Promise<SamplesJob> {
  return runSamples({
    log: options.log,
    group: 'eddy-samples',
    topics: options.topics,
    attributionWindowMs: options.attributionWindowMs,
    maxStateItems: options.maxStateItems,
    state: options.checkpointOnLog ? new TopicSamplesStateStore(options.log, 'eddy-samples') : null,
    // Every served request appends its impressions and features; taking them in batches of many requests keeps the
    // per-batch work of the join short and rare.
    fetchMinRecords: SAMPLES_FETCH_MIN_RECORDS,
    fetchMaxWaitMs: SAMPLES_FETCH_MAX_WAIT_MS,
  });
}
