// Command prefixes that run a program with fewer privileges than this root test process, from any
// checkout, even one below a folder only root may enter (/root, a `mktemp -d` folder), where a plain
// switch to another user could not read the code.
import { spawnSync } from "node:child_process";
import { chmodSync, mkdtempSync, rmdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** True when this process can drop privileges with util-linux's setpriv and unshare (root on Linux). */
export const canDropPrivileges =
  process.platform === "linux" &&
  process.geteuid?.() === 0 &&
  ["setpriv", "unshare"].every((tool) => spawnSync(tool, ["--version"]).status === 0);

/**
 * Runs `use` with a prefix that runs a command as nobody (uid and gid 65534, no groups, no
 * capabilities) in the checkout: a private mount namespace binds the checkout to a fresh folder that
 * anyone may enter, and the command starts there. No other process sees the mount; the folder is
 * removed afterwards.
 */
export function asNobodyIn<T>(checkout: string, use: (prefix: readonly string[]) => T): T {
  const view = mkdtempSync(join(tmpdir(), "checkout-view-"));
  try {
    chmodSync(view, 0o755);
    return use([
      "unshare", "--mount", "--propagation", "private",
      "sh", "-c", 'mount --bind "$2" "$1" && cd "$1" && shift 2 && exec setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all "$@"',
      "sh", view, checkout,
    ]);
  } finally {
    rmdirSync(view);
  }
}

/**
 * Runs the command as uid 0 without the named capabilities (e.g. "net_raw"), or without any: root's
 * capabilities after exec are its bounding set, so dropping them there drops them for good.
 */
export function asRootWithout(capabilities: readonly string[] | "all"): string[] {
  const drop = capabilities === "all" ? "-all" : capabilities.map((c) => `-${c}`).join(",");
  return ["setpriv", "--inh-caps=-all", `--bounding-set=${drop}`];
}
