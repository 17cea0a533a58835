// What every verb shares: flag values checked before anything starts, errors that name the flag, the value and
// what is accepted, and the one-line JSON summary `--json` prints on stdout (everything else goes to stderr).
import { InvalidArgumentError } from "commander";

/** A flag whose value is refused; its message names the flag, the value and what is accepted. */
export class FlagError extends Error {
  override name = "FlagError";
}

export function badFlag(flag: string, value: string, accepted: string): never {
  throw new FlagError(`--${flag}: ${JSON.stringify(value)} is not accepted; accepted: ${accepted}`);
}

export function wholeNumber(flag: string, value: string, min: number, max: number): number {
  const n = /^\d+$/.test(value.trim()) ? Number(value.trim()) : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) badFlag(flag, value, `a whole number from ${min} to ${max}`);
  return n;
}

export function seconds(flag: string, value: string, min: number, max: number): number {
  const n = /^\d+(\.\d+)?$/.test(value.trim()) ? Number(value.trim()) : NaN;
  if (!(n >= min && n <= max)) badFlag(flag, value, `seconds from ${min} to ${max}`);
  return n;
}

/** A comma-separated list of accepted names, each at most once. */
export function listOf<T extends string>(flag: string, value: string, accepted: readonly T[]): T[] {
  const items = value.split(",").map((s) => s.trim());
  if (items.some((i) => !(accepted as readonly string[]).includes(i)) || new Set(items).size !== items.length) {
    badFlag(flag, value, `a comma-separated list of ${accepted.join(", ")}, each at most once`);
  }
  return items as T[];
}

/** A comma-separated list of distinct Service counts. */
export function serviceCounts(flag: string, value: string, example: string): number[] {
  const accepted = `a comma-separated list of distinct whole numbers of Services, e.g. ${example}`;
  const items = value.split(",").map((s) => s.trim());
  if (items.some((i) => !/^\d+$/.test(i))) badFlag(flag, value, accepted);
  const counts = items.map(Number);
  if (new Set(counts).size !== counts.length) badFlag(flag, value, accepted);
  return counts;
}

/** A commander argument parser for a whole number in a range (the error names the flag). */
export function integerOption(flag: string, min: number, max: number) {
  return (text: string): number => {
    const n = Number(text);
    if (!/^\d+$/.test(text.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
      throw new InvalidArgumentError(`accepted: a whole number from ${min} to ${max} (${flag})`);
    }
    return n;
  };
}

/** A campaign or stack id: what the store and the file names take. */
export function campaignId(value: string): string {
  if (!/^[A-Za-z0-9._-]{1,100}$/.test(value)) badFlag("campaign", value, "1-100 letters, digits, '.', '_' or '-'");
  return value;
}

/** `--json`: the verb's summary as one line of JSON on stdout. */
export function printJson(summary: unknown): void {
  process.stdout.write(`${JSON.stringify(summary)}\n`);
}
