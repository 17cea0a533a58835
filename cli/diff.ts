// `testbed diff A B`: plan both stacks and print only what differs, resource by resource, key by key.
import { execFile } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { promisify } from "node:util";
import { Command } from "commander";
import { structuredPatch } from "diff";
import { deployment, previewMark, resourceKey, type Operation } from "../infra/lifecycle.js";
import type { PlannedResource } from "../infra/offline-engine.js";
import { parseConfigOverrides } from "./plan.js";
import { FlagError } from "./flags.js";
import { PROJECT_DIR, testbedChildArgs } from "./project.js";

type ResourceRecord = PlannedResource;

export type Change =
  | { kind: "added" | "removed"; resource: string }
  | { kind: "changed"; resource: string; key: string; before: unknown; after: unknown };



/** Flattens nested inputs into dotted key paths; multi-line strings stay whole so they can be line-diffed. */
function flatten(value: unknown, prefix: string, out: Map<string, unknown>): Map<string, unknown> {
  if (Array.isArray(value)) {
    if (value.length === 0) out.set(prefix, []);
    value.forEach((v, i) => flatten(v, `${prefix}[${i}]`, out));
  } else if (value && typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>);
    if (entries.length === 0) out.set(prefix, {});
    for (const [k, v] of entries) flatten(v, prefix ? `${prefix}.${k}` : k, out);
  } else {
    out.set(prefix, value);
  }
  return out;
}

/** Every difference between two planned stacks, in a stable order. */
export function diffResources(a: readonly ResourceRecord[], b: readonly ResourceRecord[]): Change[] {
  const left = new Map(a.map((r) => [resourceKey(r), r]));
  const right = new Map(b.map((r) => [resourceKey(r), r]));
  const ids = [...new Set([...left.keys(), ...right.keys()])].sort();
  const changes: Change[] = [];
  for (const id of ids) {
    const l = left.get(id);
    const r = right.get(id);
    if (!l) changes.push({ kind: "added", resource: id });
    else if (!r) changes.push({ kind: "removed", resource: id });
    else {
      const lf = flatten(l.inputs, "", new Map());
      const rf = flatten(r.inputs, "", new Map());
      for (const key of [...new Set([...lf.keys(), ...rf.keys()])].sort()) {
        const before = lf.get(key);
        const after = rf.get(key);
        if (JSON.stringify(before) !== JSON.stringify(after)) changes.push({ kind: "changed", resource: id, key, before, after });
      }
    }
  }
  return changes;
}

/** Lines of one hunk printed before the rest is summarised (a 10000-Service manifest is 100000 lines). */
const HUNK_LINES = 40;

function show(value: unknown): string {
  return value === undefined ? "(absent)" : JSON.stringify(value);
}

/**
 * Human-readable rendering: each resource with the mark `pulumi preview` would give it (when the
 * operations are known), multi-line strings (user data, configuration files) as unified line diffs.
 */
export function formatChanges(changes: readonly Change[], labels: [string, string], operations?: readonly Operation[]): string {
  const ops = new Map((operations ?? []).map((o) => [o.id, o]));
  const header = (c: Change): string => {
    const op = ops.get(c.resource);
    if (!op) return `${c.kind === "added" ? `+ only in ${labels[1]}` : c.kind === "removed" ? `- only in ${labels[0]}` : "~"} ${c.resource}`;
    const what =
      op.kind === "replace"
        ? ` (replace${op.deleteBeforeReplace ? ", delete first" : ""}: ${op.replacedBy!.join(", ")})`
        : op.kind === "same"
          ? " (no change for the engine: only ignored inputs differ)"
          : ` (${op.kind})`;
    return `${previewMark(op).padEnd(2)} ${c.resource}${what}`;
  };
  const lines: string[] = [];
  if (operations) {
    const counts = new Map<string, number>();
    for (const o of operations) if (o.kind !== "same") counts.set(o.kind, (counts.get(o.kind) ?? 0) + 1);
    lines.push(
      counts.size === 0
        ? `${labels[0]} -> ${labels[1]}: a pulumi up from the first to the second would change no resource`
        : `${labels[0]} -> ${labels[1]}: a pulumi up from the first to the second would ${[...counts].map(([k, n]) => `${k} ${n}`).join(", ")}`,
    );
    // Replacements spread through inputs that come from the replaced resource: show those too.
    for (const o of operations) {
      if (o.kind === "replace" && !changes.some((c) => c.resource === o.id)) lines.push(`${header({ kind: "changed", resource: o.id, key: "", before: undefined, after: undefined })}`);
    }
  }
  if (changes.length === 0 && !operations) return `no differences between ${labels[0]} and ${labels[1]}`;
  let current = "";
  for (const c of changes) {
    if (c.resource !== current) {
      current = c.resource;
      lines.push(header(c));
    }
    if (c.kind !== "changed") continue;
    if (typeof c.before === "string" && typeof c.after === "string" && (c.before.includes("\n") || c.after.includes("\n"))) {
      lines.push(`    ${c.key}:`);
      const patch = structuredPatch(labels[0], labels[1], c.before, c.after, "", "", { context: 1 });
      for (const hunk of patch.hunks) {
        lines.push(`      @@ -${hunk.oldStart},${hunk.oldLines} +${hunk.newStart},${hunk.newLines} @@`);
        for (const l of hunk.lines.slice(0, HUNK_LINES)) lines.push(`      ${l}`);
        if (hunk.lines.length > HUNK_LINES) lines.push(`      ... ${hunk.lines.length - HUNK_LINES} more lines (--json has them all)`);
      }
    } else {
      lines.push(`    ${c.key}: ${show(c.before)} -> ${show(c.after)}`);
    }
  }
  return lines.join("\n");
}

const run = promisify(execFile);

/**
 * Plans a stack in its own process (Pulumi's runtime state is per process) and reads its resources,
 * with the stack outputs as one more record (pulumi:pulumi:Stack::outputs).
 */
export async function planInChild(stack: string, overrides: readonly string[]): Promise<ResourceRecord[]> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `testbed-plan-${stack}-`));
  try {
    const args = testbedChildArgs(["plan", "--stack", stack, "--out", dir, "--quiet"]);
    for (const o of overrides) args.push("--config", o);
    await run(process.execPath, args, { cwd: PROJECT_DIR, maxBuffer: 64 << 20 }).catch((err: { stderr?: string; message: string }) => {
      throw new Error(`planning stack ${stack} failed:\n${err.stderr?.trim() || err.message}`);
    });
    const resources = JSON.parse(fs.readFileSync(path.join(dir, "resources.json"), "utf8")) as ResourceRecord[];
    // Stack outputs are compared like one more resource, so a changed export shows key by key too.
    const outputs = JSON.parse(fs.readFileSync(path.join(dir, "outputs.json"), "utf8")) as Record<string, unknown>;
    return [...resources, { type: "pulumi:pulumi:Stack", name: "outputs", inputs: outputs }];
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const repeatable = (v: string, prev: string[]) => [...prev, v];

export async function diffCommand(): Promise<Command> {
  return new Command("diff")
    .description(
      "plan two stacks (or one stack under two configurations) offline and print what differs, resource by resource and key by key, " +
        "with what a pulumi up from the first to the second would do to each resource (~ update, +- replace, -+ replace deleting first)",
    )
    .argument("<stackA>", "first stack, e.g. iptables")
    .argument("[stackB]", "second stack, e.g. ebpf; default: stackA again (then compare --before with --after)")
    .option("--config <key=value>", "override a config key in both plans (repeatable)", repeatable, [] as string[])
    .option("--before <key=value>", "override a config key in the first plan only (repeatable)", repeatable, [] as string[])
    .option("--after <key=value>", "override a config key in the second plan only (repeatable)", repeatable, [] as string[])
    .option("--json", "print the changes and the operations as JSON")
    .option("--exit-code", "exit 1 when the plans differ and 0 when they do not, as git diff --exit-code does")
    .addHelpText(
      "after",
      "\nExamples:\n  testbed diff iptables nftables\n  testbed diff ebpf --before services=1000 --after services=5000   (what a campaign step from 1000 to 5000 Services runs)\n\nExit status: 0, and 1 on an error; with --exit-code, as git diff --exit-code: 0 when the plans do not differ, 1 when they do, 2 on an error.",
    )
    .action(async (a: string, b: string | undefined, opts: { config: string[]; before: string[]; after: string[]; json?: boolean; exitCode?: boolean }) => {
      if (b === undefined && opts.before.length === 0 && opts.after.length === 0) {
        throw new FlagError(
          `diff ${a}: one stack and no --before/--after gives two identical plans; accepted: two stacks (testbed diff iptables ${a === "iptables" ? "ebpf" : a}), or one stack under two configurations (testbed diff ${a} --before services=1000 --after services=5000)`,
        );
      }
      const second = b ?? a;
      for (const set of [opts.config, opts.before, opts.after]) parseConfigOverrides(set);
      const [left, right] = await Promise.all([planInChild(a, [...opts.config, ...opts.before]), planInChild(second, [...opts.config, ...opts.after])]);
      const changes = diffResources(left, right);
      const { operations } = deployment(left, right);
      const labels: [string, string] = b === undefined ? [`${a} (before)`, `${a} (after)`] : [a, second];
      console.log(opts.json ? JSON.stringify({ changes, operations: operations.filter((o) => o.kind !== "same" || changes.some((c) => c.resource === o.id)) }, null, 2) : formatChanges(changes, labels, operations));
      if (opts.exitCode && changes.length > 0) process.exitCode = 1;
    });
}
