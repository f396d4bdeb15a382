/**
 * The statistics A/B reports need: the normal and chi-square tail probabilities (through the regularised incomplete
 * gamma function, accurate to about 1e-12), Wilson score intervals, and the pooled two-proportion z-test.
 */

/** z for a two-sided 95% interval. */
export const Z_95 = 1.959963984540054;

const LANCZOS = [
  676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059, 12.507343278686905,
  -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7,
];

/** ln Γ(x) for x > 0 (Lanczos, g = 7). */
export function logGamma(x: number): number {
  if (x < 0.5) return Math.log(Math.PI / Math.sin(Math.PI * x)) - logGamma(1 - x);
  const z = x - 1;
  let sum = 0.99999999999980993;
  for (let i = 0; i < LANCZOS.length; i++) sum += LANCZOS[i]! / (z + i + 1);
  const t = z + LANCZOS.length - 0.5;
  return 0.5 * Math.log(2 * Math.PI) + (z + 0.5) * Math.log(t) - t + Math.log(sum);
}

/** Q(a, x) = Γ(a, x) / Γ(a), the upper regularised incomplete gamma function (series below a + 1, else Lentz). */
export function upperGamma(a: number, x: number): number {
  if (!(a > 0)) throw new RangeError(`a must be positive, got ${a}`);
  if (x <= 0) return 1;
  const logPrefix = a * Math.log(x) - x - logGamma(a);
  if (x < a + 1) {
    let term = 1 / a;
    let sum = term;
    for (let n = 1; n < 1000; n++) {
      term *= x / (a + n);
      sum += term;
      if (Math.abs(term) < Math.abs(sum) * 1e-16) break;
    }
    return 1 - sum * Math.exp(logPrefix);
  }
  const tiny = 1e-300;
  let b = x + 1 - a;
  let c = 1 / tiny;
  let d = 1 / b;
  let h = d;
  for (let i = 1; i < 1000; i++) {
    const an = -i * (i - a);
    b += 2;
    d = an * d + b;
    if (Math.abs(d) < tiny) d = tiny;
    c = b + an / c;
    if (Math.abs(c) < tiny) c = tiny;
    d = 1 / d;
    const delta = d * c;
    h *= delta;
    if (Math.abs(delta - 1) < 1e-16) break;
  }
  return Math.exp(logPrefix) * h;
}

/** P(Z > z) for a standard normal Z. */
export function normalUpperTail(z: number): number {
  // erfc(t) = Q(1/2, t^2) for t >= 0, and P(Z > z) = erfc(z / sqrt 2) / 2.
  if (z < 0) return 1 - normalUpperTail(-z);
  return 0.5 * upperGamma(0.5, (z * z) / 2);
}

/** Two-sided p-value of a z statistic. */
export function twoSidedP(z: number): number {
  return Math.min(1, 2 * normalUpperTail(Math.abs(z)));
}

/** P(X > x) for X chi-square distributed with `df` degrees of freedom. */
export function chiSquareUpperTail(x: number, df: number): number {
  return upperGamma(df / 2, x / 2);
}

export interface Interval {
  readonly value: number;
  readonly low: number;
  readonly high: number;
}

/** The Wilson score interval of a proportion; [0, 1] with value 0 when there are no trials. */
export function wilsonInterval(successes: number, trials: number, z = Z_95): Interval {
  if (trials <= 0) return { value: 0, low: 0, high: 1 };
  const p = Math.min(1, successes / trials);
  const z2 = z * z;
  const denominator = 1 + z2 / trials;
  const center = (p + z2 / (2 * trials)) / denominator;
  const half = (z * Math.sqrt((p * (1 - p)) / trials + z2 / (4 * trials * trials))) / denominator;
  // At p = 0 or 1 the bound is exactly 0 or 1; the formula leaves a rounding residue.
  return { value: p, low: p === 0 ? 0 : Math.max(0, center - half), high: p === 1 ? 1 : Math.min(1, center + half) };
}

export interface ProportionTest {
  /** Relative change of the treatment proportion over the control's; null when the control's is 0. */
  readonly lift: number | null;
  readonly z: number;
  readonly pValue: number;
}

/** Pooled two-proportion z-test of treatment against control, two-sided. */
export function twoProportionZTest(controlSuccesses: number, controlTrials: number, successes: number, trials: number): ProportionTest {
  const p1 = controlTrials > 0 ? Math.min(1, controlSuccesses / controlTrials) : 0;
  const p2 = trials > 0 ? Math.min(1, successes / trials) : 0;
  const lift = p1 > 0 ? (p2 - p1) / p1 : null;
  if (controlTrials <= 0 || trials <= 0) return { lift, z: 0, pValue: 1 };
  const pooled = (p1 * controlTrials + p2 * trials) / (controlTrials + trials);
  const se = Math.sqrt(pooled * (1 - pooled) * (1 / controlTrials + 1 / trials));
  if (se === 0) return { lift, z: 0, pValue: 1 };
  const z = (p2 - p1) / se;
  return { lift, z, pValue: twoSidedP(z) };
}

export interface GoodnessOfFit {
  readonly chiSquare: number;
  readonly degreesOfFreedom: number;
  readonly pValue: number;
}

/** Pearson's chi-square test of observed counts against expected proportions. */
export function chiSquareGoodnessOfFit(observed: readonly number[], proportions: readonly number[]): GoodnessOfFit {
  const total = observed.reduce((a, b) => a + b, 0);
  const weight = proportions.reduce((a, b) => a + b, 0);
  const degreesOfFreedom = observed.length - 1;
  if (total === 0 || degreesOfFreedom < 1) return { chiSquare: 0, degreesOfFreedom, pValue: 1 };
  let chiSquare = 0;
  observed.forEach((count, i) => {
    const expected = (total * proportions[i]!) / weight;
    chiSquare += ((count - expected) * (count - expected)) / expected;
  });
  return { chiSquare, degreesOfFreedom, pValue: chiSquareUpperTail(chiSquare, degreesOfFreedom) };
}
