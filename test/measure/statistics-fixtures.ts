// Seeded synthetic samples for the statistics and report suites.
import { unsafeUniformIntDistribution, xoroshiro128plus, type RandomGenerator } from "pure-rand";

const SPAN = 2 ** 30;

/** A seeded source of uniform and normal variates. */
export class Synthetic {
  private readonly rng: RandomGenerator;
  constructor(seed: number) {
    this.rng = xoroshiro128plus(seed);
  }
  /** Uniform on (0, 1). */
  uniform(): number {
    return unsafeUniformIntDistribution(1, SPAN - 1, this.rng) / SPAN;
  }
  /** Normal(mean, sd) by the Box-Muller transform. */
  normal(mean: number, sd: number): number {
    const r = Math.sqrt(-2 * Math.log(this.uniform()));
    return mean + sd * r * Math.cos(2 * Math.PI * this.uniform());
  }
  normals(n: number, mean: number, sd: number): number[] {
    return Array.from({ length: n }, () => this.normal(mean, sd));
  }
}
