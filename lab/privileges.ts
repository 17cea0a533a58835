// What the lab needs from the process that runs it: uid 0 and the capabilities its tools use. A
// root shell in a container, or one started under `setpriv`/`capsh`, can lack them; the lab then
// refuses before it creates anything and names what is missing, instead of failing halfway in
// `ip netns add`.
import { readFileSync } from "node:fs";

export interface LabCapability {
  readonly name: string;
  /** Bit number in linux/capability.h (the CapEff mask of /proc/PID/status). */
  readonly bit: number;
  readonly usedFor: string;
}

/**
 * The capabilities the lab's tools need. CAP_SYS_ADMIN also grants bpf() (the kernel accepts it in
 * place of CAP_BPF and CAP_PERFMON, and kernels before 5.8 know no other), so CAP_BPF is not asked for.
 */
export const LAB_CAPABILITIES: readonly LabCapability[] = [
  { name: "CAP_NET_ADMIN", bit: 12, usedFor: "links, routes, tc, iptables rules, conntrack" },
  { name: "CAP_NET_RAW", bit: 13, usedFor: "iptables-legacy" },
  { name: "CAP_SYS_ADMIN", bit: 21, usedFor: "network namespaces, mounts, bpf" },
];

/** Pure: the effective capability mask of a /proc/PID/status text, or undefined without a CapEff line. */
export function effectiveCapabilities(status: string): bigint | undefined {
  const line = /^CapEff:\s*([0-9a-fA-F]{1,16})\s*$/m.exec(status);
  return line ? BigInt(`0x${line[1]}`) : undefined;
}

/** Pure: the lab's capabilities that the mask lacks. */
export function missingCapabilities(effective: bigint): LabCapability[] {
  return LAB_CAPABILITIES.filter((c) => ((effective >> BigInt(c.bit)) & 1n) === 0n);
}

/** Pure: why a process with this effective uid and /proc/PID/status cannot run the lab, or undefined. */
export function privilegeProblem(uid: number, status: string): string | undefined {
  if (uid !== 0) return `the local lab needs root (network namespaces, tc, bpf), and this process runs as uid ${uid}`;
  const effective = effectiveCapabilities(status);
  if (effective === undefined) return "the local lab needs root's capabilities, and /proc/self/status shows none (no CapEff line)";
  const missing = missingCapabilities(effective);
  if (missing.length === 0) return undefined;
  const needed = LAB_CAPABILITIES.map((c) => c.name);
  return `the local lab needs root with ${needed.slice(0, -1).join(", ")} and ${needed.at(-1)}, and this process lacks ${missing
    .map((c) => `${c.name} (${c.usedFor})`)
    .join(", ")}`;
}

/** Why this process cannot run the lab for want of privileges, or undefined (Linux only). */
export function processPrivilegeProblem(): string | undefined {
  const uid = process.geteuid?.() ?? process.getuid?.() ?? -1;
  let status = "";
  try {
    status = readFileSync("/proc/self/status", "utf8");
  } catch {
    // No /proc: reported as no CapEff line.
  }
  return privilegeProblem(uid, status);
}
