// Where a report goes: a folder that holds one campaign's report and nothing else, written whole or not at all.
// Every file of a report (report.md, each table, each figure, the manifest) is written into a fresh folder beside
// the target, which then takes the target's place: a report that fails half-way leaves the previous one whole, and
// files of an earlier report never stay beside the new ones. The manifest (report.json) names the campaign, so a
// folder holding another campaign's report is not replaced unless asked (force), and a folder holding anything
// that is not a report is never replaced.
import { existsSync, mkdirSync, readdirSync, readFileSync, realpathSync, renameSync, rmSync, statfsSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";

/** The report's manifest and summary, written beside report.md (and printed by `report --json`). */
export const REPORT_MANIFEST = "report.json";

/** One file of a report, as it is written. */
export interface ReportFile {
  readonly name: string;
  readonly content: string;
}

/** What a report folder cannot be, with the folder (the caller names its flag). */
export class ReportFolderError extends Error {
  override name = "ReportFolderError";
  constructor(
    readonly folder: string,
    readonly problem: string,
  ) {
    super(`${folder}: ${problem}`);
  }
}

/**
 * File systems that hold no files a report could be written to (statfs f_type, linux/magic.h): writing under them
 * fails or, under /proc and /sys, can hang on entries that never end.
 */
const PSEUDO_FILE_SYSTEMS: Readonly<Record<number, string>> = {
  0x9fa0: "proc",
  0x62656572: "sysfs",
  0x27e0eb: "cgroup",
  0x63677270: "cgroup2",
  0x64626720: "debugfs",
  0x74726163: "tracefs",
  0x73636673: "securityfs",
  0x1cd1: "devpts",
  0xcafe4a11: "bpf",
  0x62656570: "configfs",
  0x6165676c: "pstore",
  0xde5e81e4: "efivarfs",
  0x6e736673: "nsfs",
  0x19800202: "mqueue",
  0x65735543: "fusectl",
};

/** A name a report writes: its Markdown, tables, figures and manifest, in the folder itself (no subfolders). */
const REPORT_FILE = /\.(md|csv|svg|json)$/;

/** The nearest folder at or above `target` that exists. */
function existingAncestor(target: string): string {
  let dir = target;
  while (!existsSync(dir)) dir = path.dirname(dir);
  return dir;
}

/** What a report folder holds now, and whether the new report may take its place. */
export type ReportFolderState = { kind: "new" } | { kind: "empty" } | { kind: "report"; campaign: string | undefined };

/**
 * Checks a report folder before anything is computed or written: refused at once when it lies on a pseudo file
 * system (/proc, /sys, ...), is not a folder, holds files that are not a report's, or (with a campaign id) holds
 * another campaign's report without `force`. Returns what it holds.
 */
export function checkReportFolder(folder: string, campaignId: string | undefined, opts: { force?: boolean } = {}): ReportFolderState {
  const target = path.resolve(folder);
  const ancestor = existingAncestor(target);
  const real = realpathSync(ancestor);
  const type = PSEUDO_FILE_SYSTEMS[statfsSync(real).type];
  if (type !== undefined || real === "/dev" || real.startsWith("/dev/")) {
    throw new ReportFolderError(folder, `is on ${type ? `a ${type} file system` : "the device file system (/dev)"}, which holds no report; accepted: a folder on a disk, e.g. ./report`);
  }
  if (ancestor !== target && !statSync(ancestor).isDirectory()) throw new ReportFolderError(folder, `${ancestor} is not a directory`);
  if (ancestor !== target) return { kind: "new" };
  if (!statSync(target).isDirectory()) throw new ReportFolderError(folder, "not a directory; accepted: a new or empty folder, or one holding a testbed report");
  const entries = readdirSync(target, { withFileTypes: true });
  if (entries.length === 0) return { kind: "empty" };
  const foreign = entries.filter((e) => !e.isFile() || !REPORT_FILE.test(e.name)).map((e) => e.name);
  if (foreign.length > 0 || !entries.some((e) => e.name === "report.md")) {
    const shown = (foreign.length > 0 ? foreign : entries.map((e) => e.name)).slice(0, 5).join(", ");
    throw new ReportFolderError(folder, `holds files that are not a testbed report (${shown}${entries.length > 5 ? ", ..." : ""}), which a report never replaces; accepted: a new or empty folder, or one holding a testbed report`);
  }
  let campaign: string | undefined;
  try {
    campaign = (JSON.parse(readFileSync(path.join(target, REPORT_MANIFEST), "utf8")) as { campaign?: string }).campaign;
  } catch {
    campaign = undefined;
  }
  if (campaignId !== undefined && campaign !== campaignId && !opts.force) {
    const whose = campaign === undefined ? "a report whose campaign it does not name (no report.json)" : `the report of campaign ${campaign}`;
    throw new ReportFolderError(folder, `holds ${whose}, not of campaign ${campaignId}; --force replaces it, or choose another folder`);
  }
  return { kind: "report", campaign };
}

/**
 * Writes every file into a fresh folder beside `folder`, then puts it in the folder's place (the previous report,
 * if any, is removed only once the new one is whole). Call checkReportFolder first.
 */
export function writeReportFolder(folder: string, files: readonly ReportFile[]): void {
  const target = path.resolve(folder);
  const parent = path.dirname(target);
  const names = new Set<string>();
  for (const f of files) {
    if (!REPORT_FILE.test(f.name) || f.name !== path.basename(f.name)) throw new Error(`report file ${f.name}: accepted: a name in the folder itself ending in .md, .csv, .svg or .json`);
    if (names.has(f.name)) throw new Error(`two report files are named ${f.name}`);
    names.add(f.name);
  }
  const staging = path.join(parent, `.${path.basename(target)}.writing-${process.pid}`);
  const previous = path.join(parent, `.${path.basename(target)}.replaced-${process.pid}`);
  try {
    mkdirSync(parent, { recursive: true });
    rmSync(staging, { recursive: true, force: true });
    mkdirSync(staging);
  } catch (err) {
    throw new ReportFolderError(folder, `cannot write in ${parent} (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
  try {
    for (const f of files) writeFileSync(path.join(staging, f.name), f.content);
    const replacing = existsSync(target);
    if (replacing) renameSync(target, previous);
    try {
      renameSync(staging, target);
    } catch (err) {
      if (replacing) renameSync(previous, target);
      throw err;
    }
    if (replacing) rmSync(previous, { recursive: true, force: true });
  } catch (err) {
    rmSync(staging, { recursive: true, force: true });
    if (err instanceof ReportFolderError) throw err;
    throw new ReportFolderError(folder, `cannot be written (${(err as NodeJS.ErrnoException).code ?? String(err)}); an earlier report there is left as it was`);
  }
}
