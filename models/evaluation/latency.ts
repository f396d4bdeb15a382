/** Upper bounds (ms) of the latency histogram's buckets: roughly 1-2-5 steps from 5 µs to 1 s, then overflow. */
export const LATENCY_BOUNDS_MS = [0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000] as const;

export interface LatencySummary {
  readonly count: number;
  readonly meanMs: number;
  readonly p50Ms: number;
  readonly p95Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
  /** `counts[i]` calls took at most `boundsMs[i]` (and more than the bound before); the last count is the overflow. */
  readonly histogram: { readonly boundsMs: readonly number[]; readonly counts: number[] };
}

/** Records every call's duration, so percentiles are exact rather than read off buckets. */
export class LatencyRecorder {
  private samples = new Float64Array(1024);
  private count = 0;

  record(ms: number): void {
    if (this.count === this.samples.length) {
      const grown = new Float64Array(this.samples.length * 2);
      grown.set(this.samples);
      this.samples = grown;
    }
    this.samples[this.count++] = ms;
  }

  summary(): LatencySummary {
    const sorted = this.samples.slice(0, this.count).sort();
    const counts = new Array<number>(LATENCY_BOUNDS_MS.length + 1).fill(0);
    let sum = 0;
    let bucket = 0;
    for (const ms of sorted) {
      sum += ms;
      while (bucket < LATENCY_BOUNDS_MS.length && ms > LATENCY_BOUNDS_MS[bucket]!) bucket++;
      counts[bucket]!++;
    }
    const at = (q: number) => (sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!);
    return {
      count: sorted.length,
      meanMs: sorted.length === 0 ? 0 : sum / sorted.length,
      p50Ms: at(0.5),
      p95Ms: at(0.95),
      p99Ms: at(0.99),
      maxMs: sorted.length === 0 ? 0 : sorted[sorted.length - 1]!,
      histogram: { boundsMs: [...LATENCY_BOUNDS_MS], counts },
    };
  }
}
