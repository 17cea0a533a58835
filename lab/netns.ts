// Running programs on this host and inside the lab's network namespaces.
// Every command is an argument array handed to execve: nothing is ever parsed by a shell.
// Setup and teardown are synchronous so they can also run from an exit or signal handler.
import { spawn, spawnSync, type ChildProcess, type SpawnOptions } from "node:child_process";
import { statSync } from "node:fs";

export interface CommandResult {
  readonly status: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

export interface CommandOptions {
  /** Extra environment variables for the command (the rest is inherited). */
  readonly env?: Readonly<Record<string, string>>;
  readonly input?: string;
  readonly timeoutMs?: number;
}

export class CommandError extends Error {
  constructor(
    readonly argv: readonly string[],
    readonly result: CommandResult,
  ) {
    const how = result.signal ? `was killed by ${result.signal}` : `exited with ${result.status}`;
    const detail = (result.stderr.trim() || result.stdout.trim()).split("\n").slice(-5).join("\n");
    super(`\`${argv.join(" ")}\` ${how}${detail ? `: ${detail}` : ""}`);
    this.name = "CommandError";
  }
}

/** Runs a program and returns what it printed, whatever its exit status. */
export function exec(argv: readonly string[], options: CommandOptions = {}): CommandResult {
  const [file, ...args] = argv;
  if (!file) throw new Error("exec: empty argument list");
  const result = spawnSync(file, args, {
    encoding: "utf8",
    input: options.input,
    timeout: options.timeoutMs ?? 60_000,
    env: options.env ? { ...process.env, ...options.env } : process.env,
    maxBuffer: 512 * 1024 * 1024,
  });
  if (result.error && (result.error as NodeJS.ErrnoException).code === "ENOENT") {
    throw new Error(`\`${file}\` is not installed or not on PATH (needed for \`${argv.join(" ")}\`)`);
  }
  return {
    status: result.status,
    signal: result.signal,
    stdout: result.stdout ?? "",
    stderr: result.stderr ?? (result.error ? String(result.error) : ""),
  };
}

/** Runs a program and throws a CommandError unless it exits 0. */
export function run(argv: readonly string[], options: CommandOptions = {}): string {
  const result = exec(argv, options);
  if (result.status !== 0) throw new CommandError(argv, result);
  return result.stdout;
}

/** The argument array that runs `argv` inside network namespace `ns`. */
export function inNetns(ns: string, argv: readonly string[]): string[] {
  return ["ip", "netns", "exec", ns, ...argv];
}

/** Starts a long-running program (a listener, a traffic generator; inNetns gives one inside a namespace). */
export function startProcess(argv: readonly string[], options: SpawnOptions = {}): ChildProcess {
  const [file, ...args] = argv;
  if (!file) throw new Error("startProcess: empty argument list");
  return spawn(file, args, { stdio: ["ignore", "pipe", "pipe"], ...options });
}

export function listNetns(): string[] {
  // `ip netns list` prints "name" or "name (id: N)".
  return run(["ip", "netns", "list"])
    .split("\n")
    .map((line) => line.trim().split(/\s+/)[0] ?? "")
    .filter((name) => name.length > 0);
}

/** Whether a process runs inside network namespace `ns` already (a process `inNetns` started enters it only after its start). */
export function inNamespace(pid: number, ns: string): boolean {
  try {
    // Both name the namespace's nsfs inode: the process's link, and the mount `ip netns add` made.
    return statSync(`/proc/${pid}/ns/net`).ino === statSync(`/run/netns/${ns}`).ino;
  } catch {
    return false;
  }
}

/** Process ids still running inside a namespace. */
export function netnsPids(ns: string): number[] {
  const result = exec(["ip", "netns", "pids", ns]);
  if (result.status !== 0) return [];
  return result.stdout
    .split(/\s+/)
    .filter((s) => /^\d+$/.test(s))
    .map(Number);
}

/**
 * Ends the processes left inside a namespace, then deletes it. A namespace only disappears once
 * nothing runs in it, so a forgotten listener would otherwise keep its veths and filters alive.
 */
export function deleteNetns(ns: string): void {
  for (const pid of netnsPids(ns)) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // Already gone.
    }
  }
  const result = exec(["ip", "netns", "delete", ns]);
  if (result.status !== 0 && !/No such file|not found|does not exist/i.test(result.stderr)) {
    throw new CommandError(["ip", "netns", "delete", ns], result);
  }
}

/** Interface names in the namespace `ns`, or in this process's namespace when ns is undefined. */
export function listLinks(ns?: string): string[] {
  const argv = ns === undefined ? ["ip", "-j", "link", "show"] : ["ip", "-n", ns, "-j", "link", "show"];
  const links = JSON.parse(run(argv) || "[]") as { ifname: string }[];
  return links.map((l) => l.ifname);
}
