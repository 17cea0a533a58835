// The local Neutron itself: requests run as the identity their headers name, and stop() leaves no
// process behind.
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as path from "node:path";
import { describe, expect, inject, it } from "vitest";
import { NeutronApi, NeutronRefusal, freshIdentity } from "../../infra/neutron/api.js";
import { descendantPids, processesNaming, startLocalNeutron } from "../../infra/neutron/local-server.js";

const url = inject("neutronUrl");

function isRunning(pid: number): boolean {
  try {
    return !/^\S+ \(.*\) Z/.test(fs.readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return false;
  }
}

const refusal = (p: Promise<unknown>) => p.then(() => undefined, (e: unknown) => (e instanceof NeutronRefusal ? { status: e.status, type: e.type } : e));

describe("the shared local Neutron", () => {
  it("runs as forked workers under one server process", () => {
    expect(descendantPids(inject("neutronPid")).length).toBeGreaterThanOrEqual(2);
  });

  it("takes the request's role from its headers, under Neutron's default policies", async () => {
    const body = { policy: { name: "roles-check" } };
    const member = new NeutronApi(url, freshIdentity("member"));
    const admin = new NeutronApi(url, freshIdentity("admin"));
    expect(await refusal(member.post("qos/policies", body))).toEqual({ status: 403, type: "PolicyNotAuthorized" });
    const created = (await admin.post("qos/policies", body)).policy as { project_id: string };
    // ... and its project from them too.
    expect(created.project_id).toBe(admin.identity.projectId);
    const network = (await member.post("networks", { network: { name: "mine" } })).network as { project_id: string };
    expect(network.project_id).toBe(member.identity.projectId);
    // A project cannot see another one's network.
    expect(((await new NeutronApi(url, freshIdentity("member")).get("networks?name=mine")).networks as unknown[]).length).toBe(0);
  });
});

describe("startLocalNeutron and stop", () => {
  it("stops every worker and the server, even right after a worker was respawned, and removes its directory", async () => {
    const neutron = await startLocalNeutron();
    const marker = path.join(neutron.dir, "etc/neutron.conf");
    let seen: number[] = [];
    try {
      const first = descendantPids(neutron.pid);
      expect(first.length).toBeGreaterThanOrEqual(2);
      // The server replaces a worker that dies: end one, and wait for its replacement (a Python process that imports
      // Neutron: on a loaded host that takes long, so no deadline here but the test's).
      process.kill(first[0]!, "SIGTERM");
      while (!descendantPids(neutron.pid).some((p) => !first.includes(p))) await new Promise((r) => setTimeout(r, 100));
      seen = [...new Set([...first, ...descendantPids(neutron.pid), neutron.pid])];
      expect(seen.length).toBeGreaterThan(first.length + 1);
    } finally {
      await neutron.stop();
    }
    expect(seen.filter(isRunning)).toEqual([]);
    expect(processesNaming(marker)).toEqual([]);
    expect(fs.existsSync(neutron.dir)).toBe(false);
    const port = Number(new URL(neutron.url).port);
    const connected = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, "127.0.0.1", () => (socket.destroy(), resolve(true)));
      socket.on("error", () => resolve(false));
    });
    expect(connected).toBe(false);
  });
});

describe("a server whose starter dies", () => {
  it("dies with it, workers included, even when the starter is killed outright", async () => {
    const holder = spawn(process.execPath, ["--import", "tsx/esm", "test/neutron/server-holder.ts"], { stdio: ["ignore", "pipe", "inherit"] });
    const started = await new Promise<{ pid: number; dir: string }>((resolve, reject) => {
      let out = "";
      holder.stdout!.on("data", (d: Buffer) => {
        out += d.toString();
        if (out.includes("\n")) resolve(JSON.parse(out.split("\n")[0]!) as { pid: number; dir: string });
      });
      holder.once("exit", (code) => reject(new Error(`the holder exited with ${code} before the server was up`)));
    });
    const marker = path.join(started.dir, "etc/neutron.conf");
    const mine = processesNaming(marker);
    expect(mine).toContain(started.pid);
    expect(mine.length).toBeGreaterThanOrEqual(3);
    holder.kill("SIGKILL");
    // The server dies at once (its parent-death signal); its workers when they see it gone, later on a loaded host:
    // no deadline here but the test's.
    while (mine.some(isRunning)) await new Promise((r) => setTimeout(r, 200));
    try {
      expect(mine.filter(isRunning)).toEqual([]);
    } finally {
      for (const p of processesNaming(marker)) process.kill(p, "SIGKILL");
      fs.rmSync(started.dir, { recursive: true, force: true });
    }
  });
});
