import { concatMap } from 'rxjs';
import type { Guardrails, RollbackDecision } from '../models/guardrails.js';
import { sampleProblem, type Learner, type Sample, type SparseFeatures } from '../models/learner.js';
import { logLoss } from '../models/metrics.js';
import type { ModelPublisher } from '../models/publisher.js';
import type { ModelRegistry } from '../models/registry.js';
import { withItems } from './batch.js';
import type { DeadLetterSink } from './dead-letters.js';
import { defineOperator, type Operator } from './operator.js';

/** What one batch of learning did. */
export interface LearnReport {
  readonly received: number;
  readonly learned: number;
  readonly deadLettered: number;
  /** Mean progressive-validation logloss of the learner itself over this batch (NaN when nothing was learned). */
  readonly learnerLogloss: number;
  /** Versions registered (and sent to the sinks) after this batch. */
  readonly published: readonly string[];
  readonly rollback: RollbackDecision | undefined;
}

export interface LearnOptions<F> {
  readonly learner: Learner<F>;
  /** Needed with `guardrails`, to restore the learner to the version a rollback goes back to. */
  readonly registry?: ModelRegistry;
  /** Scores each sample with the serving version (and its parent) before learning, and rolls bad versions back. */
  readonly guardrails?: Guardrails<F>;
  readonly publisher?: ModelPublisher<F>;
  /** Samples that cannot be learned go here with the reason. */
  readonly deadLetters: DeadLetterSink;
  /** Why a sample cannot be learned, or undefined. Default: `sampleProblem` (hashed sparse samples). */
  readonly validate?: (sample: Sample<F>) => string | undefined;
  /** Topic named as the dead letters' source. Default `samples`. */
  readonly sourceTopic?: string;
  readonly name?: string;
}

/**
 * The trainer loop over batches of samples: for each sample, progressive validation (guardrails score it with the
 * serving and parent versions, the learner predicts it) and then learning; after the batch, the guardrail check
 * (restoring the learner on a rollback) and a publish when one is due. The batch is emitted once the new version
 * has reached every sink, so offsets are committed only for samples whose model is published.
 */
export function learnOperator<F = SparseFeatures>(options: LearnOptions<F>): Operator<Sample<F>, LearnReport> {
  const { learner, guardrails, publisher, registry, deadLetters } = options;
  if (guardrails && !registry) throw new Error('learnOperator: guardrails need the registry to restore the learner on rollback');
  const validate = options.validate ?? (sampleProblem as unknown as (sample: Sample<F>) => string | undefined);
  const sourceTopic = options.sourceTopic ?? 'samples';
  return defineOperator(
    {
      name: options.name ?? 'learn',
      kind: 'learn',
      params: { learner: learner.kind, guardrails: guardrails !== undefined, publisher: publisher !== undefined },
      sideOutputs: ['dead-letters'],
    },
    (source$) =>
      source$.pipe(
        concatMap(async (batch) => {
          let learned = 0;
          let lossSum = 0;
          for (const sample of batch.items) {
            let problem: string | undefined;
            try {
              problem = validate(sample);
            } catch (error) {
              problem = `sample could not be validated: ${error instanceof Error ? error.message : String(error)}`;
            }
            if (problem !== undefined) {
              // Samples reach this operator parsed, without their log position; -1 says so rather than guessing.
              deadLetters.push({ reason: problem, raw: safeJson(sample), source: { topic: sourceTopic, partition: -1, offset: -1 } });
              continue;
            }
            guardrails?.observe(sample);
            const p = learner.learn(sample);
            lossSum += logLoss(p, sample.label);
            learned++;
          }
          publisher?.recordLearned(learned);
          const rollback = guardrails?.check();
          if (rollback && registry) {
            const restored = registry.get(rollback.model, rollback.restored);
            if (restored) {
              learner.restore(restored.payload);
              publisher?.resetCadence();
            }
          }
          const published: string[] = [];
          if (publisher) {
            const entry = await publisher.maybePublish();
            if (entry) published.push(entry.version);
            else await publisher.flush();
          }
          const report: LearnReport = {
            received: batch.items.length,
            learned,
            deadLettered: batch.items.length - learned,
            learnerLogloss: learned === 0 ? NaN : lossSum / learned,
            published,
            rollback,
          };
          return withItems(batch, [report]);
        }),
      ),
  );
}

function safeJson(value: unknown): string {
  try {
    return JSON.stringify(value, (_key, v: unknown) => (ArrayBuffer.isView(v) ? Array.from(v as unknown as ArrayLike<number>) : v)) ?? 'undefined';
  } catch {
    return String(value);
  }
}
