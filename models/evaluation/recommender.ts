import type { InputEvent } from '../../schema/events.js';

/**
 * What the evaluation harness needs from a model: recommend for a user at a moment, then learn from what happened.
 * Baselines implement it directly; a full pipeline plugs in through an adapter.
 */
export interface Recommender {
  /** Unique within a run; the key of the model's figures in the result. */
  readonly name: string;
  /**
   * Up to `k` item ids, best first, for `userId` at event time `now` (ms). Items in `exclude` (the user's past
   * interactions, owned by the harness: do not keep or modify it) must not be returned.
   */
  recommend(userId: string, k: number, now: number, exclude: ReadonlySet<string>): string[] | Promise<string[]>;
  /** Sees every event of the run, in order: behaviour and item/user metadata alike, after it was scored. */
  learn(event: InputEvent): void | Promise<void>;
}
