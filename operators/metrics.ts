import { tap } from 'rxjs';
import { Counter, Histogram, type Registry } from 'prom-client';
import { defineOperator, type Operator } from './operator.js';

function metric<T>(registry: Registry, name: string, create: () => T): T {
  return (registry.getSingleMetric(name) as T | undefined) ?? create();
}

/**
 * Counts the items passing a point of the graph and observes how long their batch has been in the graph, labelled
 * with `name`. It changes nothing.
 */
export function metricsTap<T>(name: string, registry: Registry): Operator<T, T> {
  const items = metric(
    registry,
    'eddy_operator_items_total',
    () => new Counter({ name: 'eddy_operator_items_total', help: 'Items that passed a metrics tap', labelNames: ['tap'], registers: [registry] }),
  );
  const latency = metric(
    registry,
    'eddy_operator_batch_latency_seconds',
    () =>
      new Histogram({
        name: 'eddy_operator_batch_latency_seconds',
        help: 'Time from a batch entering the graph to reaching a metrics tap',
        labelNames: ['tap'],
        buckets: [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
        registers: [registry],
      }),
  );
  const itemsHere = items.labels(name);
  const latencyHere = latency.labels(name);
  return defineOperator({ name, kind: 'metrics' }, (source$) =>
    source$.pipe(
      tap((batch) => {
        itemsHere.inc(batch.items.length);
        latencyHere.observe((performance.now() - batch.ticket.createdAt) / 1000);
      }),
    ),
  );
}
