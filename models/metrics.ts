/**
 * Metrics for online learning and evaluation: log loss and ROC AUC (exact, with ties), a rolling window of both for
 * progressive validation, and ranking metrics (NDCG@K, HR@K, MRR) for offline evaluation.
 */

const LOGLOSS_EPSILON = 1e-15;

/** Log loss of one prediction, with p clipped to [1e-15, 1 - 1e-15] so a confident mistake costs about 34.5, not infinity. */
export function logLoss(p: number, label: number): number {
  const q = Math.min(Math.max(p, LOGLOSS_EPSILON), 1 - LOGLOSS_EPSILON);
  return label === 1 ? -Math.log(q) : -Math.log(1 - q);
}

/**
 * ROC AUC as the Mann-Whitney statistic: the probability that a random positive outscores a random negative, ties
 * counting one half. NaN when either class is absent. O(n log n).
 */
export function rocAuc(scores: ArrayLike<number>, labels: ArrayLike<number>, count = scores.length): number {
  let positives = 0;
  for (let i = 0; i < count; i++) if (labels[i] === 1) positives++;
  const negatives = count - positives;
  if (positives === 0 || negatives === 0) return NaN;
  // Each class sorted on its own, by the typed arrays' native numeric sort: a sort of indices through a comparator
  // took milliseconds over a 10,000-sample window, and the trainer asks for it at every check.
  const positiveScores = new Float64Array(positives);
  const negativeScores = new Float64Array(negatives);
  for (let i = 0, p = 0, n = 0; i < count; i++) {
    if (labels[i] === 1) positiveScores[p++] = scores[i]!;
    else negativeScores[n++] = scores[i]!;
  }
  positiveScores.sort();
  negativeScores.sort();
  // Per positive, in ascending order: the negatives below it win it a pair each, those equal to it half a pair.
  let wins = 0;
  let below = 0;
  let notAbove = 0;
  for (let p = 0; p < positives; p++) {
    const score = positiveScores[p]!;
    while (below < negatives && negativeScores[below]! < score) below++;
    if (notAbove < below) notAbove = below;
    while (notAbove < negatives && negativeScores[notAbove]! === score) notAbove++;
    wins += below + (notAbove - below) / 2;
  }
  return wins / (positives * negatives);
}

export interface MetricsSnapshot {
  /** Samples in the window. */
  readonly count: number;
  /** Samples ever added. */
  readonly total: number;
  readonly logloss: number;
  readonly auc: number;
  readonly meanPrediction: number;
  readonly positiveRate: number;
}

/**
 * Log loss and AUC over the last `window` (prediction, label) pairs. Log loss is kept as a running sum (O(1) per
 * sample); AUC is exact, computed over the window when asked (O(window log window)), so ask it per check, not per sample.
 */
export class RollingMetrics {
  private readonly predictions: Float64Array;
  private readonly labels: Uint8Array;
  private readonly losses: Float64Array;
  private next = 0;
  private filled = 0;
  private lossSum = 0;
  private predictionSum = 0;
  private positives = 0;
  total = 0;

  constructor(readonly window = 10_000) {
    if (!Number.isInteger(window) || window < 1) throw new RangeError(`window must be a positive integer, got ${window}`);
    this.predictions = new Float64Array(window);
    this.labels = new Uint8Array(window);
    this.losses = new Float64Array(window);
  }

  add(prediction: number, label: 0 | 1): void {
    const loss = logLoss(prediction, label);
    const slot = this.next;
    if (this.filled === this.window) {
      this.lossSum -= this.losses[slot]!;
      this.predictionSum -= this.predictions[slot]!;
      this.positives -= this.labels[slot]!;
    } else this.filled++;
    this.predictions[slot] = prediction;
    this.labels[slot] = label;
    this.losses[slot] = loss;
    this.lossSum += loss;
    this.predictionSum += prediction;
    this.positives += label;
    this.next = (slot + 1) % this.window;
    this.total++;
    // Re-summing once per window bounds the floating-point drift of the running sums.
    if (this.next === 0) this.resum();
  }

  private resum(): void {
    let loss = 0;
    let prediction = 0;
    for (let i = 0; i < this.filled; i++) {
      loss += this.losses[i]!;
      prediction += this.predictions[i]!;
    }
    this.lossSum = loss;
    this.predictionSum = prediction;
  }

  get count(): number {
    return this.filled;
  }

  logloss(): number {
    return this.filled === 0 ? NaN : this.lossSum / this.filled;
  }

  auc(): number {
    return rocAuc(this.predictions, this.labels, this.filled);
  }

  reset(): void {
    this.next = 0;
    this.filled = 0;
    this.lossSum = 0;
    this.predictionSum = 0;
    this.positives = 0;
    this.total = 0;
  }

  snapshot(): MetricsSnapshot {
    return {
      count: this.filled,
      total: this.total,
      logloss: this.logloss(),
      auc: this.auc(),
      meanPrediction: this.filled === 0 ? NaN : this.predictionSum / this.filled,
      positiveRate: this.filled === 0 ? NaN : this.positives / this.filled,
    };
  }
}

/** Relevance of an item: graded (a map to gains) or binary (a set). */
export type Relevance = ReadonlyMap<string, number> | ReadonlySet<string>;

function gainOf(relevance: Relevance, item: string): number {
  if (relevance instanceof Map) return relevance.get(item) ?? 0;
  return (relevance as ReadonlySet<string>).has(item) ? 1 : 0;
}

/** NDCG@K with gain 2^rel - 1 and log2(rank + 1) discount; 0 when nothing is relevant. */
export function ndcgAtK(ranked: readonly string[], relevance: Relevance, k: number): number {
  const discounted = (gain: number, position: number) => (Math.pow(2, gain) - 1) / Math.log2(position + 2);
  let dcg = 0;
  for (let i = 0; i < Math.min(k, ranked.length); i++) dcg += discounted(gainOf(relevance, ranked[i]!), i);
  const ideal = (relevance instanceof Map ? [...relevance.values()] : [...(relevance as ReadonlySet<string>)].map(() => 1))
    .filter((g) => g > 0)
    .sort((a, b) => b - a)
    .slice(0, k);
  let idcg = 0;
  ideal.forEach((gain, i) => (idcg += discounted(gain, i)));
  return idcg === 0 ? 0 : dcg / idcg;
}

/** 1 when any of the top K is relevant, else 0. */
export function hitRateAtK(ranked: readonly string[], relevance: Relevance, k: number): number {
  for (let i = 0; i < Math.min(k, ranked.length); i++) if (gainOf(relevance, ranked[i]!) > 0) return 1;
  return 0;
}

/** 1 / rank of the first relevant item, 0 when there is none. */
export function reciprocalRank(ranked: readonly string[], relevance: Relevance): number {
  for (let i = 0; i < ranked.length; i++) if (gainOf(relevance, ranked[i]!) > 0) return 1 / (i + 1);
  return 0;
}

/** The mean of a per-list metric over lists (MRR when `metric` is `reciprocalRank`); NaN for no lists. */
export function meanOver<T>(lists: readonly T[], metric: (list: T) => number): number {
  if (lists.length === 0) return NaN;
  let sum = 0;
  for (const list of lists) sum += metric(list);
  return sum / lists.length;
}
