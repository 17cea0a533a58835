// What the bounded-waits test looks for in a script: a wait that nothing ends. pulumi-command's
// customTimeouts stop waiting for a command, not the command (its SSH session ignores the deadline),
// so every wait on a host must carry its own bound. The rules read a script as lines (continuations
// joined) and flag:
// - `cloud-init status --wait` not run under `timeout`;
// - `kubectl rollout status` and `kubectl wait` without `--timeout`, `helm ... --wait` without `--timeout`;
// - ssh and scp not run under `timeout`, or without a ConnectTimeout (on the line, or in the
//   ssh_config the script writes);
// - curl without `--max-time`;
// - a while or until loop that sleeps without a deadline or a bounded count in its condition or body.
// Every rule has a planted violation in the test, so none of them passes for want of a match.

export interface UnboundedWait {
  readonly line: string;
  readonly rule: string;
}

/** The script's logical lines: continuations joined, comments dropped. */
export function logicalLines(script: string): string[] {
  return script
    .replace(/\\\n\s*/g, " ")
    .split("\n")
    .map((l) => l.replace(/^\s*#.*$/, ""))
    .filter((l) => l.trim() !== "");
}

const underTimeout = (line: string, tool: string) => new RegExp(`\\btimeout\\s+(--kill-after=\\S+\\s+)?("[^"]+"|\\$?\\w+|\\d+)\\s+${tool}\\b`).test(line);

/** The waits in a script that nothing bounds. */
export function unboundedWaits(script: string): UnboundedWait[] {
  const lines = logicalLines(script);
  const found: UnboundedWait[] = [];
  const configuresConnectTimeout = /^\s*ConnectTimeout\s+\d+/m.test(script);
  for (const line of lines) {
    const flag = (rule: string) => found.push({ line: line.trim(), rule });
    if (/cloud-init status --wait/.test(line) && !underTimeout(line, "cloud-init")) flag("cloud-init status --wait without timeout");
    if (/\bkubectl\b.*\brollout status\b/.test(line) && !/--timeout[= ]/.test(line)) flag("kubectl rollout status without --timeout");
    if (/\bkubectl\b.*\swait\s/.test(line) && !/--timeout[= ]/.test(line)) flag("kubectl wait without --timeout");
    if (/\bhelm\b.*\s--wait\b/.test(line) && !/\s--timeout[= ]/.test(line)) flag("helm --wait without --timeout");
    for (const tool of ["ssh", "scp"]) {
      if (!new RegExp(`(^|[\\s(;|&])${tool}\\s+-`).test(line)) continue;
      if (!underTimeout(line, tool)) flag(`${tool} not under timeout`);
      if (!/ConnectTimeout=\d+/.test(line) && !configuresConnectTimeout) flag(`${tool} without ConnectTimeout`);
    }
    // curl as a command (at the start, after a pipe, a list or a substitution), not a package name.
    if (/(^\s*|[|;&(]\s*|\btimeout\s+\S+\s+)curl\s/.test(line) && !/--max-time\s+\d+|\s-m\s+\d+/.test(line)) flag("curl without --max-time");
  }
  // Loops: from a while/until line to its done, nesting counted.
  for (let i = 0; i < lines.length; i++) {
    if (!/^\s*(while|until)\b/.test(lines[i]!)) continue;
    let depth = 0;
    let end = i;
    for (let j = i; j < lines.length; j++) {
      const opens = (lines[j]!.match(/(^|[\s;])(while|until|for)\b[^#]*?;\s*do\b|(^|[\s;])do\s*$/g) ?? []).length;
      depth += opens;
      depth -= (lines[j]!.match(/(^|[\s;])done\b/g) ?? []).length;
      if (depth <= 0 && j > i) {
        end = j;
        break;
      }
      if (depth <= 0 && j === i && /\bdone\b/.test(lines[j]!)) {
        end = j;
        break;
      }
    }
    const body = lines.slice(i, end + 1).join("\n");
    if (/\bsleep\b/.test(body) && !/\$\{?deadline\b|-ge\s+"?\$?\{?\w*tries|-ge\s+\d+|\$\{?tries\b/.test(body)) {
      found.push({ line: lines[i]!.trim(), rule: "a loop that sleeps with no deadline and no bounded count" });
    }
  }
  return found;
}
