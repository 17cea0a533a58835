// `testbed diff A B`: plan both stacks and print only what differs, resource by resource, key by key.
import { execFile } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { promisify } from "node:util";
import { Command } from "commander";
import { structuredPatch } from "diff";
import { PROJECT_DIR, parseConfigOverrides } from "./plan.js";

interface ResourceRecord {
  readonly type: string;
  readonly name: string;
  readonly inputs: Record<string, unknown>;
}

export type Change =
  | { kind: "added" | "removed"; resource: string }
  | { kind: "changed"; resource: string; key: string; before: unknown; after: unknown };

const resourceId = (r: ResourceRecord) => `${r.type}::${r.name}`;

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
  const left = new Map(a.map((r) => [resourceId(r), r]));
  const right = new Map(b.map((r) => [resourceId(r), r]));
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

function show(value: unknown): string {
  return value === undefined ? "(absent)" : JSON.stringify(value);
}

/** Human-readable rendering: multi-line strings (user data, configuration files) as unified line diffs. */
export function formatChanges(changes: readonly Change[], labels: [string, string]): string {
  if (changes.length === 0) return `no differences between ${labels[0]} and ${labels[1]}`;
  const lines: string[] = [];
  let current = "";
  for (const c of changes) {
    if (c.resource !== current) {
      current = c.resource;
      const mark = c.kind === "added" ? `+ only in ${labels[1]}` : c.kind === "removed" ? `- only in ${labels[0]}` : "~";
      lines.push(`${mark} ${c.resource}`);
    }
    if (c.kind !== "changed") continue;
    if (typeof c.before === "string" && typeof c.after === "string" && (c.before.includes("\n") || c.after.includes("\n"))) {
      lines.push(`    ${c.key}:`);
      const patch = structuredPatch(labels[0], labels[1], c.before, c.after, "", "", { context: 1 });
      for (const hunk of patch.hunks) {
        lines.push(`      @@ -${hunk.oldStart},${hunk.oldLines} +${hunk.newStart},${hunk.newLines} @@`);
        for (const l of hunk.lines) lines.push(`      ${l}`);
      }
    } else {
      lines.push(`    ${c.key}: ${show(c.before)} -> ${show(c.after)}`);
    }
  }
  return lines.join("\n");
}

const run = promisify(execFile);

/** Plans a stack in its own process (Pulumi's runtime state is per process) and reads its resources. */
async function planInChild(stack: string, overrides: string[]): Promise<ResourceRecord[]> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `testbed-plan-${stack}-`));
  try {
    const args = ["--import", "tsx/esm", path.join(PROJECT_DIR, "cli/main.ts"), "plan", "--stack", stack, "--out", dir, "--quiet"];
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

export async function diffCommand(): Promise<Command> {
  return new Command("diff")
    .description("plan two stacks offline and print only what differs, resource by resource and key by key")
    .argument("<stackA>", "first stack, e.g. iptables")
    .argument("<stackB>", "second stack, e.g. ebpf")
    .option("--config <key=value>", "override a config key in both plans (repeatable)", (v: string, prev: string[]) => [...prev, v], [] as string[])
    .option("--json", "print the changes as JSON")
    .action(async (a: string, b: string, opts: { config: string[]; json?: boolean }) => {
      parseConfigOverrides(opts.config);
      const [left, right] = await Promise.all([planInChild(a, opts.config), planInChild(b, opts.config)]);
      const changes = diffResources(left, right);
      console.log(opts.json ? JSON.stringify(changes, null, 2) : formatChanges(changes, [a, b]));
    });
}
