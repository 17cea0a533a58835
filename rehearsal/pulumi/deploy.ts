// The honest part of the Pulumi CLI stand-in's `up`: the deployment infra/lifecycle.ts derives from
// the stack's last plan and the new one (what a real `pulumi up` would update, replace and delete,
// in its order), carried out on the rehearsal's hosts over real SSH through the bastion, with the
// connection each resource declares: a CopyToRemote writes its file on its host, a remote Command
// runs its create, update or delete script there, as pulumi-command does.
//
// The first deployment (cloud-init, kubeadm, Helm) cannot run on namespace hosts, nor can a new
// server or network. An update that would touch anything but the resources the rehearsal carries out
// is refused before anything runs, naming what it would have changed.
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import type { Deployment, Step } from "../../infra/lifecycle.js";
import { assetText, type PlannedResource } from "../../infra/offline-engine.js";
import { shellQuote } from "../../infra/cluster/shell.js";

/**
 * Components whose remote resources the rehearsal carries out for real: their scripts need only
 * what its hosts have (kubectl, whose API the rehearsal stands in for; the D-ITG tools).
 */
export const CARRIED_OUT_COMPONENTS = ["testbed:workloads:Workloads"] as const;
const REMOTE_TYPES = ["command:remote:Command", "command:remote:CopyToRemote"];

interface Connection {
  readonly host: string;
  readonly port?: number;
  readonly user: string;
  readonly privateKey: string;
  readonly proxy?: { readonly host: string; readonly port?: number; readonly user: string; readonly privateKey: string };
}

const unwrap = (v: unknown): unknown => (v && typeof v === "object" && "$secret" in (v as object) ? unwrap((v as { $secret: unknown }).$secret) : v);

/** The connection a remote resource declares, secrets unwrapped. */
function connectionOf(r: PlannedResource): Connection {
  const c = unwrap(r.inputs.connection) as Record<string, unknown> | undefined;
  if (!c || typeof c.host !== "string") throw new Error(`${r.type}::${r.name}: no connection`);
  const proxy = unwrap(c.proxy) as Record<string, unknown> | undefined;
  return {
    host: c.host,
    user: String(unwrap(c.user) ?? "root"),
    privateKey: String(unwrap(c.privateKey)),
    ...(typeof c.port === "number" ? { port: c.port } : {}),
    ...(proxy && typeof proxy.host === "string"
      ? { proxy: { host: proxy.host, user: String(unwrap(proxy.user) ?? "root"), privateKey: String(unwrap(proxy.privateKey)), ...(typeof proxy.port === "number" ? { port: proxy.port } : {}) } }
      : {}),
  };
}

/** Why the rehearsal cannot carry out a deployment, or undefined when it can. */
export function refusal(d: Deployment, before: readonly PlannedResource[], after: readonly PlannedResource[]): string | undefined {
  const byId = new Map([...before, ...after].map((r) => [`${r.type}::${r.name}`, r]));
  const carried = (r: PlannedResource | undefined) =>
    r !== undefined && REMOTE_TYPES.includes(r.type) && (CARRIED_OUT_COMPONENTS as readonly string[]).includes((r.options?.parent ?? "").split("::")[0]!);
  const touched = d.operations.filter((o) => o.kind !== "same" && !carried(byId.get(o.id)));
  if (touched.length === 0) return undefined;
  const what = touched.map((o) => `${o.kind} ${o.id}${o.changed.length > 0 ? ` (${o.changed.join(", ")})` : ""}`);
  return `the rehearsal cannot carry out this update: it would ${what.slice(0, 8).join("; ")}${what.length > 8 ? `; and ${what.length - 8} more` : ""}. Its hosts are network namespaces on one machine: only the resources of ${CARRIED_OUT_COMPONENTS.join(", ")} (the workloads' manifests and their apply, which testbed:services changes) run there for real; a new or replaced server, network, cloud-init, kubeadm or Helm step does not. Nothing was changed`;
}

export interface StepOutcome {
  readonly step: Step;
  readonly stdout: string;
  readonly stderr: string;
  readonly seconds: number;
}

/** SSH through the bastion with one connection per host for the whole deployment (ControlMaster). */
class RemoteRunner {
  private readonly dir = mkdtempSync(path.join(tmpdir(), "testbed-rehearsal-ssh-"));
  private readonly configs = new Map<string, string>();

  constructor(private readonly knownHosts: string) {}

  private configFor(c: Connection): string {
    const id = `${c.user}@${c.host}:${c.port ?? 22} via ${c.proxy?.host ?? "-"}`;
    const existing = this.configs.get(id);
    if (existing) return existing;
    const n = this.configs.size;
    const key = path.join(this.dir, `key-${n}`);
    writeFileSync(key, c.privateKey.endsWith("\n") ? c.privateKey : `${c.privateKey}\n`, { mode: 0o600 });
    const file = path.join(this.dir, `config-${n}`);
    const common = ["  IdentitiesOnly yes", `  IdentityFile ${key}`, "  BatchMode yes", "  StrictHostKeyChecking accept-new", `  UserKnownHostsFile ${this.knownHosts}`, "  ConnectTimeout 30"];
    writeFileSync(
      file,
      [
        ...(c.proxy ? ["Host jump", `  HostName ${c.proxy.host}`, `  Port ${c.proxy.port ?? 22}`, `  User ${c.proxy.user}`, ...common] : []),
        "Host target",
        `  HostName ${c.host}`,
        `  Port ${c.port ?? 22}`,
        `  User ${c.user}`,
        ...(c.proxy ? ["  ProxyJump jump"] : []),
        ...common,
        "  ControlMaster auto",
        `  ControlPath ${path.join(this.dir, `cm-${n}`)}`,
        "  ControlPersist 120",
        "",
      ].join("\n"),
    );
    this.configs.set(id, file);
    return file;
  }

  run(c: Connection, command: string, stdin: string): Promise<{ code: number; stdout: string; stderr: string }> {
    const config = this.configFor(c);
    return new Promise((resolve, reject) => {
      const child = spawn("ssh", ["-F", config, "target", command], { stdio: ["pipe", "pipe", "pipe"] });
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
      child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
      child.once("error", reject);
      child.once("close", (code) => resolve({ code: code ?? 255, stdout, stderr }));
      child.stdin.end(stdin);
    });
  }

  async close(): Promise<void> {
    for (const config of this.configs.values()) {
      await new Promise((r) => spawn("ssh", ["-F", config, "-O", "exit", "target"], { stdio: "ignore" }).once("close", r));
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

const tail = (text: string, n = 12) => text.trim().split("\n").slice(-n).join("\n");

/**
 * Runs the steps in order; stops at the first failing create or update, as `pulumi up` does.
 * `done` is told of each step that succeeded, so the caller records it in the state at once.
 */
export async function carryOut(steps: readonly Step[], knownHosts: string, done: (o: StepOutcome) => void, log: (line: string) => void): Promise<void> {
  const runner = new RemoteRunner(knownHosts);
  try {
    for (const step of steps) {
      const r = step.resource;
      const started = Date.now();
      const mark = step.action === "create" ? "+" : step.action === "update" ? "~" : "-";
      log(` ${mark}  ${r.type} ${r.name} ${step.action === "create" ? "creating" : step.action === "update" ? "updating" : "deleting"} (${step.reason})`);
      let stdout = "";
      let stderr = "";
      if (r.type === "command:remote:CopyToRemote") {
        // pulumi-command's CopyToRemote removes nothing when it is deleted.
        if (step.action !== "delete") {
          const remote = String(r.inputs.remotePath);
          // A string asset's text, or a file asset's file as the plan hashed it (a file changed since is refused).
          const source = r.inputs.source as { $file?: string; $sha256?: string } | undefined;
          const text = assetText(source);
          if (text === undefined) throw new Error(`${r.type}::${r.name}: its source is neither a string asset nor a file asset`);
          if (source?.$sha256 !== undefined && createHash("sha256").update(text).digest("hex") !== source.$sha256) {
            throw new Error(`${r.type}::${r.name}: ${source.$file} changed after the plan hashed it`);
          }
          const result = await runner.run(connectionOf(r), `mkdir -p ${shellQuote(path.posix.dirname(remote))} && cat > ${shellQuote(remote)}`, text);
          if (result.code !== 0) throw new Error(`${r.type}::${r.name}: copying to ${remote} failed (${result.code}): ${tail(result.stderr)}`);
        }
      } else if (r.type === "command:remote:Command") {
        const script = step.action === "create" ? r.inputs.create : step.action === "update" ? (r.inputs.update ?? r.inputs.create) : r.inputs.delete;
        if (typeof script === "string") {
          const stdin = unwrap(r.inputs.stdin);
          const result = await runner.run(connectionOf(r), script, typeof stdin === "string" ? stdin : "");
          ({ stdout, stderr } = result);
          if (result.code !== 0 && step.action !== "delete") {
            throw new Error(`${r.type}::${r.name}: error: Process exited with status ${result.code}\n${tail(stderr)}${stdout.trim() ? `\n${tail(stdout, 5)}` : ""}`);
          }
        }
      } else {
        throw new Error(`${r.type}::${r.name}: the rehearsal carries out no ${r.type}`);
      }
      const seconds = (Date.now() - started) / 1000;
      log(` ${mark}  ${r.type} ${r.name} ${step.action === "create" ? "created" : step.action === "update" ? "updated" : "deleted"} (${seconds.toFixed(1)}s)`);
      done({ step, stdout, stderr, seconds });
    }
  } finally {
    await runner.close();
  }
}
