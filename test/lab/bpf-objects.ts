// What a lab test checks is gone after a teardown: kernel BPF objects by id, and bpffs mounts.
import { readFileSync } from "node:fs";
import { exec } from "../../lab/netns.js";

const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * True once the kernel no longer knows the program or map. Freeing waits for an RCU grace period, which a loaded host
 * stretches: it polls every 100 ms for up to a minute, and answers as soon as the object is gone.
 */
export async function bpfObjectGone(kind: "prog" | "map", id: number): Promise<boolean> {
  for (let i = 0; i < 600; i++) {
    if (exec(["bpftool", kind, "show", "id", String(id)]).status !== 0) return true;
    await wait(100);
  }
  return false;
}

/** True while something is mounted at `path`. */
export function mounted(path: string): boolean {
  return readFileSync("/proc/self/mountinfo", "utf8").split("\n").some((l) => l.split(" ")[4] === path);
}
