// What puts kube-proxy's iptables-legacy rules on the packet path, read the cheap way: xt-jumps.c reads
// the kernel's table blobs of one family and prints each rule of a chain not named KUBE-* that jumps
// (or goes) into a KUBE-* chain. The same question through iptables-legacy-save costs a full listing
// of every rule (66000 in the nat table at 10000 Services), which the lab would pay at every change of
// step (bench/step-change.ts). Built once per lab with clang, into the lab's run directory.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Family } from "../../../scenario/cidr.js";
import { exec, inNetns, run } from "../../netns.js";

const SOURCE = fileURLToPath(new URL("./xt-jumps.c", import.meta.url));
const BINARY = "xt-jumps";

/** Pure: the clang command that builds the reader (clang is among the lab's tools, scripts/deps.sh). */
export function jumpReaderCompileCommand(output: string): string[] {
  return ["clang", "-O2", "-Wall", "-o", output, SOURCE];
}

/** The rules of one table that jump into KUBE-* chains from other chains, as `CHAIN -j|-g TARGET`. */
export interface TableJumps {
  readonly table: string;
  readonly jumps: readonly string[];
}

/** Pure: the reader's lines (`TABLE CHAIN -j|-g TARGET`) grouped by table, in the order printed. */
export function parseJumpLines(text: string): TableJumps[] {
  const tables = new Map<string, string[]>();
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue;
    const m = /^(\S+) (\S+) (-j|-g) (\S+)$/.exec(line);
    if (!m) throw new Error(`xt-jumps: unexpected line ${JSON.stringify(line)}; accepted: TABLE CHAIN -j|-g TARGET`);
    const jumps = tables.get(m[1]!) ?? [];
    jumps.push(`${m[2]} ${m[3]} ${m[4]}`);
    tables.set(m[1]!, jumps);
  }
  return [...tables].map(([table, jumps]) => ({ table, jumps }));
}

/** The reader of one lab, built on first use into `dir`. */
export class LegacyJumpReader {
  private built = false;

  constructor(private readonly dir: string) {}

  private get binary(): string {
    return join(this.dir, BINARY);
  }

  /** The jumps into KUBE-* chains of the family's iptables-legacy tables in the namespace, per table (tables without one left out). */
  jumps(netns: string, family: Family): TableJumps[] {
    if (!this.built || !existsSync(this.binary)) {
      run(jumpReaderCompileCommand(this.binary));
      this.built = true;
    }
    const r = exec(inNetns(netns, [this.binary, family]));
    if (r.status !== 0) throw new Error(`iptables dataplane: reading the ${family} legacy tables of netns ${netns} failed (exit ${r.status}): ${r.stderr.trim()}`);
    return parseJumpLines(r.stdout);
  }
}
