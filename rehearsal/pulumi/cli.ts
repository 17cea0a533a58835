// `pulumi` on the rehearsal's operator PATH: the commands the Automation API runs for
// backends/cloud-transport.ts's PulumiStack (node_modules/@pulumi/pulumi/automation: localWorkspace.js,
// stack.js, cmd.js), answered from the stack's state (state.ts), and nothing else:
//
//   version
//   stack select --stack S
//   config --show-secrets --json --stack S
//   config set KEY --stack S --plaintext|--secret [--non-interactive] -- VALUE
//   stack output --json [--show-secrets] --stack S
//   stack history --json [--show-secrets] [--page-size N --page N] --stack S
//   up --yes --skip-preview [--exec-kind K] [--message M] --stack S
//   whoami [--json]
//
// `up` plans the real program for the new config, derives the deployment from the last one
// (infra/lifecycle.ts), carries it out over SSH (deploy.ts), and plans again with what the steps
// printed for the outputs (the `step` output is the apply script's real last line).
import { readFileSync } from "node:fs";
import { deployment, resourceKey } from "../../infra/lifecycle.js";
import type { PlannedResource } from "../../infra/offline-engine.js";
import { carryOut, refusal } from "./deploy.js";
import { planStack, STATE_ENV, StackState } from "./state.js";

class CliError extends Error {
  constructor(
    message: string,
    readonly code = 255,
  ) {
    super(message);
  }
}

const VALUE_FLAGS = new Set(["--stack", "-s", "--page-size", "--page", "--exec-kind", "--message", "-m", "--cwd", "-C", "--color"]);
const BOOLEAN_FLAGS = new Set(["--json", "--show-secrets", "--non-interactive", "--yes", "-y", "--skip-preview", "-f", "--plaintext", "--secret", "--path", "--diff"]);

function parse(argv: readonly string[]): { words: string[]; flags: Map<string, string>; rest: string[] } {
  const words: string[] = [];
  const flags = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--") return { words, flags, rest: argv.slice(i + 1) };
    if (!a.startsWith("-")) {
      words.push(a);
      continue;
    }
    const eq = a.indexOf("=");
    const name = eq > 0 ? a.slice(0, eq) : a;
    if (BOOLEAN_FLAGS.has(name)) flags.set(name, eq > 0 ? a.slice(eq + 1) : "true");
    else if (VALUE_FLAGS.has(name)) flags.set(name, eq > 0 ? a.slice(eq + 1) : (argv[++i] ?? ""));
    else throw new CliError(`the rehearsal's pulumi stand-in does not answer the flag ${name} (pulumi ${argv.join(" ")})`, 1);
  }
  return { words, flags, rest: [] };
}

const SDK_VERSION = (JSON.parse(readFileSync(new URL("../../node_modules/@pulumi/pulumi/package.json", import.meta.url), "utf8")) as { version: string }).version;

function stackOf(flags: Map<string, string>): StackState {
  const root = process.env[STATE_ENV];
  if (!root) throw new CliError(`${STATE_ENV} is not set: the rehearsal's pulumi stand-in keeps its stacks there`);
  const name = flags.get("--stack") ?? flags.get("-s");
  if (!name) throw new CliError("no stack selected; pass --stack");
  const stack = StackState.in(root, name);
  if (!stack.exists()) throw new CliError(`error: no stack named '${name}' found`);
  return stack;
}

/** Outputs as `stack output --json` prints them: secrets as "[secret]" unless shown. */
function printable(value: unknown, showSecrets: boolean): unknown {
  if (Array.isArray(value)) return value.map((v) => printable(v, showSecrets));
  if (value && typeof value === "object") {
    const o = value as Record<string, unknown>;
    if (Object.keys(o).length === 1 && "$secret" in o) return showSecrets ? printable(o.$secret, true) : "[secret]";
    return Object.fromEntries(Object.entries(o).map(([k, v]) => [k, printable(v, showSecrets)]));
  }
  return value;
}

const inputsOf = (rs: readonly PlannedResource[]) => new Map(rs.map((r) => [resourceKey(r), JSON.stringify(r.inputs)]));

async function up(stack: StackState, message: string): Promise<void> {
  const startTime = new Date().toISOString();
  const log = (line: string) => process.stdout.write(`${line}\n`);
  const before = stack.resources();
  const config = stack.config();
  const planned = await planStack(stack.name, config, stack.known());
  const d = deployment(before, planned.resources);
  const why = refusal(d, before, planned.resources);
  if (why) throw new CliError(`error: pulumi up --stack ${stack.name}: ${why}`);
  log(`Updating (${stack.name}):`);
  const counts: Record<string, number> = {};
  for (const o of d.operations) counts[o.kind] = (counts[o.kind] ?? 0) + 1;
  const known = stack.known();
  let ranCommand = false;
  const state = new Map(before.map((r) => [resourceKey(r), r]));
  try {
    await carryOut(
      d.steps,
      stack.knownHostsFile,
      ({ step, stdout, stderr }) => {
        // As the engine checkpoints: each finished step is in the state at once.
        if (step.action === "delete") state.delete(step.id);
        else state.set(step.id, step.resource);
        if (step.resource.type === "command:remote:Command" && step.action !== "delete") {
          known[step.id] = { stdout, stderr };
          ranCommand = true;
        }
        stack.setKnown(known);
        stack.setResources([...state.values()]);
      },
      log,
    );
  } catch (err) {
    stack.addHistory({ kind: "update", startTime, endTime: new Date().toISOString(), message, environment: { "exec.kind": "cli" }, config: {}, result: "failed", resourceChanges: {} });
    throw new CliError(`error: update failed\n  ${(err as Error).message.replaceAll("\n", "\n  ")}`);
  }
  // The outputs as the program computes them from what the steps really printed.
  const final = ranCommand ? await planStack(stack.name, config, known) : planned;
  const a = inputsOf(planned.resources);
  const drifted = [...inputsOf(final.resources)].filter(([id, inputs]) => a.get(id) !== inputs).map(([id]) => id);
  if (drifted.length > 0) {
    throw new CliError(`error: the program's inputs of ${drifted.join(", ")} depend on output this update changed; the stand-in deploys in one pass and cannot carry that out`);
  }
  stack.setResources(final.resources);
  stack.setOutputs(final.outputs);
  const resourceChanges = Object.fromEntries(Object.entries(counts).map(([k, n]) => [k, n]));
  stack.addHistory({ kind: "update", startTime, endTime: new Date().toISOString(), message, environment: { "exec.kind": "cli" }, config: {}, result: "succeeded", resourceChanges, outputs: final.outputs });
  const done: Record<string, string> = { same: "unchanged", create: "created", update: "updated", replace: "replaced", delete: "deleted" };
  log(`Resources: ${Object.entries(counts).map(([k, n]) => `${n} ${done[k] ?? k}`).join(", ")}`);
}

async function main(argv: string[]): Promise<void> {
  const { words, flags, rest } = parse(argv);
  const out = (text: string): void => {
    process.stdout.write(text);
  };
  const json = (v: unknown): void => out(`${JSON.stringify(v, null, 2)}\n`);
  const verb = words.join(" ");
  if (verb === "version") return out(`v${SDK_VERSION}\n`);
  if (verb === "whoami") return flags.has("--json") ? json({ user: "rehearsal", organizations: [], url: "file://rehearsal" }) : out("rehearsal\n");
  if (verb === "stack select") {
    stackOf(flags);
    return;
  }
  if (verb === "config") {
    if (!flags.has("--json")) throw new CliError("pulumi config: only --json is answered", 1);
    const showSecrets = flags.has("--show-secrets");
    return json(Object.fromEntries(Object.entries(stackOf(flags).config()).map(([k, v]) => [k, { value: v.secret && !showSecrets ? "[secret]" : v.value, secret: v.secret }])));
  }
  if (words[0] === "config" && words[1] === "set") {
    if (flags.has("--path")) throw new CliError("pulumi config set --path: not answered by the rehearsal's stand-in; set the whole key", 1);
    const key = words[2];
    const value = rest[0] ?? words[3];
    if (!key || value === undefined) throw new CliError("pulumi config set KEY VALUE", 1);
    stackOf(flags).setConfig(key.includes(":") ? key : `dataplane-testbed:${key}`, value, flags.has("--secret"));
    return;
  }
  if (verb === "stack output") {
    if (!flags.has("--json")) throw new CliError("pulumi stack output: only --json is answered", 1);
    return json(printable(stackOf(flags).outputs(), flags.has("--show-secrets")));
  }
  if (verb === "stack history") {
    const history = stackOf(flags).history().map(({ outputs: _outputs, ...r }) => r);
    const size = Number(flags.get("--page-size") ?? history.length);
    const page = Number(flags.get("--page") ?? 1);
    return json(history.slice((page - 1) * size, page * size));
  }
  if (verb === "up") {
    for (const f of ["--yes", "--skip-preview"]) if (!flags.has(f)) throw new CliError(`pulumi up: the stand-in runs only non-interactive updates (${f})`, 1);
    return up(stackOf(flags), flags.get("--message") ?? "");
  }
  throw new CliError(`the rehearsal's pulumi stand-in does not answer \`pulumi ${argv.join(" ")}\`; it answers: version, whoami, stack select, config, config set, stack output, stack history, up`, 1);
}

// Exit codes through process.exitCode: process.exit() would cut off output still queued for a pipe.
main(process.argv.slice(2)).then(
  () => {
    process.exitCode = 0;
  },
  (err: unknown) => {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = err instanceof CliError ? err.code : 255;
  },
);
