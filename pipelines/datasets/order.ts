import type { InputEvent } from '../../schema/events.js';

/**
 * Sorts events by time, stably. At equal timestamps metadata (item, user) comes before behaviour, so a model has
 * heard of an item by the time someone acts on it.
 */
export function timeOrder(events: InputEvent[]): InputEvent[] {
  const rank = (event: InputEvent) => (event.type === 'item' || event.type === 'user' ? 0 : 1);
  return events.sort((a, b) => a.ts - b.ts || rank(a) - rank(b));
}
