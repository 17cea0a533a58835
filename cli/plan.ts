// `testbed plan`: the real Pulumi program of one stack against the mocked engine, its resources
// and every file it would put on a host.
import * as fs from "node:fs";
import * as path from "node:path";
import { Command, Option } from "commander";
import { assetText, readStackConfig, redactSecrets, runOffline, type PlannedResource } from "../infra/offline-engine.js";
import { HOST_METADATA_KEY, ROLE_METADATA_KEY } from "../infra/hosts.js";
import { REMOTE_ARTIFACT_ROOT } from "../infra/remote-files.js";
import { printJson } from "./flags.js";
import { PROJECT_DIR } from "./project.js";

export { PROJECT_DIR };

export interface Artifact {
  /** Path under the plan's output directory, e.g. "cloud-init/worker.yaml". */
  readonly path: string;
  readonly content: string;
}

/**
 * The files a deployment would put on hosts, read from the planned resources themselves:
 * servers' user data (named by their host: the testbed-host metadata of worker-N, else the
 * testbed-role) and every uploaded asset.
 */
export function collectArtifacts(resources: readonly PlannedResource[]): Artifact[] {
  const artifacts: Artifact[] = [];
  for (const r of resources) {
    if (r.type === "openstack:compute/instance:Instance" && typeof r.inputs.userData === "string") {
      const metadata = r.inputs.metadata as Record<string, string> | undefined;
      const host = metadata?.[HOST_METADATA_KEY] ?? metadata?.[ROLE_METADATA_KEY] ?? r.name;
      artifacts.push({ path: `cloud-init/${host}.yaml`, content: r.inputs.userData });
    }
    const remotePath = r.inputs.remotePath;
    if (r.type === "command:remote:CopyToRemote" && typeof remotePath === "string" && remotePath.startsWith(`${REMOTE_ARTIFACT_ROOT}/`)) {
      const content = assetText(r.inputs.source);
      if (content !== undefined) artifacts.push({ path: remotePath.slice(REMOTE_ARTIFACT_ROOT.length + 1), content });
    }
  }
  const seen = new Map<string, string>();
  for (const a of artifacts) {
    const before = seen.get(a.path);
    if (before !== undefined && before !== a.content) {
      throw new Error(`two resources write different content to the artifact ${a.path}`);
    }
    seen.set(a.path, a.content);
  }
  return artifacts.filter((a, i) => artifacts.findIndex((b) => b.path === a.path) === i);
}

/** One `--config KEY=VALUE` flag: the full top-level key, the path below it, the value as given. */
interface ConfigOverride {
  readonly key: string;
  readonly path: readonly (string | number)[];
  readonly value: string;
}

/** `a.b[0].c` -> ["a", "b", 0, "c"]. */
function splitConfigPath(text: string, flag: string): (string | number)[] {
  const parts: (string | number)[] = [];
  for (const m of text.matchAll(/([^.[\]]+)|\[(\d+)\]|(\.)/g)) {
    if (m[1] !== undefined) parts.push(m[1]);
    else if (m[2] !== undefined) parts.push(Number(m[2]));
  }
  if (parts.length === 0 || typeof parts[0] !== "string") {
    throw new Error(`--config "${flag}": accepted: KEY=VALUE or KEY.PATH=VALUE, e.g. --config services=10000 or --config sweep.runs=5`);
  }
  return parts;
}

/** Parses repeated `--config key=value` flags; keys without a namespace are testbed: keys. */
export function parseConfigOverrides(pairs: readonly string[]): ConfigOverride[] {
  return pairs.map((pair) => {
    const eq = pair.indexOf("=");
    if (eq <= 0) throw new Error(`--config "${pair}": accepted: KEY=VALUE, e.g. --config services=10000 or --config sweep.runs=5`);
    const name = pair.slice(0, eq);
    const colon = name.indexOf(":");
    const namespace = colon >= 0 ? name.slice(0, colon) : "testbed";
    const [top, ...path] = splitConfigPath(colon >= 0 ? name.slice(colon + 1) : name, pair);
    return { key: `${namespace}:${String(top)}`, path, value: pair.slice(eq + 1) };
  });
}

/** A leaf set through a path, typed as `pulumi config set --path` types it: booleans, integers, else text. */
function pathValue(text: string): unknown {
  if (text === "true" || text === "false") return text === "true";
  if (/^-?\d+$/.test(text)) return Number(text);
  return text;
}

/**
 * Applies the overrides to a stack's config (full keys to the strings Pulumi stores): a top-level
 * key takes the text as it is, as `pulumi config set` does; a path sets one leaf inside the key's
 * object and keeps the rest, as `pulumi config set --path` does.
 */
export function applyConfigOverrides(values: Readonly<Record<string, string>>, pairs: readonly string[]): Record<string, string> {
  const out = { ...values };
  for (const o of parseConfigOverrides(pairs)) {
    if (o.path.length === 0) {
      out[o.key] = o.value;
      continue;
    }
    let root: unknown;
    try {
      root = out[o.key] === undefined ? (typeof o.path[0] === "number" ? [] : {}) : JSON.parse(out[o.key]!);
    } catch {
      root = undefined;
    }
    const where = `--config ${o.key}.${o.path.join(".")}`;
    if (root === null || typeof root !== "object") throw new Error(`${where}: ${o.key} holds ${out[o.key]}, not an object; accepted: a path into an object setting`);
    let node = root as Record<string | number, unknown>;
    o.path.forEach((segment, i) => {
      if (i === o.path.length - 1) {
        node[segment] = pathValue(o.value);
        return;
      }
      const next = node[segment] ?? (typeof o.path[i + 1] === "number" ? [] : {});
      if (next === null || typeof next !== "object") throw new Error(`${where}: ${String(segment)} holds ${JSON.stringify(next)}, not an object`);
      node[segment] = next;
      node = next as Record<string | number, unknown>;
    });
    out[o.key] = JSON.stringify(root);
  }
  return out;
}

export interface PlanResult {
  readonly resources: PlannedResource[];
  readonly outputs: Record<string, unknown>;
  readonly artifacts: Artifact[];
}

/** Plans a committed stack with `--config` overrides applied to its config. */
export async function plan(stack: string, overrides: readonly string[] = []): Promise<PlanResult> {
  const { values, secretKeys } = readStackConfig(PROJECT_DIR, stack, (p) => fs.readFileSync(p, "utf8"));
  const run = await runOffline({ stack, config: applyConfigOverrides(values, overrides), secretKeys });
  return { resources: run.resources, outputs: run.outputs, artifacts: collectArtifacts(run.resources) };
}

export function writePlan(dir: string, result: PlanResult): void {
  fs.mkdirSync(dir, { recursive: true });
  const resources = result.resources.map((r) => ({ type: r.type, name: r.name, inputs: redactSecrets(r.inputs), ...(r.options ? { options: r.options } : {}) }));
  fs.writeFileSync(path.join(dir, "resources.json"), `${JSON.stringify(resources, null, 2)}\n`);
  fs.writeFileSync(path.join(dir, "outputs.json"), `${JSON.stringify(redactSecrets(result.outputs), null, 2)}\n`);
  for (const a of result.artifacts) {
    const file = path.join(dir, a.path);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, a.content);
  }
}

/** Count of resources per type, widest first, as the table `plan` prints. */
export function resourceTable(resources: readonly PlannedResource[]): string {
  const counts = new Map<string, number>();
  for (const r of resources) counts.set(r.type, (counts.get(r.type) ?? 0) + 1);
  const rows = [...counts.entries()].sort((a, b) => a[0].localeCompare(b[0]));
  const width = Math.max(4, ...rows.map(([t]) => t.length));
  return [`${"TYPE".padEnd(width)}  COUNT`, ...rows.map(([t, n]) => `${t.padEnd(width)}  ${n}`), `${"total".padEnd(width)}  ${resources.length}`].join("\n");
}

export async function planCommand(): Promise<Command> {
  return new Command("plan")
    .description("run the Pulumi program of a stack offline (mocked engine): print its resources, write them and every rendered file")
    .addOption(new Option("--stack <name>", "stack to plan (a committed Pulumi.<name>.yaml)").makeOptionMandatory())
    .option("--out <dir>", "write resources.json, outputs.json and the rendered files here")
    .option("--config <key=value>", "override a config key for this plan, KEY=VALUE or KEY.PATH=VALUE as pulumi config set [--path] (repeatable)", (v: string, prev: string[]) => [...prev, v], [] as string[])
    .option("--quiet", "print nothing but errors")
    .option("--json", "print a summary object instead of the table: {stack, resources, types, artifacts, out}")
    .action(async (opts: { stack: string; out?: string; config: string[]; quiet?: boolean; json?: boolean }) => {
      const result = await plan(opts.stack, opts.config);
      if (opts.out) writePlan(opts.out, result);
      if (opts.json) {
        const types: Record<string, number> = {};
        for (const r of result.resources) types[r.type] = (types[r.type] ?? 0) + 1;
        printJson({ stack: opts.stack, resources: result.resources.length, types, artifacts: result.artifacts.map((a) => a.path), ...(opts.out ? { out: path.resolve(opts.out) } : {}) });
        return;
      }
      if (!opts.quiet) console.log(resourceTable(result.resources));
      if (opts.out && !opts.quiet) console.log(`\nwrote ${result.resources.length} resources and ${result.artifacts.length} files to ${opts.out}`);
    });
}
