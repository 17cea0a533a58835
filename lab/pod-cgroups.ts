// A pod is a cgroup as well as a network namespace: the kubelet runs a pod's containers in the pod's
// cgroup, and Cilium's socket load balancer (cgroup v2 hooks, bpf_sock.c) acts on the sockets of the
// processes below the cgroup it is attached to. The lab gives its client pod a cgroup v2 directory,
// named with the run's prefix, and starts every process of the client pod inside it.
//
// This host mounts cgroup v1 at /sys/fs/cgroup; the host's one cgroup v2 hierarchy is mounted again
// below the run's directory. A cgroup directory belongs to that hierarchy, not to the mount: it
// outlives an unmount, so it is removed (its processes killed, then rmdir) before the mount goes.
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { run } from "./netns.js";

/** Where a run mounts the cgroup v2 hierarchy, below its directory. */
export function cgroupMountOf(runDir: string): string {
  return join(runDir, "cgroup2");
}

/** The cgroup v2 directory of a pod role of run `prefix`. */
export function podCgroupPath(runDir: string, prefix: string, role: string): string {
  return join(cgroupMountOf(runDir), `${prefix}-${role}`);
}

/** The cgroup of a pod's container, below the pod's (the kubelet's nesting). */
export function containerCgroupPath(podCgroup: string): string {
  return join(podCgroup, "container");
}

/**
 * The argument array that runs `argv` as a member of the cgroup: a fixed shell script writes the
 * shell's own pid to cgroup.procs and then execs argv (never parsed by the shell), so every process
 * it starts is born inside the cgroup.
 */
export function inCgroup(cgroup: string, argv: readonly string[]): string[] {
  return ["sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', cgroup, ...argv];
}

/** File system type of the mount at `path`, from this process's mountinfo, or undefined. */
export function mountType(path: string): string | undefined {
  for (const line of readFileSync("/proc/self/mountinfo", "utf8").split("\n")) {
    const fields = line.split(" ");
    const point = fields[4]?.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
    if (point !== path) continue;
    // After the optional fields: " - fstype source options".
    const dash = fields.indexOf("-");
    return dash >= 0 ? fields[dash + 1] : undefined;
  }
  return undefined;
}

/** Mounts the cgroup v2 hierarchy at `mount` (once) and creates the cgroups, in the order given (a parent before its children). */
export function createCgroups(mount: string, cgroups: readonly string[]): void {
  mkdirSync(mount, { recursive: true });
  if (mountType(mount) !== "cgroup2") run(["mount", "-t", "cgroup2", "none", mount]);
  for (const dir of cgroups) mkdirSync(dir);
}

const pause = new Int32Array(new SharedArrayBuffer(4));
/** How long removeCgroup waits for killed processes to exit: far above a loaded host's exit, a guard against a hang only. */
const EXIT_WAIT_MS = 120_000;

/**
 * Kills what still runs in the cgroup, waits until the kernel reports it empty, and removes it.
 * Synchronous, for teardown from an exit or signal handler.
 */
export function removeCgroup(dir: string): void {
  if (!existsSync(dir)) return;
  // Children first: a cgroup with child cgroups cannot be removed.
  for (const entry of readdirSync(dir, { withFileTypes: true })) if (entry.isDirectory()) removeCgroup(join(dir, entry.name));
  const populated = () => /^populated 1$/m.test(readFileSync(join(dir, "cgroup.events"), "utf8"));
  if (populated()) {
    if (existsSync(join(dir, "cgroup.kill"))) writeFileSync(join(dir, "cgroup.kill"), "1");
    else for (const pid of readFileSync(join(dir, "cgroup.procs"), "utf8").split("\n").filter(Boolean)) {
      try {
        process.kill(Number(pid), "SIGKILL");
      } catch {
        // Already gone.
      }
    }
    const start = Date.now();
    while (populated()) {
      if (Date.now() - start > EXIT_WAIT_MS) throw new Error(`cgroup ${dir}: processes still running ${EXIT_WAIT_MS / 1000} s after SIGKILL`);
      Atomics.wait(pause, 0, 0, 10);
    }
  }
  rmdirSync(dir);
}

/** Removes run `prefix`'s cgroups below a cgroup v2 mount (those named with its prefix). */
export function removeRunCgroups(mount: string, prefix: string): void {
  for (const name of readdirSync(mount).filter((n) => n.startsWith(`${prefix}-`))) removeCgroup(join(mount, name));
}
