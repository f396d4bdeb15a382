import { concatMap } from 'rxjs';
import { withItems } from './batch.js';
import { defineOperator, type Operator } from './operator.js';

export interface RetryOptions {
  /** Tries in all, the first included. Default 5. */
  readonly attempts?: number;
  /** Wait before the first retry; doubles each time up to `maxBackoffMs`. Default 50 ms. */
  readonly initialBackoffMs?: number;
  /** Default 2,000 ms. */
  readonly maxBackoffMs?: number;
  /** Errors worth another try. Default: every error. */
  readonly isRetriable?: (error: unknown) => boolean;
  /** Told about each failed try that will be retried. */
  readonly onRetry?: (error: unknown, attempt: number) => void;
}

/**
 * Runs an effectful step (a store write, an append) on each batch, retrying transient failures with exponential
 * backoff. A step that still fails after `attempts` fails the stream: the batch's offsets are never committed, so a
 * restarted worker processes it again. Records that can never succeed (poison) belong in the dead-letter side output
 * of the operator that understands them, not here.
 */
export function retrying<A, B>(
  name: string,
  step: (items: readonly A[]) => Promise<readonly B[]>,
  options: RetryOptions = {},
): Operator<A, B> {
  const attempts = options.attempts ?? 5;
  const initialBackoffMs = options.initialBackoffMs ?? 50;
  const maxBackoffMs = options.maxBackoffMs ?? 2000;
  return defineOperator({ name, kind: 'effect', params: { attempts, initialBackoffMs, maxBackoffMs } }, (source$) =>
    source$.pipe(
      concatMap(async (batch) => {
        for (let attempt = 1; ; attempt++) {
          try {
            return withItems(batch, await step(batch.items));
          } catch (error) {
            const retriable = options.isRetriable?.(error) ?? true;
            if (!retriable || attempt >= attempts) {
              throw new Error(`${name} failed after ${attempt} attempt${attempt === 1 ? '' : 's'}`, { cause: error });
            }
            options.onRetry?.(error, attempt);
            const backoff = Math.min(maxBackoffMs, initialBackoffMs * 2 ** (attempt - 1));
            await new Promise((resolve) => setTimeout(resolve, backoff));
          }
        }
      }),
    ),
  );
}
