import { describe as suite, expect, it } from "vitest";
import {
  absoluteDeviationsFromMedian,
  bootstrapPairedRatio,
  bootstrapRatio,
  describe,
  holmAdjust,
  iqr,
  mannWhitneyU,
  normalQuantile,
  poolMoments,
  quantile,
  runsForPower,
  sampleStd,
  seedFor,
  smallestExactP,
  upperNormalTail,
} from "../../measure/statistics.js";
import { Synthetic } from "./statistics-fixtures.js";

suite("describe", () => {
  // Hand-computed: mean 40/8 = 5; squared deviations sum to 32, so the sample variance is 32/7.
  // Type-7 quantiles: index (n-1)p = 7p; p25 -> 1.75 -> 4, p75 -> 5.25 -> 5 + 0.25*(7-5) = 5.5,
  // p99 -> 6.93 -> 7 + 0.93*(9-7) = 8.86, p99.9 -> 6.993 -> 8.986.
  const d = describe([9, 4, 2, 4, 5, 4, 7, 5]);
  it("gives the paper's five statistics with the sample standard deviation", () => {
    expect(d.n).toBe(8);
    expect(d.min).toBe(2);
    expect(d.max).toBe(9);
    expect(d.mean).toBe(5);
    expect(d.median).toBe(4.5);
    expect(d.std).toBeCloseTo(Math.sqrt(32 / 7), 12);
  });
  it("gives type-7 quartiles and tail quantiles", () => {
    expect(d.p25).toBeCloseTo(4, 12);
    expect(d.p75).toBeCloseTo(5.5, 12);
    expect(d.p99).toBeCloseTo(8.86, 12);
    expect(d.p999).toBeCloseTo(8.986, 12);
    expect(quantile([3, 1, 2], 0.5)).toBe(2);
  });
  it("returns NaN for the standard deviation of one value and rejects an empty sample", () => {
    expect(describe([3]).std).toBeNaN();
    expect(sampleStd([1])).toBeNaN();
    expect(() => describe([])).toThrow(/empty/);
  });
  it("measures spread robustly", () => {
    expect(iqr([9, 4, 2, 4, 5, 4, 7, 5])).toBeCloseTo(1.5, 12);
    expect(absoluteDeviationsFromMedian([1, 2, 10])).toEqual([1, 0, 8]);
  });
});

suite("poolMoments", () => {
  it("gives the moments of the union of the parts", () => {
    // Parts [1, 3] (mean 2, population sd 1) and [5, 5, 8] (mean 6, sd sqrt(2)) pool to
    // [1, 3, 5, 5, 8]: mean 22/5 = 4.4, population variance (11.56+1.96+0.36+0.36+12.96)/5 = 5.44.
    const pooled = poolMoments([
      { n: 2, mean: 2, std: 1 },
      { n: 3, mean: 6, std: Math.sqrt(2) },
      { n: 0, mean: Number.NaN, std: Number.NaN },
    ]);
    expect(pooled.n).toBe(5);
    expect(pooled.mean).toBeCloseTo(4.4, 12);
    expect(pooled.std).toBeCloseTo(Math.sqrt(5.44), 12);
    expect(poolMoments([]).mean).toBeNaN();
  });
});

/** P(U >= u) by listing every way to place the first sample among n1 + n2 ranks. */
function bruteForceTwoSided(n1: number, n2: number, u: number): number {
  const uHigh = Math.max(u, n1 * n2 - u);
  let total = 0;
  let tail = 0;
  const place = (start: number, left: number, chosen: number[]): void => {
    if (left === 0) {
      // U = sum over x of the y's below it = sum(rank) - n1(n1+1)/2 with 1-based ranks.
      const uHere = chosen.reduce((s, r) => s + r + 1, 0) - (n1 * (n1 + 1)) / 2;
      total++;
      if (uHere >= uHigh) tail++;
      return;
    }
    for (let r = start; r <= n1 + n2 - left; r++) place(r + 1, left - 1, [...chosen, r]);
  };
  place(0, n1, []);
  return Math.min(1, (2 * tail) / total);
}

suite("mannWhitneyU", () => {
  // Hollander & Wolfe (1973) p. 69, the example of R's ?wilcox.test: permeability constants of the
  // human chorioamnion. R prints W = 35 and the one-sided exact p = 0.1272, so two-sided 0.2544
  // (scipy.stats.mannwhitneyu(method="exact") gives 0.2544122544122544).
  const x = [0.8, 0.83, 1.89, 1.04, 1.45, 1.38, 1.91, 1.64, 0.73, 1.46];
  const y = [1.15, 0.88, 0.9, 0.74, 1.21];

  it("matches the textbook exact p-value and gives U and the effect sizes", () => {
    const r = mannWhitneyU(x, y);
    expect(r.method).toBe("exact");
    expect(r.u).toBe(35);
    expect(r.pValue).toBeCloseTo(0.2544122544122544, 10);
    expect(r.superiority).toBeCloseTo(35 / 50, 12);
    expect(r.cliffsDelta).toBeCloseTo(0.4, 12);
    // The test is symmetric: swapping the samples mirrors U and the effect, not the p-value.
    const s = mannWhitneyU(y, x);
    expect(s.u).toBe(15);
    expect(s.pValue).toBeCloseTo(r.pValue, 12);
    expect(s.cliffsDelta).toBeCloseTo(-0.4, 12);
  });

  it("computes the exact null distribution like a full enumeration", () => {
    const a = [3.1, 7.2, 1.5, 9.9, 4.4, 6.0];
    const b = [2.2, 8.1, 5.5, 0.7, 10.3, 11.8, 12.4];
    const r = mannWhitneyU(a, b);
    expect(r.method).toBe("exact");
    expect(r.pValue).toBeCloseTo(bruteForceTwoSided(6, 7, r.u), 12);
  });

  it("uses the tie-corrected normal approximation with continuity correction when values tie", () => {
    // Hand-computed: pooled ranks 1 | 3 3 3 | 5.5 5.5 | 7 | 8, R_x = 1+3+3+5.5 = 12.5, U = 12.5 - 10 = 2.5.
    // Ties of 3 and 2: sum(t^3 - t) = 30; var = 16/12 * (9 - 30/56) = 11.2857; z = (|2.5-8| - 0.5)/3.3594 = 1.4884.
    // p = 2 P(Z > 1.4884) = 0.13666 (scipy asymptotic: 0.1366582477381475).
    const r = mannWhitneyU([1, 2, 2, 3], [2, 3, 4, 5]);
    expect(r.method).toBe("normal");
    expect(r.u).toBe(2.5);
    expect(r.pValue).toBeCloseTo(0.1366582477381475, 6);
  });

  it("uses the normal approximation for large samples and finds a clear shift", () => {
    const g = new Synthetic(7);
    const r = mannWhitneyU(g.normals(100, 1, 1), g.normals(100, 0, 1));
    expect(r.method).toBe("normal");
    expect(r.pValue).toBeLessThan(1e-6);
    expect(r.cliffsDelta).toBeGreaterThan(0.3);
    const same = mannWhitneyU(g.normals(100, 0, 1), g.normals(100, 0, 1));
    expect(same.pValue).toBeGreaterThan(0.01);
  });

  it("gives p = 1 when every value is equal", () => {
    const r = mannWhitneyU([5, 5, 5], [5, 5, 5, 5]);
    expect(r.pValue).toBe(1);
    expect(r.cliffsDelta).toBe(0);
  });

  it("has a normal tail accurate in relative terms, deep into the tail", () => {
    // Reference values: scipy.stats.norm.sf.
    expect(upperNormalTail(1.959964)).toBeCloseTo(0.024999999096442398, 7);
    expect(upperNormalTail(0)).toBeCloseTo(0.5, 7);
    expect(upperNormalTail(-1)).toBeCloseTo(0.8413447460685429, 7);
    expect(Math.abs(upperNormalTail(10) / 7.61985302416047e-24 - 1)).toBeLessThan(1e-6);
  });
});

suite("holmAdjust", () => {
  it("multiplies the i-th smallest p by (m - i + 1) and keeps the sequence monotone", () => {
    // Sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> raised to 0.06.
    const adjusted = holmAdjust([0.01, 0.04, 0.03, 0.005]);
    expect(adjusted[0]).toBeCloseTo(0.03, 12);
    expect(adjusted[1]).toBeCloseTo(0.06, 12);
    expect(adjusted[2]).toBeCloseTo(0.06, 12);
    expect(adjusted[3]).toBeCloseTo(0.02, 12);
  });
  it("caps at 1 and leaves missing tests out of m", () => {
    const adjusted = holmAdjust([0.4, Number.NaN, 0.6]);
    expect(adjusted[0]).toBeCloseTo(0.8, 12);
    expect(adjusted[1]).toBeNaN();
    expect(adjusted[2]).toBeCloseTo(0.8, 12);
    expect(holmAdjust([0.9, 0.8])).toEqual([1, 1]);
  });
});

suite("bootstrapRatio", () => {
  const sd = (xs: number[]) => sampleStd(xs);
  const options = { resamples: 2000, seed: 11, confidence: 0.95 };

  it("is reproducible with a seed and changes with it", () => {
    const g = new Synthetic(3);
    const a = g.normals(100, 10, 2);
    const b = g.normals(100, 10, 1);
    const first = bootstrapRatio(a, b, sd, options);
    const again = bootstrapRatio(a, b, sd, options);
    expect(again).toEqual(first);
    const other = bootstrapRatio(a, b, sd, { ...options, seed: 12 });
    expect(other.low).not.toBe(first.low);
    expect(first.estimate).toBeCloseTo(sd(a) / sd(b), 12);
    expect(first.low).toBeLessThan(first.estimate);
    expect(first.high).toBeGreaterThan(first.estimate);
  });

  it("covers a known ratio of standard deviations in most of many synthetic experiments", () => {
    // True ratio 2. A 95% percentile interval with n = 100 covers it in roughly 90-95% of
    // experiments; fewer than 80 of 100 would mean the interval is too narrow or off-centre.
    const g = new Synthetic(2025);
    let covered = 0;
    let excludesOne = 0;
    for (let e = 0; e < 100; e++) {
      const ci = bootstrapRatio(g.normals(100, 50, 4), g.normals(100, 50, 2), sd, { ...options, seed: e });
      if (ci.low <= 2 && 2 <= ci.high) covered++;
      if (ci.low > 1) excludesOne++;
    }
    expect(covered).toBeGreaterThanOrEqual(80);
    expect(excludesOne).toBe(100);
  });

  it("contains 1 when both groups come from one distribution", () => {
    const g = new Synthetic(5);
    const ci = bootstrapRatio(g.normals(100, 0, 1), g.normals(100, 0, 1), sd, options);
    expect(ci.low).toBeLessThan(1);
    expect(ci.high).toBeGreaterThan(1);
  });

  it("keeps x/0 as infinity and drops 0/0", () => {
    const ci = bootstrapRatio([1, 1, 1], [2, 2, 2], sd, { ...options, resamples: 50 });
    expect(ci.undefinedResamples).toBe(50);
    expect(ci.low).toBeNaN();
    const inf = bootstrapRatio([1, 2, 3], [2, 2, 2], sd, { ...options, resamples: 50 });
    expect(inf.high).toBe(Number.POSITIVE_INFINITY);
  });

  it("rejects bad options naming them", () => {
    expect(() => bootstrapRatio([1], [1], sd, { ...options, resamples: 0 })).toThrow(/resamples 0/);
    expect(() => bootstrapRatio([1], [1], sd, { ...options, confidence: 95 })).toThrow(/confidence 95/);
  });
});

suite("bootstrapPairedRatio", () => {
  const options = { resamples: 2000, seed: 11, confidence: 0.95 };
  const meanOf = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;

  it("reads both statistics from the same drawn runs: a reading that is a fixed multiple of the other has a point interval", () => {
    // Runs that differ a lot from each other; one reading is exactly twice the other in every run.
    const runs = new Synthetic(8).normals(30, 10, 4).map((exact) => ({ exact, meter: 2 * exact }));
    const ci = bootstrapPairedRatio(runs, (s) => meanOf(s.map((r) => r.meter)), (s) => meanOf(s.map((r) => r.exact)), options);
    expect([ci.estimate, ci.low, ci.high].map((x) => Number(x.toFixed(12)))).toEqual([2, 2, 2]);
    // Drawn independently, the same runs would give a wide interval.
    const independent = bootstrapRatio(runs.map((r) => r.meter), runs.map((r) => r.exact), meanOf, options);
    expect(independent.high - independent.low).toBeGreaterThan(0.3);
  });

  it("is reproducible with a seed, and its interval holds the estimate when the readings differ run to run", () => {
    const g = new Synthetic(4);
    const runs = g.normals(40, 10, 2).map((exact) => ({ exact, meter: exact * (1.5 + g.normal(0, 0.2)) }));
    const num = (s: typeof runs) => meanOf(s.map((r) => r.meter));
    const den = (s: typeof runs) => meanOf(s.map((r) => r.exact));
    const ci = bootstrapPairedRatio(runs, num, den, options);
    expect(bootstrapPairedRatio(runs, num, den, options)).toEqual(ci);
    expect(ci.low).toBeLessThan(ci.estimate);
    expect(ci.high).toBeGreaterThan(ci.estimate);
    expect(ci.estimate).toBeCloseTo(num(runs) / den(runs), 12);
    expect(() => bootstrapPairedRatio([], num, den, options)).toThrow(/empty sample/);
  });
});

suite("seedFor", () => {
  it("is stable, depends on key and seed", () => {
    expect(seedFor(1, "a")).toBe(seedFor(1, "a"));
    expect(seedFor(1, "a")).not.toBe(seedFor(1, "b"));
    expect(seedFor(1, "a")).not.toBe(seedFor(2, "a"));
    expect(Number.isInteger(seedFor(99, "throughput/ipv4/1000"))).toBe(true);
  });
});

suite("runs for a powered comparison", () => {
  it("inverts the normal distribution", () => {
    expect(normalQuantile(0.975)).toBeCloseTo(1.959964, 5);
    expect(normalQuantile(0.9)).toBeCloseTo(1.281552, 5);
    expect(normalQuantile(0.5)).toBeCloseTo(0, 6);
    expect(normalQuantile(0.00625)).toBeCloseTo(-2.497705, 5);
    expect(() => normalQuantile(1)).toThrow(/accepted: a probability between 0 and 1/);
  });

  it("knows the exact test's floor: 2/C(2n, n)", () => {
    expect(smallestExactP(5)).toBeCloseTo(2 / 252, 12);
    expect(smallestExactP(4)).toBeCloseTo(2 / 70, 12);
    // The arithmetic: with 5 runs per cell and Holm over 56 tests nothing can be significant.
    expect(Math.min(1, 56 * smallestExactP(5))).toBeGreaterThan(0.05);
    expect(smallestExactP(5)).toBe(mannWhitneyU([1, 2, 3, 4, 5], [6, 7, 8, 9, 10]).pValue);
  });

  it("follows Noether's formula, and more runs for a smaller effect, a noisier host, more tests or more power", () => {
    const design = { alpha: 0.05, tests: 4, power: 0.9, minimumEffect: 0.15, runCv: 0.1 };
    // d = |ln 0.85| / sqrt(ln 1.01) = 1.6295; P(X > Y) = Phi(1.1522) = 0.8754;
    // n = (z(0.99375) + z(0.9))^2 / (6 (0.3754)^2) = 3.7793^2 / 0.8456 = 16.9.
    expect(runsForPower(design)).toBe(17);
    expect(runsForPower({ ...design, minimumEffect: 0.1 })).toBeGreaterThan(17);
    expect(runsForPower({ ...design, runCv: 0.2 })).toBeGreaterThan(17);
    expect(runsForPower({ ...design, tests: 8 })).toBeGreaterThan(17);
    expect(runsForPower({ ...design, power: 0.95 })).toBeGreaterThan(17);
    // Noether's formula never goes below (z + z)^2 / 1.5, whatever the effect.
    expect(runsForPower({ ...design, minimumEffect: 0.9 })).toBe(10);
    // Where it asks for fewer runs than the exact test needs to reach alpha/tests at all, the floor wins:
    // 4 runs per group cannot get below 2/70 = 0.029 > 0.0125.
    expect(runsForPower({ ...design, minimumEffect: 0.9, power: 0.1 })).toBe(5);
    expect(runsForPower({ ...design, minimumEffect: 0.9, power: 0.1, tests: 1 })).toBe(4);
  });

  it("gives the power it promises: simulated log-normal runs, the exact test at alpha/tests", () => {
    const design = { alpha: 0.05, tests: 4, power: 0.8, minimumEffect: 0.2, runCv: 0.15 };
    const n = runsForPower(design);
    const g = new Synthetic(11);
    const sigma = Math.sqrt(Math.log(1 + design.runCv ** 2));
    const sample = (scale: number) => Array.from({ length: n }, () => scale * Math.exp(g.normal(0, sigma)));
    const experiments = 2000;
    let shown = 0;
    let falsePositives = 0;
    for (let i = 0; i < experiments; i++) {
      if (mannWhitneyU(sample(1 - design.minimumEffect), sample(1)).pValue < design.alpha / design.tests) shown++;
      if (mannWhitneyU(sample(1), sample(1)).pValue < design.alpha / design.tests) falsePositives++;
    }
    // Binomial standard error at 2000 experiments is about 0.009: allow three of them.
    expect(shown / experiments).toBeGreaterThan(design.power - 0.03);
    // And the test keeps its level when nothing differs.
    expect(falsePositives / experiments).toBeLessThan(design.alpha / design.tests + 0.01);
  });

  it("refuses a design it cannot size, naming the key", () => {
    const design = { alpha: 0.05, tests: 4, power: 0.9, minimumEffect: 0.15, runCv: 0.1 };
    expect(() => runsForPower({ ...design, power: 1 })).toThrow(/^power: 1 is not accepted; accepted: a probability between 0 and 1/);
    expect(() => runsForPower({ ...design, tests: 0 })).toThrow(/^tests: 0 is not accepted/);
    expect(() => runsForPower({ ...design, runCv: 0 })).toThrow(/^runCv: 0 is not accepted/);
    expect(() => runsForPower({ ...design, minimumEffect: 1.5 })).toThrow(/^minimumEffect: 1.5 is not accepted/);
  });
});
