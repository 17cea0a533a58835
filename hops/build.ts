// How the hop probes (hop-probe.c) and their reader (hop-reader.c) are built, for the lab on this
// host and for a worker of a deployed stack: which output path and which map definitions each
// kernel and loader takes, and the compiler's command lines. Pure, apart from reading the sources.
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

/** Where the probes' C lives. */
export const HOPS_SOURCE_DIR = fileURLToPath(new URL("./", import.meta.url));
/** Every file the build needs, by name inside HOPS_SOURCE_DIR. */
export const HOPS_SOURCE_FILES = ["hop-probe.c", "hop-connect.c", "hop-bpf.h", "hop-maps.h", "hop-ports.h", "hop-reader.c"] as const;

/** How records leave the kernel: a BPF ring buffer (5.8+), or a perf event array (any kernel the probes run on). */
export const HOP_OUTPUTS = ["ringbuf", "perf"] as const;
export type HopOutput = (typeof HOP_OUTPUTS)[number];
/**
 * How the object defines its maps, by loader:
 * - `btf`: BTF-defined, unpinned (bpftool prog loadall ... pinmaps: the lab);
 * - `btf-pinned`: BTF-defined, pinned by name (tc of an iproute2 built with libbpf, as on Debian 12);
 * - `legacy`: struct bpf_elf_map in "maps", pinned by name (tc of an iproute2 without libbpf, as
 *   Ubuntu 20.04's 5.5: its own ELF loader knows no BTF maps; libbpf 1.x refuses these).
 */
export const HOP_MAP_STYLES = ["btf", "btf-pinned", "legacy"] as const;
export type HopMapStyle = (typeof HOP_MAP_STYLES)[number];

export interface ProbeBuild {
  readonly output: HopOutput;
  readonly maps: HopMapStyle;
  /** The receiver's data port (NodePort = Service port = pod port). */
  readonly dataPort: number;
  /** The data port of the receiver pod's second ITGRecv, stamped as well (scenario receiver.alternate). */
  readonly alternateDataPort?: number;
}

/** The pinned maps' names (hop-maps.h) for an output path: where the records come from, and the counts. */
export function hopMapNames(output: HopOutput): { records: "hop_ring" | "hop_events"; counts: "hop_counts" } {
  return { records: output === "perf" ? "hop_events" : "hop_ring", counts: "hop_counts" };
}

/** Pure: the kernel's major and minor version from a release string (`uname -r`); throws on anything else. */
export function kernelVersion(release: string): { major: number; minor: number } {
  const m = /^(\d+)\.(\d+)/.exec(release.trim());
  if (!m) throw new Error(`kernel release "${release.trim()}" is not a Linux version; accepted: MAJOR.MINOR[...], as uname -r prints it`);
  return { major: Number(m[1]), minor: Number(m[2]) };
}

/** Pure: the output path a kernel offers: the ring buffer from 5.8, the perf event array before. */
export function outputForKernel(release: string): HopOutput {
  const { major, minor } = kernelVersion(release);
  return major > 5 || (major === 5 && minor >= 8) ? "ringbuf" : "perf";
}

/** Pure: the map definitions tc loads, from what `tc -V` prints ("..., libbpf 1.1.2" when built with libbpf). */
export function mapStyleForTc(tcVersion: string): Extract<HopMapStyle, "btf-pinned" | "legacy"> {
  if (!/iproute2/.test(tcVersion)) throw new Error(`\`tc -V\` printed ${JSON.stringify(tcVersion.trim())}; expected iproute2's tc`);
  return /libbpf/i.test(tcVersion) ? "btf-pinned" : "legacy";
}

function checkPort(key: string, port: number): void {
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`${key}: ${port} is not a port; accepted: 1-65535`);
}

/**
 * Pure: clang's arguments (after `clang`) for the probes' object. `sourceDir` holds the sources,
 * `multiarchInclude` the directory of <asm/types.h> (clang -target bpf does not search it), when
 * the host has one.
 */
export function probeCompileArgs(build: ProbeBuild, paths: { sourceDir: string; output: string; multiarchInclude?: string }): string[] {
  checkPort("dataPort", build.dataPort);
  if (build.alternateDataPort !== undefined) checkPort("alternateDataPort", build.alternateDataPort);
  if (!(HOP_OUTPUTS as readonly string[]).includes(build.output)) throw new Error(`output: "${build.output}" is unknown; accepted: ${HOP_OUTPUTS.join(", ")}`);
  if (!(HOP_MAP_STYLES as readonly string[]).includes(build.maps)) throw new Error(`maps: "${build.maps}" is unknown; accepted: ${HOP_MAP_STYLES.join(", ")}`);
  return [
    "-O2",
    // BTF-defined maps need the object's BTF; tc's own loader needs none, and one less section to parse.
    ...(build.maps === "legacy" ? [] : ["-g"]),
    "-target", "bpf", "-Wall",
    ...(paths.multiarchInclude ? ["-I", paths.multiarchInclude] : []),
    "-I", paths.sourceDir,
    `-DHOP_DATA_PORT=${build.dataPort}`,
    ...(build.alternateDataPort !== undefined ? [`-DHOP_DATA_PORT_2=${build.alternateDataPort}`] : []),
    ...(build.output === "perf" ? ["-DHOP_OUTPUT_PERF"] : []),
    ...(build.maps === "legacy" ? ["-DHOP_MAPS_LEGACY"] : build.maps === "btf-pinned" ? ["-DHOP_MAPS_PINNED"] : []),
    "-c", `${paths.sourceDir.replace(/\/$/, "")}/hop-probe.c`, "-o", paths.output,
  ];
}

/**
 * Pure: clang's arguments (after `clang`) for the connect call's hooks (hop-connect.c: cgroup
 * programs, BTF maps, loaded by bpftool onto the probes' pinned hop_connects), for the same data
 * ports as the probes.
 */
export function connectCompileArgs(build: Pick<ProbeBuild, "dataPort" | "alternateDataPort">, paths: { sourceDir: string; output: string; multiarchInclude?: string }): string[] {
  checkPort("dataPort", build.dataPort);
  if (build.alternateDataPort !== undefined) checkPort("alternateDataPort", build.alternateDataPort);
  return [
    "-O2", "-g", "-target", "bpf", "-Wall",
    ...(paths.multiarchInclude ? ["-I", paths.multiarchInclude] : []),
    "-I", paths.sourceDir,
    `-DHOP_DATA_PORT=${build.dataPort}`,
    ...(build.alternateDataPort !== undefined ? [`-DHOP_DATA_PORT_2=${build.alternateDataPort}`] : []),
    "-c", `${paths.sourceDir.replace(/\/$/, "")}/hop-connect.c`, "-o", paths.output,
  ];
}

/** The connect call's hooks (hop-connect.c) by program name: the attach type bpftool takes, and the point each stamps. */
export const CONNECT_HOOKS = {
  hc_call4: { attachType: "connect4", point: "call" },
  hc_call6: { attachType: "connect6", point: "call" },
  hc_done4: { attachType: "connect4", point: "done" },
  hc_done6: { attachType: "connect6", point: "done" },
} as const;
export type ConnectHook = keyof typeof CONNECT_HOOKS;
/** The map both objects share, pinned with the probes' maps. */
export const CONNECT_MAP = "hop_connects" as const;

/** A connect hook as the kernel lists a cgroup's programs. */
export interface ShownHook {
  readonly attach_type: string;
  readonly name: string;
}

/**
 * Pure: why the connect hooks do not enclose the socket calls' Service translation, or undefined.
 * `effective`: the programs a socket of the container's cgroup runs, in the order it runs them
 * (`bpftool cgroup show CGROUP effective`): per family, the call's stamp first and the done stamp
 * last, with whatever translates between them.
 */
export function connectOrderProblem(effective: readonly ShownHook[]): string | undefined {
  for (const family of ["4", "6"] as const) {
    const names = effective.filter((h) => h.attach_type === `cgroup_inet${family}_connect`).map((h) => h.name);
    if (names[0] !== `hc_call${family}` || names.at(-1) !== `hc_done${family}` || names.filter((n) => n.startsWith("hc_")).length !== 2) {
      return `connect${family} hooks run as ${names.join(", ") || "none"}; expected hc_call${family} first and hc_done${family} last`;
    }
  }
  return undefined;
}

/**
 * Pure: the connect hooks a socket of a cgroup runs, in order, from each cgroup's own listing
 * (`cgroup=DIR <bpftool -j cgroup show DIR>` lines, the cgroup first, then up to the root): with
 * multi-attach the kernel runs a cgroup's hooks in attach order, then its parent's
 * (kernel/bpf/cgroup.c compute_effective_progs). bpftool before 5.x names the attach types
 * connect4/connect6; they are given the later names.
 */
export function effectiveConnectHooks(listings: readonly string[]): ShownHook[] {
  return listings.flatMap((line) => {
    const json = line.slice(line.indexOf(" ") + 1).trim();
    let hooks: unknown;
    try {
      hooks = JSON.parse(json || "[]");
    } catch {
      throw new Error(`bpftool listed ${JSON.stringify(line.slice(0, 200))}, not a cgroup's programs`);
    }
    if (!Array.isArray(hooks)) throw new Error(`bpftool listed ${JSON.stringify(line.slice(0, 200))}, not a cgroup's programs`);
    return (hooks as ShownHook[])
      .map((h) => ({ attach_type: h.attach_type === "connect4" ? "cgroup_inet4_connect" : h.attach_type === "connect6" ? "cgroup_inet6_connect" : h.attach_type, name: h.name }))
      .filter((h) => /^cgroup_inet[46]_connect$/.test(h.attach_type));
  });
}

/** Pure: the host compiler's arguments for the reader (C library only, no libbpf). */
export function readerCompileArgs(paths: { sourceDir: string; output: string }): string[] {
  return ["-O2", "-Wall", "-I", paths.sourceDir, "-o", paths.output, `${paths.sourceDir.replace(/\/$/, "")}/hop-reader.c`];
}

/** The sources' text, by file name, for a host that builds them itself. */
export function hopSources(): Record<(typeof HOPS_SOURCE_FILES)[number], string> {
  return Object.fromEntries(HOPS_SOURCE_FILES.map((f) => [f, readFileSync(`${HOPS_SOURCE_DIR}${f}`, "utf8")])) as Record<(typeof HOPS_SOURCE_FILES)[number], string>;
}

/**
 * Pure: the reader's arguments for one run. `pins` is the directory of the pinned maps; perf rings
 * of `pages` data pages per CPU; `daemon` detaches it with its state in that directory; it stops by
 * itself after `maxSeconds`.
 */
export function readerArgs(
  output: HopOutput,
  paths: { pins: string; recordsFile: string },
  options: { pages?: number; daemon?: string; maxSeconds?: number } = {},
): string[] {
  const names = hopMapNames(output);
  const pins = paths.pins.replace(/\/$/, "");
  return [
    output,
    `${pins}/${names.records}`,
    `${pins}/${names.counts}`,
    paths.recordsFile,
    ...(output === "perf" && options.pages !== undefined ? ["--pages", String(options.pages)] : []),
    ...(options.daemon !== undefined ? ["--daemon", options.daemon] : []),
    ...(options.maxSeconds !== undefined ? ["--max-seconds", String(Math.ceil(options.maxSeconds))] : []),
  ];
}
