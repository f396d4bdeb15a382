import type { OperatorFunction } from 'rxjs';
import type { Batch } from './batch.js';

/** What an operator tells `describe()` about itself. */
export interface OperatorInfo {
  readonly name: string;
  readonly kind: string;
  readonly params?: Readonly<Record<string, unknown>>;
  /** Named outputs besides the main one, such as `dead-letters` or `late`. */
  readonly sideOutputs?: readonly string[];
}

/** A pipeable RxJS operator over batches that can describe itself. */
export type Operator<A, B> = OperatorFunction<Batch<A>, Batch<B>> & { readonly info: OperatorInfo };

export function defineOperator<A, B>(info: OperatorInfo, fn: OperatorFunction<Batch<A>, Batch<B>>): Operator<A, B> {
  return Object.assign(fn, { info });
}
