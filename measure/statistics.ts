// Statistics for comparing two dataplanes over repeated runs: descriptive summaries, a seeded
// percentile bootstrap of a ratio, the Mann-Whitney U test with effect sizes, and Holm's correction.
// Every function is pure; randomness comes only from a seed.
import {
  interquartileRange,
  max,
  mean,
  median,
  min,
  quantileSorted,
  sampleStandardDeviation,
  wilcoxonRankSum,
} from "simple-statistics";
import { unsafeUniformIntDistribution, xoroshiro128plus } from "pure-rand";

/** The paper's five statistics plus tail and quartile points of one sample. */
export interface Description {
  readonly n: number;
  readonly min: number;
  readonly max: number;
  readonly mean: number;
  readonly median: number;
  /** Sample standard deviation (divisor n - 1); NaN when n < 2. */
  readonly std: number;
  readonly p25: number;
  readonly p75: number;
  readonly p99: number;
  readonly p999: number;
}

/**
 * Quantile by linear interpolation between order statistics (Hyndman-Fan type 7, R's and numpy's
 * default). With n = 100 the p99 lies between the 99th and 100th value and the p99.9 next to the
 * maximum: tail quantiles over runs are nearly as unstable as the maximum itself.
 */
export function quantile(values: readonly number[], p: number): number {
  return quantileSorted(sortedCopy(values), p);
}

export function describe(values: readonly number[]): Description {
  if (values.length === 0) throw new Error("describe: empty sample");
  const sorted = sortedCopy(values);
  return {
    n: sorted.length,
    min: min(sorted),
    max: max(sorted),
    mean: mean(sorted),
    median: quantileSorted(sorted, 0.5),
    std: sampleStd(sorted),
    p25: quantileSorted(sorted, 0.25),
    p75: quantileSorted(sorted, 0.75),
    p99: quantileSorted(sorted, 0.99),
    p999: quantileSorted(sorted, 0.999),
  };
}

/** Sample standard deviation (n - 1), NaN below two values instead of throwing. */
export function sampleStd(values: readonly number[]): number {
  return values.length < 2 ? Number.NaN : sampleStandardDeviation(values as number[]);
}

/** Interquartile range with type-7 quantiles; the robust companion of a standard deviation. */
export function iqr(values: readonly number[]): number {
  return interquartileRange(values as number[]);
}

export function medianOf(values: readonly number[]): number {
  return median(values as number[]);
}

export function maxOf(values: readonly number[]): number {
  return max(values as number[]);
}

/** Absolute deviations from the sample's median: ranking them compares spreads, not locations. */
export function absoluteDeviationsFromMedian(values: readonly number[]): number[] {
  const m = median(values as number[]);
  return values.map((v) => Math.abs(v - m));
}

/** Count, mean and population standard deviation of one part of a pooled sample. */
export interface Moments {
  readonly n: number;
  readonly mean: number;
  /** Population standard deviation (divisor n). */
  readonly std: number;
}

/**
 * Moments of the union of several parts, exactly, from each part's own: the pooled mean is the
 * count-weighted mean, and the pooled variance sum(n_i (s_i^2 + (m_i - m)^2)) / N adds each part's
 * spread to the spread of its mean around the pooled one (the law of total variance).
 */
export function poolMoments(parts: readonly Moments[]): Moments {
  const used = parts.filter((p) => p.n > 0);
  const n = used.reduce((s, p) => s + p.n, 0);
  if (n === 0) return { n: 0, mean: Number.NaN, std: Number.NaN };
  const m = used.reduce((s, p) => s + p.n * p.mean, 0) / n;
  const variance = used.reduce((s, p) => s + p.n * (p.std * p.std + (p.mean - m) ** 2), 0) / n;
  return { n, mean: m, std: Math.sqrt(variance) };
}

function sortedCopy(values: readonly number[]): number[] {
  return [...values].sort((a, b) => a - b);
}

// ---------------------------------------------------------------------------------------------
// Seeds

/**
 * A 32-bit seed for one comparison, derived from the report seed and the comparison's key
 * (FNV-1a over the key, mixed with the seed), so a cell's interval does not change when other
 * cells, profiles or families are added to the results.
 */
export function seedFor(seed: number, key: string): number {
  let h = 0x811c9dc5 ^ (seed >>> 0);
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h | 0;
}

// ---------------------------------------------------------------------------------------------
// Bootstrap

export interface RatioInterval {
  /** statistic(numerator) / statistic(denominator) on the observed samples. */
  readonly estimate: number;
  readonly low: number;
  readonly high: number;
  readonly confidence: number;
  readonly resamples: number;
  /** Resamples whose ratio was 0/0 (both statistics zero); left out of the interval. */
  readonly undefinedResamples: number;
}

export interface BootstrapOptions {
  readonly resamples: number;
  readonly seed: number;
  /** Two-sided confidence level, e.g. 0.95. */
  readonly confidence: number;
}

export function ratio(a: number, b: number): number {
  return a / b;
}

/**
 * Percentile bootstrap interval of statistic(numerator)/statistic(denominator): each resample
 * draws n values with replacement from each sample independently (the samples are independent
 * groups of runs), and the interval is the (1-c)/2 and (1+c)/2 type-7 quantiles of the resampled
 * ratios (Efron & Tibshirani 1993, ch. 13). Percentile rather than BCa because the ratio of two
 * maxima or standard deviations is not smooth enough for the jackknife acceleration to help, and
 * a percentile interval is invariant under the log transform a ratio invites. Ratios x/0 are
 * +Infinity and stay in; 0/0 resamples are dropped and counted.
 */
export function bootstrapRatio<T>(
  numerator: readonly T[],
  denominator: readonly T[],
  statistic: (sample: T[]) => number,
  options: BootstrapOptions,
): RatioInterval {
  if (numerator.length === 0 || denominator.length === 0) throw new Error("bootstrapRatio: empty sample");
  const rng = xoroshiro128plus(options.seed);
  const a = new Array<T>(numerator.length);
  const b = new Array<T>(denominator.length);
  const estimate = ratio(statistic([...numerator]), statistic([...denominator]));
  return percentileInterval(estimate, options, () => {
    for (let i = 0; i < a.length; i++) a[i] = numerator[unsafeUniformIntDistribution(0, numerator.length - 1, rng)]!;
    for (let i = 0; i < b.length; i++) b[i] = denominator[unsafeUniformIntDistribution(0, denominator.length - 1, rng)]!;
    return ratio(statistic(a), statistic(b));
  });
}

/**
 * Percentile bootstrap interval of numerator(runs)/denominator(runs) where both read the SAME runs (two readings of
 * one measurement, e.g. a meter against exact values): each resample draws runs with replacement and takes both
 * statistics of the drawn runs, so the run-to-run variation they share cancels in the ratio.
 */
export function bootstrapPairedRatio<T>(
  runs: readonly T[],
  numerator: (sample: T[]) => number,
  denominator: (sample: T[]) => number,
  options: BootstrapOptions,
): RatioInterval {
  if (runs.length === 0) throw new Error("bootstrapPairedRatio: empty sample");
  const rng = xoroshiro128plus(options.seed);
  const drawn = new Array<T>(runs.length);
  const estimate = ratio(numerator([...runs]), denominator([...runs]));
  return percentileInterval(estimate, options, () => {
    for (let i = 0; i < drawn.length; i++) drawn[i] = runs[unsafeUniformIntDistribution(0, runs.length - 1, rng)]!;
    return ratio(numerator(drawn), denominator(drawn));
  });
}

/** The (1-c)/2 and (1+c)/2 type-7 quantiles of `resamples` resampled ratios; 0/0 resamples dropped and counted. */
function percentileInterval(estimate: number, options: BootstrapOptions, resampledRatio: () => number): RatioInterval {
  const { resamples, confidence } = options;
  if (!Number.isInteger(resamples) || resamples < 1) throw new Error(`bootstrap: resamples ${resamples}; accepted: a positive integer`);
  if (!(confidence > 0 && confidence < 1)) throw new Error(`bootstrap: confidence ${confidence}; accepted: a number between 0 and 1`);
  const ratios: number[] = [];
  let undefinedResamples = 0;
  for (let r = 0; r < resamples; r++) {
    const q = resampledRatio();
    if (Number.isNaN(q)) undefinedResamples++;
    else ratios.push(q);
  }
  ratios.sort((x, y) => x - y);
  const tail = (1 - confidence) / 2;
  if (ratios.length === 0) {
    return { estimate, low: Number.NaN, high: Number.NaN, confidence, resamples, undefinedResamples };
  }
  return {
    estimate,
    low: quantileAllowingInfinity(ratios, tail),
    high: quantileAllowingInfinity(ratios, 1 - tail),
    confidence,
    resamples,
    undefinedResamples,
  };
}

/** Type-7 quantile of sorted values that may end in +Infinity (interpolating into it gives Infinity). */
function quantileAllowingInfinity(sorted: number[], p: number): number {
  const q = quantileSorted(sorted, p);
  return Number.isNaN(q) ? Number.POSITIVE_INFINITY : q;
}

// ---------------------------------------------------------------------------------------------
// Mann-Whitney U

export interface MannWhitneyResult {
  /** U of the first sample: pairs (x, y) with x > y, ties counting one half. */
  readonly u: number;
  readonly n1: number;
  readonly n2: number;
  /** Two-sided p-value. */
  readonly pValue: number;
  /** "exact" (no ties, n1*n2 <= EXACT_MAX_PAIRS) or "normal" (tie-corrected, continuity-corrected). */
  readonly method: "exact" | "normal";
  /** Probability of superiority P(X > Y) + P(X = Y)/2 = U/(n1 n2). */
  readonly superiority: number;
  /** Cliff's delta P(X > Y) - P(X < Y) = 2 U/(n1 n2) - 1, in [-1, 1]. */
  readonly cliffsDelta: number;
}

/** Largest n1*n2 for which the exact null distribution is computed (about 6 M additions). */
export const EXACT_MAX_PAIRS = 2500;

/**
 * Two-sided Mann-Whitney U test of the first sample against the second.
 * U comes from simple-statistics' rank sum (mid-ranks for ties): U1 = R1 - n1(n1+1)/2.
 * Without ties and for small samples the p-value is exact (the null distribution of U counted by
 * the recurrence of Mann & Whitney 1947); otherwise the normal approximation with the tie-corrected
 * variance n1 n2/12 ((N+1) - sum(t^3 - t)/(N(N-1))) and a continuity correction of 1/2
 * (Hollander & Wolfe, Nonparametric Statistical Methods, 3rd ed., 4.1), the same as R's
 * wilcox.test(exact = FALSE, correct = TRUE) and scipy's mannwhitneyu(method = "asymptotic").
 */
export function mannWhitneyU(x: readonly number[], y: readonly number[]): MannWhitneyResult {
  const n1 = x.length;
  const n2 = y.length;
  if (n1 === 0 || n2 === 0) throw new Error("mannWhitneyU: empty sample");
  const u = wilcoxonRankSum(x as number[], y as number[]) - (n1 * (n1 + 1)) / 2;
  const pairs = n1 * n2;
  const uHigh = Math.max(u, pairs - u);
  const tieSizes = tieGroupSizes([...x, ...y]);
  let pValue: number;
  let method: MannWhitneyResult["method"];
  if (tieSizes.length === 0 && pairs <= EXACT_MAX_PAIRS) {
    method = "exact";
    pValue = Math.min(1, 2 * exactUpperTail(n1, n2, uHigh));
  } else {
    method = "normal";
    const n = n1 + n2;
    const tieTerm = tieSizes.reduce((s, t) => s + t * t * t - t, 0);
    const variance = (pairs / 12) * (n + 1 - tieTerm / (n * (n - 1)));
    if (variance <= 0) {
      pValue = 1; // every value equal: nothing to rank
    } else {
      const z = Math.max(0, uHigh - pairs / 2 - 0.5) / Math.sqrt(variance);
      pValue = Math.min(1, upperNormalTail(z) * 2);
    }
  }
  const superiority = u / pairs;
  return { u, n1, n2, pValue, method, superiority, cliffsDelta: 2 * superiority - 1 };
}

/** P(Z >= z) for a standard normal Z, accurate in relative terms far into the tail. */
export function upperNormalTail(z: number): number {
  return 0.5 * erfc(z / Math.SQRT2);
}

/**
 * Complementary error function with fractional error below 1.2e-7 everywhere (Press et al.,
 * Numerical Recipes in C, 2nd ed., 6.2, erfcc: a Chebyshev fit). simple-statistics' errorFunction
 * uses the same fit but returns 1 - erfc, which rounds tail p-values below about 1e-16 to zero.
 */
function erfc(x: number): number {
  const t = 1 / (1 + 0.5 * Math.abs(x));
  const poly =
    -1.26551223 +
    t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
  const r = t * Math.exp(-x * x + poly);
  return x >= 0 ? r : 2 - r;
}

/** Sizes (> 1) of the groups of equal values. */
function tieGroupSizes(values: number[]): number[] {
  const sorted = values.sort((a, b) => a - b);
  const sizes: number[] = [];
  let run = 1;
  for (let i = 1; i <= sorted.length; i++) {
    if (i < sorted.length && sorted[i] === sorted[i - 1]) run++;
    else {
      if (run > 1) sizes.push(run);
      run = 1;
    }
  }
  return sizes;
}

/**
 * P(U >= u) under the null hypothesis without ties. count(i, j, k), the number of orderings of
 * i x's and j y's with U = k, obeys count(i, j, k) = count(i-1, j, k-j) + count(i, j-1, k): the
 * largest value is either an x (beating all j y's) or a y (beating none).
 */
function exactUpperTail(n1: number, n2: number, u: number): number {
  const size = n1 * n2 + 1;
  let previous: Float64Array[] = Array.from({ length: n2 + 1 }, () => {
    const row = new Float64Array(size);
    row[0] = 1; // i = 0: one ordering, U = 0
    return row;
  });
  for (let i = 1; i <= n1; i++) {
    const current: Float64Array[] = [];
    const first = new Float64Array(size);
    first[0] = 1; // j = 0: one ordering, U = 0
    current.push(first);
    for (let j = 1; j <= n2; j++) {
      const row = new Float64Array(size);
      const below = previous[j]!;
      const left = current[j - 1]!;
      for (let k = 0; k <= i * j; k++) row[k] = (k >= j ? below[k - j]! : 0) + left[k]!;
      current.push(row);
    }
    previous = current;
  }
  const counts = previous[n2]!;
  let total = 0;
  let tail = 0;
  for (let k = 0; k < size; k++) {
    total += counts[k]!;
    if (k >= u) tail += counts[k]!;
  }
  return tail / total;
}

// ---------------------------------------------------------------------------------------------
// Multiple comparisons

/**
 * Holm's step-down adjustment (Holm 1979), controlling the family-wise error rate: sort the m
 * p-values ascending, multiply the i-th smallest by (m - i + 1), carry the running maximum, cap at 1.
 * NaN entries (no test possible) stay NaN and do not count toward m.
 */
export function holmAdjust(pValues: readonly number[]): number[] {
  const order = pValues
    .map((p, i) => ({ p, i }))
    .filter(({ p }) => !Number.isNaN(p))
    .sort((a, b) => a.p - b.p);
  const m = order.length;
  const adjusted = pValues.map(() => Number.NaN);
  let running = 0;
  order.forEach(({ p, i }, rank) => {
    running = Math.max(running, Math.min(1, (m - rank) * p));
    adjusted[i] = running;
  });
  return adjusted;
}

// ---------------------------------------------------------------------------------------------
// Sample size

/** The standard normal quantile: z with P(Z <= z) = p, by bisection on upperNormalTail (as accurate as it: 1.2e-7 relative). */
export function normalQuantile(p: number): number {
  if (!(p > 0 && p < 1)) throw new Error(`normalQuantile: p ${p}; accepted: a probability between 0 and 1`);
  let low = -40;
  let high = 40;
  for (let i = 0; i < 100 && high - low > 1e-10; i++) {
    const mid = (low + high) / 2;
    if (1 - upperNormalTail(mid) < p) low = mid;
    else high = mid;
  }
  return (low + high) / 2;
}

/** The smallest two-sided p-value the exact Mann-Whitney test reaches with n runs in each of two groups, without ties: 2 / C(2n, n). */
export function smallestExactP(n: number): number {
  let c = 1;
  for (let i = 1; i <= n; i++) c = (c * (n + i)) / i;
  return Math.min(1, 2 / c);
}

/** What a comparison of two dataplanes is sized for. */
export interface PowerDesign {
  /** Family-wise error rate over the `tests` comparisons (two-sided). */
  readonly alpha: number;
  /** How many comparisons share it (Holm's correction over them). */
  readonly tests: number;
  /** Probability that one test shows an effect of `minimumEffect`. */
  readonly power: number;
  /** The smallest difference worth showing, as a fraction of the baseline's value: 0.15 = a ratio of 0.85 (or 1/0.85). */
  readonly minimumEffect: number;
  /** Run-to-run coefficient of variation of the tested per-run value (measured on the lab). */
  readonly runCv: number;
}

/**
 * Runs per group that give the two-sided Mann-Whitney test of two groups the design's power.
 * Effect: a shift of the per-run values by the ratio 1 - minimumEffect, on the log scale, where a
 * per-run value with coefficient of variation c has the standard deviation sqrt(ln(1 + c^2))
 * (log-normal); d = |ln(1 - minimumEffect)| / that. For normal values shifted by d standard
 * deviations, P(X > Y) = Phi(d / sqrt 2). Noether's formula (J. Am. Stat. Assoc. 82, 1987) with
 * equal groups then gives n = (z(1 - a/2) + z(power))^2 / (6 (P(X > Y) - 1/2)^2) runs per group, at
 * a = alpha / tests (Bonferroni; Holm's step-down rejects at least what Bonferroni rejects, so it is
 * at least as powerful). At small n the exact test's smallest p-value, 2 / C(2n, n), must lie below
 * a, or no outcome can be significant: n is raised until it does.
 */
export function runsForPower(design: PowerDesign): number {
  const { alpha, tests, power, minimumEffect, runCv } = design;
  const check = (key: keyof PowerDesign, ok: boolean, accepted: string) => {
    if (!ok) throw new Error(`${key}: ${JSON.stringify(design[key])} is not accepted; accepted: ${accepted}`);
  };
  check("alpha", alpha > 0 && alpha < 1, "a probability between 0 and 1, e.g. 0.05");
  check("tests", Number.isInteger(tests) && tests >= 1, "a whole number of tests, at least 1");
  check("power", power > 0 && power < 1, "a probability between 0 and 1, e.g. 0.9");
  check("minimumEffect", minimumEffect > 0 && minimumEffect < 1, "a fraction between 0 and 1, e.g. 0.15");
  check("runCv", runCv > 0, "a positive coefficient of variation, e.g. 0.1");
  const perTest = alpha / tests;
  const d = Math.abs(Math.log(1 - minimumEffect)) / Math.sqrt(Math.log(1 + runCv * runCv));
  const superiority = 1 - upperNormalTail(d / Math.SQRT2);
  const z = normalQuantile(1 - perTest / 2) + normalQuantile(power);
  let n = Math.max(2, Math.ceil((z * z) / (6 * (superiority - 0.5) ** 2)));
  while (smallestExactP(n) >= perTest) n++;
  return n;
}
