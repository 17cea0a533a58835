// `testbed verify-openstack`: the networking resources of a stack's plan sent to a real Neutron API
// as a project member (or admin), then read back, so that a change can be checked before `pulumi up`.
import { execFile } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { promisify } from "node:util";
import { Command, Option } from "commander";
import { ROLES, type Role } from "../infra/neutron/api.js";
import { neutronUnavailable, startLocalNeutron } from "../infra/neutron/local-server.js";
import { networkingPlan, type NetworkingPlan } from "../infra/neutron/networking-plan.js";
import { replayPassed, replayPlan, type ReplayReport } from "../infra/neutron/replay.js";
import { plan } from "./plan.js";
import { PROJECT_DIR, testbedChildArgs } from "./project.js";

/** The networking part of a stack's plan with `--config` flags applied, planned in this process. */
export async function planNetworking(stack: string, flags: readonly string[] = []): Promise<NetworkingPlan> {
  return networkingPlan(stack, flags, (await plan(stack, flags)).resources);
}

const execFileP = promisify(execFile);

/** planNetworking in a child process (Pulumi's runtime is per process), for callers that plan several configurations. */
export async function planNetworkingInChild(stack: string, flags: readonly string[] = []): Promise<NetworkingPlan> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `testbed-networking-plan-${stack}-`));
  const out = path.join(dir, "plan.json");
  try {
    const args = testbedChildArgs(["verify-openstack", "--stack", stack, "--plan-json", out]);
    for (const f of flags) args.push("--config", f);
    await execFileP(process.execPath, args, { cwd: PROJECT_DIR, maxBuffer: 64 << 20 }).catch((err: { stderr?: string; message: string }) => {
      throw new Error(`planning stack ${stack} failed:\n${err.stderr?.trim() || err.message}`);
    });
    return JSON.parse(fs.readFileSync(out, "utf8")) as NetworkingPlan;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const shortType = (type: string) => type.slice(type.lastIndexOf(":") + 1);
const show = (v: unknown) => (v === undefined ? "(absent)" : JSON.stringify(v));

/** The report as a user reads it: one line per resource in the order sent, then what differs and what Nova adds. */
export function formatReport(report: ReplayReport, neutron: string): string {
  const lines = [`stack ${report.stack}: ${report.steps.length} networking resources sent to ${neutron} as ${report.identity.role} of project ${report.identity.projectId}`, ""];
  const rows = report.steps.map((s, i) => {
    const o = s.outcome;
    const detail = o.kind === "refused" ? `${o.status} ${o.type}: ${o.message}` : o.kind === "skipped" ? `not sent: waits for ${o.waitsFor}` : "";
    return [String(i + 1), s.name, shortType(s.type), o.kind, detail];
  });
  const header = ["#", "RESOURCE", "TYPE", "RESULT", "NEUTRON"];
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c]!.length)));
  for (const row of [header, ...rows]) lines.push(row.map((cell, c) => (c === row.length - 1 ? cell : cell.padEnd(widths[c]!))).join("  ").trimEnd());
  const count = (kind: string) => report.steps.filter((s) => s.outcome.kind === kind).length;
  lines.push("", `accepted ${count("accepted")}, refused ${count("refused")}, not sent ${count("skipped")}`);
  lines.push(`read back: ${report.readBack} resources, ${report.mismatches.length} values changed or dropped by Neutron`);
  for (const m of report.mismatches) lines.push(`  ${m.resource} ${m.field}: planned ${show(m.planned)}, Neutron holds ${show(m.actual)}`);
  if (report.nova.length > 0) {
    lines.push(
      "",
      "Nova's part, not replayed: booting a server sets device_id (the server's id), device_owner (compute:<zone>) and",
      "binding:host_id (its compute host) on each of its ports; the mechanism driver then binds them (binding:vif_type), and they turn ACTIVE.",
    );
    const byServer = new Map<string, string[]>();
    for (const n of report.nova) byServer.set(n.server, [...(byServer.get(n.server) ?? []), n.port]);
    for (const [server, ports] of byServer) lines.push(`  ${server}: ${ports.join(", ")}`);
  }
  if (report.notReplayed.length > 0) {
    const counts = new Map<string, number>();
    for (const r of report.notReplayed) counts.set(shortType(r.type), (counts.get(shortType(r.type)) ?? 0) + 1);
    lines.push(`Not replayed (Nova's, out of scope): ${[...counts].map(([t, n]) => `${n} ${t}`).join(", ")}`);
  }
  lines.push("", replayPassed(report) ? "PASS: Neutron accepted every networking resource and holds what was planned" : "FAIL: see the refusals and changed values above");
  return lines.join("\n");
}

export function parseRole(text: string): Role {
  if (!(text in ROLES)) throw new Error(`--as "${text}": accepted: ${Object.keys(ROLES).join(", ")}`);
  return text as Role;
}

interface Options {
  stack: string;
  as: string;
  config: string[];
  neutronUrl?: string;
  json?: boolean;
  planJson?: string;
}

export async function verifyOpenstackCommand(): Promise<Command> {
  return new Command("verify-openstack")
    .description(
      "replay the networking resources of a stack's plan through a real Neutron API (Debian's neutron-server, started on this host) as a project member, then read them back",
    )
    .addOption(new Option("--stack <name>", "stack to plan (a committed Pulumi.<name>.yaml)").makeOptionMandatory())
    .option("--as <role>", `the role in the project: ${Object.keys(ROLES).join(" or ")}`, "member")
    .option("--config <key=value>", "override a config key, KEY=VALUE or KEY.PATH=VALUE as pulumi config set [--path] (repeatable)", (v: string, prev: string[]) => [...prev, v], [] as string[])
    .option("--neutron-url <url>", "a Neutron that takes the identity from X-Project-Id, X-User-Id and X-Roles, as the local one does (default: start the local one)")
    .option("--json", "print the report as JSON")
    .option("--plan-json <file>", "write the networking plan (resources, dependencies, references) as JSON and replay nothing")
    .action(async (opts: Options) => {
      const role = parseRole(opts.as);
      const planned = await planNetworking(opts.stack, opts.config);
      if (opts.planJson) {
        fs.writeFileSync(opts.planJson, `${JSON.stringify(planned)}\n`);
        return;
      }
      let url = opts.neutronUrl;
      let stop = async () => {};
      if (!url) {
        const unavailable = neutronUnavailable();
        if (unavailable) throw new Error(unavailable);
        const neutron = await startLocalNeutron();
        const interrupted = () => process.exit(130); // the server's exit hook ends it
        process.once("SIGINT", interrupted).once("SIGTERM", interrupted);
        url = neutron.url;
        stop = async () => {
          process.off("SIGINT", interrupted).off("SIGTERM", interrupted);
          await neutron.stop();
        };
      }
      try {
        const report = await replayPlan(planned, { url, as: role });
        console.log(opts.json ? JSON.stringify(report, null, 2) : formatReport(report, opts.neutronUrl ? url : `the local Neutron (${url})`));
        if (!replayPassed(report)) process.exitCode = 1;
      } finally {
        await stop();
      }
    });
}
