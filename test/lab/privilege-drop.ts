// Command prefixes that run a program with fewer privileges than this root test process, from any
// checkout: the program still reads the code, even below a folder only root may enter (/root, a
// `mktemp -d` folder), which a plain switch to another user would not.
import { spawnSync } from "node:child_process";

/** True when this process can drop privileges with util-linux's setpriv (root on Linux). */
export const canDropPrivileges =
  process.platform === "linux" && process.geteuid?.() === 0 && spawnSync("setpriv", ["--version"]).status === 0;

/**
 * Runs the command as nobody (uid and gid 65534, no groups) with CAP_DAC_READ_SEARCH alone, the
 * capability to read any file: a user other than root who can read the checkout.
 */
export const AS_NOBODY: readonly string[] = [
  "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all,+dac_read_search", "--ambient-caps=+dac_read_search",
];

/**
 * Runs the command as uid 0 without the named capabilities (e.g. "net_raw"), or without any: root's
 * capabilities after exec are its bounding set, so dropping them there drops them for good.
 */
export function asRootWithout(capabilities: readonly string[] | "all"): string[] {
  const drop = capabilities === "all" ? "-all" : capabilities.map((c) => `-${c}`).join(",");
  return ["setpriv", "--inh-caps=-all", `--bounding-set=${drop}`];
}
