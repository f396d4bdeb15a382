import { map } from 'rxjs';
import type { InputEvent } from '../../schema/events.js';
import { withItems } from '../batch.js';
import { defineOperator, type Operator } from '../operator.js';
import type { MergedCandidate, MultiRecaller } from './merge.js';
import type { RecallRequest, Recaller } from './types.js';

/**
 * The recall seam as batch operators, so a pipeline can place recall in its graph and `describe()` it:
 * - `learnRecall` feeds every behaviour and item event of a batch to a recaller and passes the batch on unchanged
 *   (user events carry nothing recall learns from; they pass through too);
 * - `recallCandidates` answers each request of a batch with its candidates.
 */

export function learnRecall(recaller: Recaller, name = 'learn-recall'): Operator<InputEvent, InputEvent> {
  return defineOperator({ name, kind: 'recall-learn', params: { recaller: recaller.name } }, (source$) =>
    source$.pipe(
      map((batch) => {
        for (const event of batch.items) if (event.type !== 'user') recaller.observe(event);
        return batch;
      }),
    ),
  );
}

export interface RecallResult<R extends RecallRequest = RecallRequest> {
  readonly request: R;
  readonly candidates: readonly MergedCandidate[];
  readonly tookMs: number;
}

export function recallCandidates<R extends RecallRequest>(
  recaller: Pick<MultiRecaller, 'name' | 'recall'>,
  name = 'recall',
): Operator<R, RecallResult<R>> {
  return defineOperator({ name, kind: 'recall', params: { recaller: recaller.name } }, (source$) =>
    source$.pipe(
      map((batch) =>
        withItems(
          batch,
          batch.items.map((request) => {
            const start = performance.now();
            const candidates = recaller.recall(request);
            return { request, candidates, tookMs: performance.now() - start };
          }),
        ),
      ),
    ),
  );
}
