// Lab runs on this host: which prefixes exist, which process owns each, and removing a run's
// objects. Every name a run creates starts with its prefix (`dptb` + 4 characters); the owner
// record is written before anything is created, so a crashed run can be told from a live one.
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { deleteNetns, listLinks, listNetns, run } from "./netns.js";
import { mountType, removeRunCgroups } from "./pod-cgroups.js";

/** First four characters of every name a lab run creates. */
export const RUN_MARKER = "dptb";
export const PREFIX_PATTERN = /^dptb[a-z0-9]{4}$/;
/** Where each run keeps its owner record and mount points. */
export const RUN_STATE_DIR = "/run/dataplane-testbed";

// ---------------------------------------------------------------------------------------------
// Run ownership: which process a prefix belongs to.

interface OwnerRecord {
  readonly pid: number;
  /** Start time of the process in clock ticks since boot (/proc/PID/stat field 22); guards against pid reuse. */
  readonly startTicks: number;
}

function processStartTicks(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the parenthesised command name; field 22 is the 20th of those.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return Number(fields[19]);
  } catch {
    return undefined;
  }
}

function ownerPath(prefix: string): string {
  return join(RUN_STATE_DIR, prefix, "owner.json");
}

/**
 * Claims a prefix for this process. The run directory appears, owner record inside, in one atomic
 * rename: two processes that draw the same id cannot both own it (so one's teardown never removes
 * the other's objects), and no cleanup ever sees the directory without its owner.
 */
export function claimPrefix(prefix: string): boolean {
  mkdirSync(RUN_STATE_DIR, { recursive: true });
  const staging = mkdtempSync(join(RUN_STATE_DIR, ".claim-"));
  const record: OwnerRecord = { pid: process.pid, startTicks: processStartTicks(process.pid) ?? -1 };
  writeFileSync(join(staging, "owner.json"), JSON.stringify(record));
  try {
    renameSync(staging, join(RUN_STATE_DIR, prefix));
    return true;
  } catch (error) {
    rmSync(staging, { recursive: true, force: true });
    if (["EEXIST", "ENOTEMPTY"].includes((error as NodeJS.ErrnoException).code ?? "")) return false;
    throw error;
  }
}

/** True while the process that created the run is alive. */
export function runIsLive(prefix: string): boolean {
  let record: OwnerRecord;
  try {
    record = JSON.parse(readFileSync(ownerPath(prefix), "utf8")) as OwnerRecord;
  } catch {
    return false;
  }
  const ticks = processStartTicks(record.pid);
  return ticks !== undefined && ticks === record.startTicks;
}

// ---------------------------------------------------------------------------------------------
// Finding and removing what a run left behind.

export interface RunObjects {
  readonly namespaces: string[];
  /** Interfaces in this process's namespace (veths are created inside the lab's namespaces, so normally none). */
  readonly links: string[];
  /** bpffs (or any) mounts below the run's directories; unmounting drops their pinned maps and programs. */
  readonly mounts: string[];
  /** The run's state directory and temporary directories. */
  readonly dirs: string[];
}

function mountPoints(): string[] {
  // Field 5 of mountinfo is the mount point, with spaces and the like octal-escaped.
  return readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .map((line) => line.split(" ")[4])
    .filter((p): p is string => p !== undefined)
    .map((p) => p.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))));
}

/** Everything on this host that belongs to run `prefix`. */
export function findRunObjects(prefix: string): RunObjects {
  const runDir = join(RUN_STATE_DIR, prefix);
  const tempBase = tmpdir();
  const tempDirs = existsSync(tempBase) ? readdirSync(tempBase).filter((n) => n.startsWith(`${prefix}-`)).map((n) => join(tempBase, n)) : [];
  const roots = [runDir, ...tempDirs];
  return {
    namespaces: listNetns().filter((n) => n.startsWith(`${prefix}-`)),
    links: listLinks().filter((n) => n.startsWith(`${prefix}-`)),
    mounts: mountPoints().filter((m) => roots.some((r) => m === r || m.startsWith(`${r}/`))),
    dirs: [...(existsSync(runDir) ? [runDir] : []), ...tempDirs],
  };
}

/** Prefixes of every run that left something on this host, live or not. */
export function findRunPrefixes(): string[] {
  const prefixes = new Set<string>();
  const take = (name: string) => {
    const candidate = name.slice(0, RUN_MARKER.length + 4);
    if (PREFIX_PATTERN.test(candidate) && (name.length === candidate.length || name[candidate.length] === "-")) {
      prefixes.add(candidate);
    }
  };
  listNetns().forEach(take);
  listLinks().forEach(take);
  if (existsSync(RUN_STATE_DIR)) readdirSync(RUN_STATE_DIR).forEach(take);
  if (existsSync(tmpdir())) readdirSync(tmpdir()).forEach(take);
  return [...prefixes].sort();
}

/** Removes everything of run `prefix`: processes and namespaces (with their veths, qdiscs and filters), cgroups, mounts, directories. */
export function removeRun(prefix: string): RunObjects {
  const found = findRunObjects(prefix);
  const failures: string[] = [];
  const attempt = (what: string, fn: () => void) => {
    try {
      fn();
    } catch (error) {
      failures.push(`${what}: ${(error as Error).message}`);
    }
  };
  for (const ns of found.namespaces) attempt(`namespace ${ns}`, () => deleteNetns(ns));
  for (const link of found.links) attempt(`link ${link}`, () => run(["ip", "link", "delete", link]));
  // Deepest first, so nested mounts come off before their parents.
  const stuck: string[] = [];
  for (const mount of [...found.mounts].sort((a, b) => b.length - a.length)) {
    attempt(`mount ${mount}`, () => {
      try {
        // A cgroup outlives the mount it was made through: the run's go first.
        if (mountType(mount) === "cgroup2") removeRunCgroups(mount, prefix);
        run(["umount", mount]);
      } catch (error) {
        stuck.push(mount);
        throw error;
      }
    });
  }
  // Never recurse into a file system that is still mounted.
  for (const dir of found.dirs.filter((d) => !stuck.some((m) => m === d || m.startsWith(`${d}/`)))) {
    attempt(`directory ${dir}`, () => rmSync(dir, { recursive: true, force: true }));
  }
  if (failures.length > 0) throw new Error(`could not remove all of lab run ${prefix}:\n  ${failures.join("\n  ")}`);
  return found;
}

export interface CleanupReport {
  readonly removed: Readonly<Record<string, RunObjects>>;
  /** Runs whose owning process is still alive; left alone. */
  readonly live: readonly string[];
}

/** Removes the leftovers of every lab run whose process is gone (after a crash or a kill -9). */
export function cleanupLeftovers(): CleanupReport {
  const removed: Record<string, RunObjects> = {};
  const live: string[] = [];
  for (const prefix of findRunPrefixes()) {
    if (runIsLive(prefix)) live.push(prefix);
    else removed[prefix] = removeRun(prefix);
  }
  return { removed, live };
}
