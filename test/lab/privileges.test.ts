// What the lab asks of the process that runs it: uid 0 and the capabilities its tools use, read
// from /proc/PID/status, each missing one named.
import { describe, expect, it } from "vitest";
import { effectiveCapabilities, LAB_CAPABILITIES, missingCapabilities, privilegeProblem } from "../../lab/privileges.js";

const status = (capEff: string) => `Name:\tnode\nUmask:\t0022\nUid:\t0\t0\t0\t0\nCapInh:\t0000000000000000\nCapPrm:\t${capEff}\nCapEff:\t${capEff}\nCapBnd:\t${capEff}\n`;
const without = (mask: bigint, ...bits: number[]) => bits.reduce((m, b) => m & ~(1n << BigInt(b)), mask);
const hex = (mask: bigint) => mask.toString(16).padStart(16, "0");
/** Every capability of a 6.x kernel (41 of them, CAP_CHECKPOINT_RESTORE is bit 40). */
const ALL = (1n << 41n) - 1n;

describe("the lab's privileges", () => {
  it("reads the effective mask, not the permitted or bounding one", () => {
    expect(effectiveCapabilities("CapPrm:\t000001ffffffffff\nCapEff:\t0000000000001000\nCapBnd:\t000001ffffffffff\n")).toBe(0x1000n);
    expect(effectiveCapabilities(status("000001fffeffffff"))).toBe(0x1fffeffffffn);
    expect(effectiveCapabilities("Name:\tnode\n")).toBeUndefined();
  });

  it("accepts root with every capability, and root whose kernel predates CAP_BPF or that lacks others the lab does not use", () => {
    expect(privilegeProblem(0, status(hex(ALL)))).toBeUndefined();
    // Kernel 5.4 (the paper's): 38 capabilities, no CAP_PERFMON/CAP_BPF; CAP_SYS_ADMIN covers bpf().
    expect(privilegeProblem(0, status("0000003fffffffff"))).toBeUndefined();
    // A container without CAP_SYS_RESOURCE (bit 24), CAP_BPF (39) or CAP_SYS_MODULE (16).
    expect(privilegeProblem(0, status(hex(without(ALL, 24, 39, 16))))).toBeUndefined();
  });

  it("refuses a user other than root whatever its capabilities, naming the uid", () => {
    expect(privilegeProblem(65534, status(hex(ALL)))).toBe("the local lab needs root (network namespaces, tc, bpf), and this process runs as uid 65534");
    expect(privilegeProblem(1000, status("0000000000000000"))).toMatch(/needs root .* runs as uid 1000$/);
  });

  it("refuses root without a capability the lab uses, naming each missing one and what it is for", () => {
    const needs = "the local lab needs root with CAP_NET_ADMIN, CAP_NET_RAW and CAP_SYS_ADMIN, and this process lacks";
    expect(privilegeProblem(0, status("0000000000000000"))).toBe(
      `${needs} CAP_NET_ADMIN (links, routes, tc, iptables rules, conntrack), CAP_NET_RAW (iptables-legacy), CAP_SYS_ADMIN (network namespaces, mounts, bpf)`,
    );
    for (const capability of LAB_CAPABILITIES) {
      expect(missingCapabilities(without(ALL, capability.bit)), capability.name).toEqual([capability]);
      expect(privilegeProblem(0, status(hex(without(ALL, capability.bit))))).toBe(`${needs} ${capability.name} (${capability.usedFor})`);
    }
    expect(LAB_CAPABILITIES.map((c) => [c.name, c.bit])).toEqual([["CAP_NET_ADMIN", 12], ["CAP_NET_RAW", 13], ["CAP_SYS_ADMIN", 21]]);
  });

  it("refuses root when /proc shows no capabilities at all", () => {
    expect(privilegeProblem(0, "")).toBe("the local lab needs root's capabilities, and /proc/self/status shows none (no CapEff line)");
  });
});
