import type { BehaviourEvent, BehaviourType, FieldMap, Filters, ItemEvent } from '../../schema/events.js';

/**
 * The Recaller seam: a request in, scored candidates out, each tagged with the source that found it. Sources learn
 * online from the event stream through `observe`; event time is `event.ts`, never the wall clock, so replays give the
 * same state.
 */

export interface RecallRequest {
  readonly userId: string;
  /** How many candidates the caller wants from this source. */
  readonly count: number;
  /** Request context, such as `{ genre: 'Drama' }`; sources that recall per attribute read it. */
  readonly context?: FieldMap;
  readonly filters?: Filters;
  /** The user's recent items, most recent first. */
  readonly recentItems: readonly string[];
  /** Request time in ms, on the same clock as event times. */
  readonly now: number;
  /** Items the user has already consumed; never returned. */
  readonly consumed?: ReadonlySet<string>;
  /**
   * Set by the merger so each source skips rejected items while it walks its lists (instead of the merger finding
   * out afterwards that a source's whole list was filtered away). Sources must call it when given.
   */
  readonly accept?: (itemId: string) => boolean;
}

export interface ScoredCandidate {
  readonly itemId: string;
  /** Source-specific relevance; comparable only within one source. */
  readonly score: number;
  readonly source: string;
}

export type RecallEvent = BehaviourEvent | ItemEvent;

export interface Recaller {
  /** Tags every candidate this source returns. */
  readonly name: string;
  /** Best first, at most `request.count`, every item accepted by `request.accept` when given. */
  recall(request: RecallRequest): ScoredCandidate[];
  observe(event: RecallEvent): void;
}

/** How much each behaviour type counts as a signal of interest; a type missing or at 0 is ignored. */
export type EventWeights = Readonly<Partial<Record<BehaviourType, number>>>;

export const DEFAULT_EVENT_WEIGHTS: EventWeights = {
  view: 0.5,
  click: 1,
  like: 2,
  rating: 1,
  add_to_cart: 2,
  purchase: 3,
};

export function isItemEvent(event: RecallEvent): event is ItemEvent {
  return event.type === 'item';
}

/** The weight of a behaviour event under `weights`; 0 for item events and ignored types. */
export function eventWeight(event: RecallEvent, weights: EventWeights): number {
  if (event.type === 'item') return 0;
  const weight = weights[event.type] ?? 0;
  return Number.isFinite(weight) && weight > 0 ? weight : 0;
}
