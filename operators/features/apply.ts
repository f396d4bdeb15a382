import { concatMap } from 'rxjs';
import type { FeatureStore } from '../../connectors/feature-store.js';
import type { InputEvent } from '../../schema/events.js';
import { defineOperator, type Operator } from '../operator.js';

/**
 * Applies each batch's events to the feature store, in order, with the positions the batch reaches, and passes the
 * events on. The next batch waits until the store has taken this one (a Redis-backed store may load missing keys).
 */
export function applyFeatureUpdates(store: FeatureStore): Operator<InputEvent, InputEvent> {
  return defineOperator({ name: 'feature-updates', kind: 'store-update', params: { store: store.kind, features: store.names.length } }, (source$) =>
    source$.pipe(
      concatMap(async (batch) => {
        await store.update(batch.items, batch.ticket.positions);
        return batch;
      }),
    ),
  );
}
