// The hop probes' build: which form each kernel and tc take, and what each form's object holds, read
// with llvm-readelf from objects clang builds here: the map definitions each loader parses (tc's own
// ELF loader: 36-byte struct bpf_elf_map entries in "maps"; libbpf: BTF-defined maps in ".maps"),
// one section per program, no BPF-to-BPF calls. The numbers hop-bpf.h writes out for the 5.4
// headers are checked against this machine's UAPI headers; the reader builds on the C library alone;
// the D-ITG sample the probes take (hop-maps.h hop_sampled) is the decoder's (measure/hops.ts hopSampled).
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { machine, tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  connectCompileArgs,
  connectOrderProblem,
  effectiveConnectHooks,
  HOP_MAP_STYLES,
  HOP_OUTPUTS,
  HOPS_SOURCE_DIR,
  hopMapNames,
  kernelVersion,
  mapStyleForTc,
  outputForKernel,
  probeCompileArgs,
  readerArgs,
  readerCompileArgs,
  type HopMapStyle,
  type HopOutput,
} from "../../hops/build.js";
import { hopSampled } from "../../measure/hops.js";

const multiarch = `/usr/include/${machine()}-linux-gnu`;
const include = existsSync(multiarch) ? { multiarchInclude: multiarch } : {};
const hasClang = (() => {
  try {
    execFileSync("clang", ["--version"]);
    return true;
  } catch {
    return false;
  }
})();

describe("which form a worker takes", () => {
  it("picks the ring buffer from 5.8 and the perf event array before", () => {
    expect(outputForKernel("5.4.0-216-generic")).toBe("perf");
    expect(outputForKernel("5.7.19")).toBe("perf");
    expect(outputForKernel("5.8.0-63-generic")).toBe("ringbuf");
    expect(outputForKernel("5.15.0-100-generic")).toBe("ringbuf");
    expect(outputForKernel("6.18.44-fc-v1300")).toBe("ringbuf");
    expect(kernelVersion("4.19.0")).toEqual({ major: 4, minor: 19 });
    expect(() => kernelVersion("Linux")).toThrow('kernel release "Linux" is not a Linux version; accepted: MAJOR.MINOR[...], as uname -r prints it');
  });

  it("picks tc's own map definitions for an iproute2 without libbpf, BTF-defined maps for one with it", () => {
    expect(mapStyleForTc("tc utility, iproute2-ss200127")).toBe("legacy");
    expect(mapStyleForTc("tc utility, iproute2-5.15.0, libbpf 0.5.0")).toBe("btf-pinned");
    expect(mapStyleForTc("tc utility, iproute2-6.1.0, libbpf 1.1.2")).toBe("btf-pinned");
    expect(() => mapStyleForTc("busybox tc")).toThrow(/expected iproute2's tc/);
  });

  it("refuses a bad port or form, and names the reader's maps by output", () => {
    expect(() => probeCompileArgs({ output: "perf", maps: "legacy", dataPort: 0 }, { sourceDir: "/s", output: "/o" })).toThrow("dataPort: 0 is not a port; accepted: 1-65535");
    expect(() => probeCompileArgs({ output: "perf", maps: "legacy", dataPort: 31000, alternateDataPort: 70000 }, { sourceDir: "/s", output: "/o" })).toThrow("alternateDataPort: 70000 is not a port; accepted: 1-65535");
    // The second ITGRecv's data port is stamped too; without one the probes match the first alone.
    expect(probeCompileArgs({ output: "perf", maps: "legacy", dataPort: 31000, alternateDataPort: 31002 }, { sourceDir: "/s", output: "/o" })).toEqual(expect.arrayContaining(["-DHOP_DATA_PORT=31000", "-DHOP_DATA_PORT_2=31002"]));
    expect(probeCompileArgs({ output: "perf", maps: "legacy", dataPort: 31000 }, { sourceDir: "/s", output: "/o" }).filter((a) => a.startsWith("-DHOP_DATA_PORT"))).toEqual(["-DHOP_DATA_PORT=31000"]);
    expect(() => probeCompileArgs({ output: "xdp" as HopOutput, maps: "legacy", dataPort: 1 }, { sourceDir: "/s", output: "/o" })).toThrow('output: "xdp" is unknown; accepted: ringbuf, perf');
    expect(hopMapNames("perf")).toEqual({ records: "hop_events", counts: "hop_counts" });
    expect(readerArgs("perf", { pins: "/w/bpffs/tc/globals/", recordsFile: "/w/r.hops" }, { pages: 8, daemon: "/w/runs/r", maxSeconds: 30.5 })).toEqual([
      "perf", "/w/bpffs/tc/globals/hop_events", "/w/bpffs/tc/globals/hop_counts", "/w/r.hops", "--pages", "8", "--daemon", "/w/runs/r", "--max-seconds", "31",
    ]);
    expect(readerArgs("ringbuf", { pins: "/p", recordsFile: "/r" }, { pages: 8 })).toEqual(["ringbuf", "/p/hop_ring", "/p/hop_counts", "/r"]);
  });
});

describe("the connect call's hooks around the node's socket hooks", () => {
  // bpftool before 5.x names the attach types connect4/connect6; later ones cgroup_inet4_connect.
  const listing = (dir: string, hooks: [string, string][]) => `${dir} ${JSON.stringify(hooks.map(([attach_type, name], i) => ({ id: i + 1, attach_type, name })))}`;
  const container = listing("/sys/fs/cgroup/kubepods/pod1/c1", [["connect4", "hc_call4"], ["connect6", "hc_call6"]]);
  const pod = listing("/sys/fs/cgroup/kubepods/pod1", []);
  const root = (order: [string, string][]) => listing("/sys/fs/cgroup", order);
  const cilium: [string, string][] = [["cgroup_inet4_connect", "cil_sock4_connect"], ["cgroup_inet6_connect", "cil_sock6_connect"], ["cgroup_udp4_sendmsg", "cil_sock4_sendmsg"]];

  it("reads the order the kernel runs them in: the container's cgroup first, then each parent's in attach order", () => {
    const effective = effectiveConnectHooks([container, pod, root([...cilium, ["connect4", "hc_done4"], ["connect6", "hc_done6"]])]);
    expect(effective.map((h) => h.name)).toEqual(["hc_call4", "hc_call6", "cil_sock4_connect", "cil_sock6_connect", "hc_done4", "hc_done6"]);
    expect(connectOrderProblem(effective)).toBeUndefined();
  });

  it("refuses a done stamp attached before the load balancer, or a missing call stamp", () => {
    const early = effectiveConnectHooks([container, pod, root([["connect4", "hc_done4"], ...cilium, ["connect6", "hc_done6"]])]);
    expect(connectOrderProblem(early)).toBe("connect4 hooks run as hc_call4, hc_done4, cil_sock4_connect; expected hc_call4 first and hc_done4 last");
    const noCall = effectiveConnectHooks([listing("/c", []), root([...cilium, ["connect4", "hc_done4"], ["connect6", "hc_done6"]])]);
    expect(connectOrderProblem(noCall)).toMatch(/^connect4 hooks run as cil_sock4_connect, hc_done4; expected hc_call4 first/);
    // kube-proxy: nothing between the two, both on the container's cgroup.
    expect(connectOrderProblem(effectiveConnectHooks([listing("/c", [["connect4", "hc_call4"], ["connect4", "hc_done4"], ["connect6", "hc_call6"], ["connect6", "hc_done6"]])]))).toBeUndefined();
    expect(() => effectiveConnectHooks(["/c Error: can't open"])).toThrow(/not a cgroup's programs/);
  });

  it("builds the hooks for both data ports, and refuses a bad one", () => {
    expect(connectCompileArgs({ dataPort: 31000, alternateDataPort: 31002 }, { sourceDir: "/s/", output: "/o" })).toEqual(expect.arrayContaining(["-DHOP_DATA_PORT=31000", "-DHOP_DATA_PORT_2=31002", "/s/hop-connect.c"]));
    expect(() => connectCompileArgs({ dataPort: 0 }, { sourceDir: "/s", output: "/o" })).toThrow("dataPort: 0 is not a port; accepted: 1-65535");
  });
});

describe.skipIf(!hasClang)("what each form's object holds (clang, llvm-readelf)", () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(path.join(tmpdir(), "hop-build-"));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const build = (output: HopOutput, maps: HopMapStyle) => {
    const object = path.join(dir, `${output}-${maps}.o`);
    execFileSync("clang", probeCompileArgs({ output, maps, dataPort: 31000, alternateDataPort: 31002 }, { sourceDir: HOPS_SOURCE_DIR, output: object, ...include }));
    const sections = execFileSync("llvm-readelf", ["-S", "-W", object], { encoding: "utf8" });
    const symbols = execFileSync("llvm-readelf", ["-s", "-W", object], { encoding: "utf8" });
    return { sections, symbols };
  };
  const section = (sections: string, name: string) => new RegExp(`\\] ${name.replace(/[.[\]/]/g, "\\$&")}\\s+\\S+\\s+\\S+\\s+\\S+\\s+([0-9a-f]+)`).exec(sections);

  it.each(HOP_OUTPUTS.flatMap((o) => HOP_MAP_STYLES.map((m) => [o, m] as const)))("%s, %s", (output, maps) => {
    const { sections, symbols } = build(output, maps);
    const names = hopMapNames(output);
    for (const map of Object.values(names)) expect(symbols, map).toMatch(new RegExp(`OBJECT\\s+GLOBAL\\s+DEFAULT\\s+\\d+ ${map}$`, "m"));
    expect(symbols).not.toMatch(output === "perf" ? / hop_ring$/m : / hop_events$/m);
    if (maps === "legacy") {
      // Three struct bpf_elf_map of 9 __u32 each (records, counts, the connect calls), and no BTF for tc 5.5 to reject.
      expect(Number.parseInt(section(sections, "maps")![1]!, 16)).toBe(3 * 36);
      expect(sections).not.toMatch(/\] \.BTF /);
      expect(sections).not.toMatch(/\] \.maps /);
    } else {
      expect(sections).toMatch(/\] \.maps /);
      expect(sections).toMatch(/\] \.BTF /);
      expect(sections).not.toMatch(/\] maps /);
    }
    // One section per program (tc loads one per filter), every helper inlined: no code in .text.
    for (const program of ["hf_uplink_in", "hf_pod_veth", "hf_pod_in", "hr_pod_out", "hr_pod_veth", "hr_uplink_out"]) expect(sections).toContain(`] tc/${program} `);
    const text = section(sections, ".text");
    expect(text === null || Number.parseInt(text[1]!, 16) === 0).toBe(true);
  });

  it("writes out the kernel ABI the 5.4 headers lack, as this machine's headers number it", () => {
    const check = path.join(dir, "abi.c");
    writeFileSync(
      check,
      [
        "#include <linux/bpf.h>",
        '#include "hop-bpf.h"',
        '#include "hop-maps.h"',
        "_Static_assert(HOP_MAP_TYPE_RINGBUF == BPF_MAP_TYPE_RINGBUF, \"ringbuf map type\");",
        "_Static_assert(HOP_FUNC_RINGBUF_RESERVE == BPF_FUNC_ringbuf_reserve, \"ringbuf_reserve\");",
        "_Static_assert(HOP_FUNC_RINGBUF_SUBMIT == BPF_FUNC_ringbuf_submit, \"ringbuf_submit\");",
        "_Static_assert(HOP_RB_NO_WAKEUP == BPF_RB_NO_WAKEUP, \"no wakeup\");",
        "_Static_assert(sizeof(struct hop_record) == 24, \"record\");",
        "_Static_assert(sizeof(struct bpf_elf_map) == 36, \"iproute2's map definition\");",
      ].join("\n"),
    );
    expect(() => execFileSync("clang", ["-target", "bpf", "-fsyntax-only", ...(include.multiarchInclude ? ["-I", multiarch] : []), "-I", HOPS_SOURCE_DIR, check])).not.toThrow();
  });

  it("samples the D-ITG packets the decoder expects: hop_sampled of hop-maps.h and hopSampled agree on every key", () => {
    // Flow ids and sequence numbers across their range: small, around 2^16, 2^31 and 2^32 - 1.
    const flows = [1, 2, 3, 17, 65_535, 65_536, 2 ** 31 - 1, 2 ** 31, 0xfffffffe];
    const seqs = [...Array.from({ length: 4096 }, (_, i) => i), 65_535, 65_536, 2 ** 31 - 1, 2 ** 31, 0xfffffffe, 0xffffffff];
    const program = path.join(dir, "sample.c");
    writeFileSync(
      program,
      [
        "#include <stdio.h>",
        '#include "hop-maps.h"',
        `static const __u32 flows[] = { ${flows.map((f) => `${f}u`).join(", ")} };`,
        `static const __u32 seqs[] = { ${seqs.map((q) => `${q}u`).join(", ")} };`,
        "int main(void)",
        "{",
        '  printf("%u\\n", HOP_SAMPLE_EVERY);',
        "  for (unsigned f = 0; f < sizeof(flows) / sizeof(*flows); f++)",
        "    for (unsigned q = 0; q < sizeof(seqs) / sizeof(*seqs); q++)",
        "      putchar(hop_sampled(flows[f], seqs[q]) ? '1' : '0');",
        "  return 0;",
        "}",
      ].join("\n"),
    );
    const binary = path.join(dir, "sample");
    execFileSync("clang", ["-O2", "-Wall", "-Werror", "-I", HOPS_SOURCE_DIR, "-o", binary, program]);
    const [every, picks] = execFileSync(binary, { encoding: "utf8" }).split("\n");
    // The probes sample: 1 in a power of two above 1.
    expect(Number(every)).toBeGreaterThan(1);
    expect(Number(every) & (Number(every) - 1)).toBe(0);
    const expected = flows.flatMap((f) => seqs.map((q) => (hopSampled(f, q, Number(every)) ? "1" : "0"))).join("");
    expect(picks).toBe(expected);
    // A rule that picked none or all would agree as well; this one picks about 1 in every.
    const share = [...picks!].filter((c) => c === "1").length / picks!.length;
    expect(share).toBeGreaterThan(0.5 / Number(every));
    expect(share).toBeLessThan(2 / Number(every));
  });

  it("builds the reader with the C library alone", () => {
    const reader = path.join(dir, "hop-reader");
    execFileSync("clang", [...readerCompileArgs({ sourceDir: HOPS_SOURCE_DIR, output: reader }), "-Werror"]);
    const usage = (() => {
      try {
        execFileSync(reader, [], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
        return "";
      } catch (e) {
        return String((e as { stderr: string }).stderr);
      }
    })();
    expect(usage).toContain("usage: hop-reader ringbuf RING_PIN COUNTS_PIN OUT_FILE");
    expect(execFileSync("ldd", [reader], { encoding: "utf8" })).not.toMatch(/libbpf/);
  });
});
