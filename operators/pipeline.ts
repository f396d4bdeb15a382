import type { Observable } from 'rxjs';
import type { Batch } from './batch.js';
import type { Operator, OperatorInfo } from './operator.js';

export interface TopologyNode extends OperatorInfo {
  readonly id: string;
}

export interface TopologyEdge {
  readonly from: string;
  readonly to: string;
  /** The output the edge leaves from: `main`, or a side output's name. */
  readonly output: string;
}

export interface Topology {
  readonly pipeline: string;
  readonly nodes: readonly TopologyNode[];
  readonly edges: readonly TopologyEdge[];
}

/** Where a pipeline reads from or writes to, for `describe()`. */
export interface Endpoint {
  readonly name: string;
  readonly kind: 'topic' | 'store' | 'http' | 'memory' | 'scorer' | 'file';
  readonly params?: Readonly<Record<string, unknown>>;
}

/**
 * An operator graph: sources, a chain of operators, sinks, and where each side output goes. It composes the
 * operators with RxJS `pipe` and can print itself, as a Kafka Streams topology does.
 */
export class Pipeline<In, Out> {
  private constructor(
    readonly name: string,
    private readonly sources: readonly Endpoint[],
    private readonly operators: readonly Operator<unknown, unknown>[],
    private readonly sinks: readonly Endpoint[],
    private readonly sideSinks: ReadonlyMap<string, Endpoint>,
  ) {}

  static from<T>(name: string, ...sources: Endpoint[]): Pipeline<T, T> {
    return new Pipeline<T, T>(name, sources, [], [], new Map());
  }

  pipe<B>(operator: Operator<Out, B>): Pipeline<In, B> {
    return new Pipeline<In, B>(
      this.name,
      this.sources,
      [...this.operators, operator as Operator<unknown, unknown>],
      this.sinks,
      this.sideSinks,
    );
  }

  /** Declares where the main output goes. */
  to(...sinks: Endpoint[]): Pipeline<In, Out> {
    return new Pipeline<In, Out>(this.name, this.sources, this.operators, [...this.sinks, ...sinks], this.sideSinks);
  }

  /** Declares where a side output (such as `dead-letters` or `late`) goes. */
  routeSide(output: string, sink: Endpoint): Pipeline<In, Out> {
    return new Pipeline<In, Out>(this.name, this.sources, this.operators, this.sinks, new Map([...this.sideSinks, [output, sink]]));
  }

  apply(source$: Observable<Batch<In>>): Observable<Batch<Out>> {
    let stream = source$ as Observable<Batch<unknown>>;
    for (const operator of this.operators) stream = operator(stream);
    return stream as Observable<Batch<Out>>;
  }

  describe(): Topology {
    const nodes: TopologyNode[] = [];
    const edges: TopologyEdge[] = [];
    const endpointNode = (e: Endpoint, role: 'source' | 'sink'): TopologyNode => ({
      id: `${role}:${e.kind}:${e.name}`,
      name: e.name,
      kind: `${role}/${e.kind}`,
      ...(e.params ? { params: e.params } : {}),
    });
    const sourceNodes = this.sources.map((s) => endpointNode(s, 'source'));
    nodes.push(...sourceNodes);
    let previous = sourceNodes.map((n) => n.id);
    this.operators.forEach((op, i) => {
      const node: TopologyNode = { id: `${i + 1}:${op.info.name}`, ...op.info };
      nodes.push(node);
      for (const from of previous) edges.push({ from, to: node.id, output: 'main' });
      for (const side of op.info.sideOutputs ?? []) {
        const sink = this.sideSinks.get(side);
        if (!sink) continue;
        const sinkNode = endpointNode(sink, 'sink');
        if (!nodes.some((n) => n.id === sinkNode.id)) nodes.push(sinkNode);
        edges.push({ from: node.id, to: sinkNode.id, output: side });
      }
      previous = [node.id];
    });
    for (const sink of this.sinks) {
      const sinkNode = endpointNode(sink, 'sink');
      if (!nodes.some((n) => n.id === sinkNode.id)) nodes.push(sinkNode);
      for (const from of previous) edges.push({ from, to: sinkNode.id, output: 'main' });
    }
    return { pipeline: this.name, nodes, edges };
  }
}

/** A Topology as text, one node a line with its outgoing edges, like Kafka Streams' TopologyDescription. */
export function formatTopology(topology: Topology): string {
  const lines = [`Pipeline: ${topology.pipeline}`];
  for (const node of topology.nodes) {
    const params = node.params && Object.keys(node.params).length > 0 ? ` ${JSON.stringify(node.params)}` : '';
    lines.push(`  ${node.id} (${node.kind})${params}`);
    for (const edge of topology.edges.filter((e) => e.from === node.id)) {
      lines.push(`    --${edge.output === 'main' ? '' : `[${edge.output}]`}--> ${edge.to}`);
    }
  }
  return lines.join('\n');
}
