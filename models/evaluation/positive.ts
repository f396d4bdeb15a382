import type { BehaviourEvent } from '../../schema/events.js';

/** Ratings at or above this value count as liking the item (MovieLens rates 0.5 to 5 stars). */
export const POSITIVE_RATING = 4;

/** Behaviour that shows interest without an explicit value. Impressions and dislikes are not interest. */
const POSITIVE_TYPES: ReadonlySet<BehaviourEvent['type']> = new Set(['click', 'view', 'like', 'add_to_cart', 'purchase']);

/** Whether an event says the user wants the item: a rating of 4 or more, or a click, view, like, cart add or purchase. */
export function isPositive(event: BehaviourEvent): boolean {
  if (event.type === 'rating') return (event.value ?? 0) >= POSITIVE_RATING;
  return POSITIVE_TYPES.has(event.type);
}
