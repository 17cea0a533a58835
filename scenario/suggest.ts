// "Did you mean": the known key nearest to a mistyped one, for messages that refuse unknown keys.
import { distance } from "fastest-levenshtein";

/**
 * The known key closest to `key` by edit distance, or undefined when none is close enough to be a
 * likely typo: at most a third of the key's length (and at least 2) edits, case ignored.
 */
export function closestKey(key: string, known: readonly string[]): string | undefined {
  const limit = Math.max(2, Math.floor(key.length / 3));
  let best: { key: string; d: number } | undefined;
  for (const candidate of known) {
    const d = distance(key.toLowerCase(), candidate.toLowerCase());
    if (d <= limit && (best === undefined || d < best.d)) best = { key: candidate, d };
  }
  return best?.key;
}
