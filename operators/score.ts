import { concatMap } from 'rxjs';
import { rankWithExploration, type ExplorationOptions } from '../models/exploration.js';
import type { RowFill, ScoreResult, ScoreWithOptions } from '../models/scorer.js';
import { withItems } from './batch.js';
import type { DeadLetter, DeadLetterSink } from './dead-letters.js';
import { defineOperator, type Operator } from './operator.js';

/** A request's candidates and how to write their feature rows, once the features have been looked up. */
export interface Assembly<C> {
  readonly candidates: readonly C[];
  /** Writes candidate i's row into the scorer's preallocated inputs (see `RowFill`). */
  readonly fill: RowFill;
  /** Online wide logit per candidate, added to the deep logit. */
  readonly wideLogits?: ArrayLike<number>;
}

export interface ScoredCandidate<C> {
  readonly candidate: C;
  readonly score: number;
  /** Placed by exploration rather than by score. */
  readonly explored: boolean;
}

export interface Ranked<T, C> {
  readonly request: T;
  /** Best slot first. */
  readonly ranked: readonly ScoredCandidate<C>[];
  readonly modelVersion: string;
}

export interface ScoreOptions<T, C> {
  readonly scorer: { scoreWith(count: number, fill: RowFill, options?: ScoreWithOptions): Promise<ScoreResult> };
  /** Looks up the request's candidate features (from the feature cache) and says how to write them. */
  readonly assemble: (request: T) => Assembly<C> | Promise<Assembly<C>>;
  /** Slots to fill per request. Default: every candidate. */
  readonly slots?: (request: T) => number;
  /** Gives a share of the slots to exploration. Default: none, ranked purely by score. */
  readonly exploration?: ExplorationOptions;
  /** Requests that cannot be scored go here with the reason. */
  readonly deadLetters: DeadLetterSink;
  /** Builds the dead letter for a request (its raw form and source position). */
  readonly deadLetterOf: (request: T, reason: string) => DeadLetter;
  readonly name?: string;
}

const BY_SCORE_ONLY: ExplorationOptions = { share: 0, strategy: 'epsilon-greedy' };

/**
 * The ranking step: each request's candidates are scored in one model run and ordered, with an optional share of the
 * slots given to exploration. Requests of a batch are scored concurrently; each comes out ranked or dead-lettered.
 */
export function scoreCandidates<T, C>(options: ScoreOptions<T, C>): Operator<T, Ranked<T, C>> {
  const { scorer, assemble, exploration, deadLetters } = options;
  const rank = async (request: T): Promise<Ranked<T, C> | undefined> => {
    try {
      const assembly = await assemble(request);
      const { candidates } = assembly;
      const { scores, version } = await scorer.scoreWith(candidates.length, assembly.fill, { wideLogits: assembly.wideLogits });
      const slots = Math.min(options.slots?.(request) ?? candidates.length, candidates.length);
      const { order, explored } = rankWithExploration(scores, exploration ?? BY_SCORE_ONLY, slots);
      return {
        request,
        modelVersion: version,
        ranked: order.map((i, slot) => ({ candidate: candidates[i]!, score: scores[i]!, explored: explored[slot]! })),
      };
    } catch (error) {
      deadLetters.push(options.deadLetterOf(request, `scoring failed: ${error instanceof Error ? error.message : String(error)}`));
      return undefined;
    }
  };
  return defineOperator(
    {
      name: options.name ?? 'score',
      kind: 'score',
      params: { exploration: exploration ? `${exploration.strategy}@${exploration.share}` : 'none' },
      sideOutputs: ['dead-letters'],
    },
    (source$) =>
      source$.pipe(
        concatMap(async (batch) => {
          const results = await Promise.all(batch.items.map(rank));
          return withItems(
            batch,
            results.filter((r): r is Ranked<T, C> => r !== undefined),
          );
        }),
      ),
  );
}
