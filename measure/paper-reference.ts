// The paper's published eBPF/iptables ratios (Tables 1-3), read from the CSV copies in reference/,
// so that a report can set each measured ratio beside the published one of the same comparison.
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { parse } from "csv-parse/sync";
import { FAMILIES } from "../scenario/schema.js";
import type { Family } from "../scenario/cidr.js";
import type { Dataplane } from "../scenario/schema.js";

/** The statistics whose eBPF/iptables ratio the paper publishes. */
export type PaperStatistic = "std" | "max";

/** The paper's one comparison: Cilium's kube-proxy replacement (numerator) against kube-proxy in iptables mode. */
export const PAPER_COMPARISON: { readonly dataplane: Dataplane; readonly baseline: Dataplane } = { dataplane: "ebpf", baseline: "iptables" };

/** One published ratio: which table, comparison, profile, family, statistic and Service count it belongs to. */
export interface PaperRatio {
  readonly table: string;
  readonly dataplane: Dataplane;
  readonly baseline: Dataplane;
  readonly profile: "throughput" | "latency";
  readonly family: Family;
  readonly statistic: PaperStatistic;
  readonly services: number;
  readonly ratio: number;
}

/** How each CSV file maps its columns onto (profile, family, statistic). */
const TABLES: readonly {
  file: string;
  table: string;
  profile: PaperRatio["profile"];
  columns: Record<string, { family: Family; statistic: PaperStatistic }>;
}[] = [
  {
    file: "paper-table1-throughput-std-ratio.csv",
    table: "Table 1",
    profile: "throughput",
    columns: {
      std_ratio_ipv4: { family: "ipv4", statistic: "std" },
      std_ratio_ipv6: { family: "ipv6", statistic: "std" },
    },
  },
  ...FAMILIES.map((family, i) => ({
    file: `paper-table${i + 2}-latency-${family}.csv`,
    table: `Table ${i + 2}`,
    profile: "latency" as const,
    columns: {
      max_ratio: { family, statistic: "max" as const },
      std_ratio: { family, statistic: "std" as const },
    },
  })),
];

/** The project's copy of the paper's tables. */
export const REFERENCE_DIR = fileURLToPath(new URL("../reference/", import.meta.url));

export class PaperReferenceError extends Error {
  override name = "PaperReferenceError";
}

/**
 * Parses one reference table: `#` comment lines, a header row starting with `services`, then one
 * row per Service count. Every cell must be a number; errors name the file, the line and the column.
 */
export function parsePaperTable(text: string, file: string, expectedColumns: readonly string[]): Record<string, number>[] {
  let rows: string[][];
  try {
    rows = parse(text, { comment: "#", skip_empty_lines: true, trim: true }) as string[][];
  } catch (err) {
    throw new PaperReferenceError(`${file}: not a CSV table (${(err as Error).message})`);
  }
  const [header, ...body] = rows;
  const wanted = ["services", ...expectedColumns];
  if (!header || header.join(",") !== wanted.join(",")) {
    throw new PaperReferenceError(`${file}: header is ${JSON.stringify(header?.join(",") ?? "")}; accepted: ${wanted.join(",")}`);
  }
  return body.map((cells, i) =>
    Object.fromEntries(
      header.map((column, j) => {
        const value = Number(cells[j]);
        if (cells[j] === undefined || cells[j] === "" || !Number.isFinite(value)) {
          throw new PaperReferenceError(
            `${file}: data row ${i + 1}, column ${column} is ${JSON.stringify(cells[j] ?? "")}; accepted: a number`,
          );
        }
        return [column, value];
      }),
    ),
  );
}

/** Reads every published ratio from `dir` (the project's reference/ by default). */
export function loadPaperReference(dir: string = REFERENCE_DIR): PaperRatio[] {
  const ratios: PaperRatio[] = [];
  for (const t of TABLES) {
    const path = `${dir.replace(/\/$/, "")}/${t.file}`;
    let text: string;
    try {
      text = readFileSync(path, "utf8");
    } catch (err) {
      throw new PaperReferenceError(`cannot read the paper's ${t.table} at ${path}: ${(err as Error).message}`);
    }
    for (const row of parsePaperTable(text, path, Object.keys(t.columns))) {
      for (const [column, where] of Object.entries(t.columns)) {
        ratios.push({ table: t.table, ...PAPER_COMPARISON, profile: t.profile, ...where, services: row.services!, ratio: row[column]! });
      }
    }
  }
  return ratios;
}

/** The published ratio for one comparison, if the paper has one. */
export function paperRatioFor(
  reference: readonly PaperRatio[],
  key: { profile: string; family: Family; statistic: string; services: number; dataplane: Dataplane; baseline: Dataplane },
): PaperRatio | undefined {
  return reference.find(
    (r) =>
      r.profile === key.profile &&
      r.family === key.family &&
      r.statistic === key.statistic &&
      r.services === key.services &&
      r.dataplane === key.dataplane &&
      r.baseline === key.baseline,
  );
}
