// The paths beyond the paper's on the rehearsed cloud path (rehearsal/): a stack serving
// nodeport-local, nodeport-remote and clusterip (testbed:workers 2) deployed on namespace hosts, then
// `testbed campaign --stack` measuring every path it serves, as it does on the cloud: worker 2 through
// its own SSH host alias, the clusterip path's client pod through `kubectl exec` on the master, each
// receiver's ITGRecv on worker 2 picked by its pod's host name. Then the report, and nothing left behind.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeCampaignReport } from "../../cli/report.js";
import { LAB_PROFILES } from "../../lab/profiles.js";
import { findRunPrefixes } from "../../lab/run-registry.js";
import { bypassedPoints, HOP_POINTS, NODE_TO_NODE_BOTH_WAYS, SOCKET_LB_SECTION, workerPlan, WORKER_SPAN } from "../../measure/hops.js";
import { ResultStore } from "../../measure/store.js";
import { pathOf, type RunResult } from "../../measure/types.js";
import { RehearsalEnvironment } from "../../rehearsal/environment.js";
import { CHECKOUT } from "../../rehearsal/hosts.js";
import { SERVICE_PATHS } from "../../scenario/paths.js";
import { BUSY_HOST } from "./busy-host.js";

const dir = mkdtempSync(path.join(tmpdir(), "rehearsal-paths-test-"));
const db = path.join(dir, "results.db");
const log: string[] = [];
let env: RehearsalEnvironment | undefined;
let prefix: string;
let exit: number;
let results: RunResult[];
/** What sshd on worker-2 logged: the campaign's logins there. */
let worker2Sshd = "";
let bastionSshd = "";
let worker2Management = "";
/** Where the node agents ran each Deployment's pod: owner -> node name. */
let placement: Record<string, string> = {};

beforeAll(async () => {
  env = await RehearsalEnvironment.create({
    dataplane: "iptables",
    profile: LAB_PROFILES.smoke,
    services: 1,
    sweepServices: [1],
    paths: ["nodeport-local", "nodeport-remote", "clusterip"],
    log: (line) => log.push(line),
  });
  prefix = env.topology.prefix;
  worker2Management = env.addresses.management["worker-2"]!;
  try {
    // IPv4 only: the setup cells' primary sizing (15 runs each) makes both families twice as long, and
    // IPv6 on these paths is measured by the lab's path suites through the same backends.
    exit = await env.campaign(db, ["--profiles", "latency,setup", "--families", "ipv4", "--runs", "1", "--retries", "3"]);
    worker2Sshd = env.hosts["worker-2"]!.sshdLog();
    placement = Object.fromEntries(env.api.status().pods.map((p) => [p.owner, p.nodeName]));
    bastionSshd = env.hosts.bastion!.sshdLog();
  } finally {
    await env.close();
  }
  const store = ResultStore.openReadOnly(db);
  try {
    const [id] = store.campaignIds();
    results = store.results(id!);
  } finally {
    store.close();
  }
}, 1_200_000);

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe("a rehearsed stack serving the three paths", () => {
  it("measures every path it serves, each run ok or failed only because the host was too busy for ITGSend", () => {
    const failed = results.filter((r) => r.status === "failed");
    for (const r of failed) expect(r.failure, r.runId).toMatch(BUSY_HOST);
    expect(exit, log.join("\n")).toBe(failed.length === 0 ? 0 : 1);
    const cells = [...new Set(results.map((r) => `${pathOf(r)} ${r.profile} ${r.family}`))].sort();
    expect(cells).toEqual(SERVICE_PATHS.flatMap((p) => ["latency", "setup"].map((profile) => `${p} ${profile} ipv4`)).sort());
    for (const p of SERVICE_PATHS) expect(results.some((r) => pathOf(r) === p && r.status === "ok"), p).toBe(true);
  });

  it("ran the remote paths' receivers on worker 2 and the client pod on worker 1, and took the receivers' logs from worker 2", () => {
    expect(placement).toMatchObject({ "ditg-receiver": "testbed-worker", "ditg-client": "testbed-worker", "ditg-receiver-remote": "testbed-worker-2", "ditg-receiver-clusterip": "testbed-worker-2" });
    // The campaign logged in to worker 2 (the stack's worker-2 management address) through the bastion's forwarding, and fetched files there (scp speaks SFTP).
    expect(worker2Sshd).toMatch(/Accepted publickey for root/);
    expect(worker2Sshd).toMatch(/subsystem 'sftp'/);
    expect(bastionSshd).toContain(worker2Management);
    // Each latency run's round trips are paired with its receiver's log: the log came back from the receiver's node, worker 2.
    const remote = results.filter((r) => pathOf(r) !== "nodeport-local" && r.profile === "latency" && r.status === "ok");
    expect(remote.map((r) => pathOf(r))).toEqual(expect.arrayContaining(["clusterip", "nodeport-remote"]));
    for (const r of remote) expect(r.delaySource, r.runId).toBe("paired");
  });

  it("times each path's sections on the workers that carry it, each on its own clock, and the crossing between them both ways", () => {
    for (const p of SERVICE_PATHS) {
      for (const profile of ["latency", "setup"] as const) {
        const ok = results.filter((r) => pathOf(r) === p && r.profile === profile && r.status === "ok");
        for (const r of ok) {
          expect(r.hops?.check, `${r.runId}: ${JSON.stringify(r.hops?.check)}`).toMatchObject({ scope: "worker", incomplete: 0, droppedStamps: 0, unreadStamps: 0, addsUp: true });
          const names = r.hops!.sections.map((s) => `${s.direction} ${s.section}`);
          const plan = workerPlan(p, profile === "latency" ? "ditg" : "handshake", r.hops!.check.bypassed ? bypassedPoints(HOP_POINTS.map((n) => (r.hops!.check.bypassed!.includes(n) ? 0 : 1)), p) : []);
          expect(names, r.runId).toEqual([
            ...plan.runs.flatMap((run) => run.sections.map((x) => `${x.direction} ${x.section}`)),
            ...(p === "nodeport-local" ? [] : [`return ${NODE_TO_NODE_BOTH_WAYS}`]),
            `forward ${WORKER_SPAN}`,
            `return ${WORKER_SPAN}`,
          ]);
          if (p !== "nodeport-local") expect(r.hops!.sections.find((s) => s.section === NODE_TO_NODE_BOTH_WAYS)!.meanS, r.runId).toBeGreaterThan(0);
        }
      }
    }
    // Each remote path's worker 2 and clusterip's client pod were probed in at least one run.
    expect(results.some((r) => pathOf(r) === "clusterip" && r.hops?.sections.some((s) => s.section === "client-pod-stack"))).toBe(true);
    // A handshake from the client pod is timed from its connect call, around the socket hooks of the client node.
    expect(results.some((r) => pathOf(r) === "clusterip" && r.hops?.sections.some((s) => s.section === SOCKET_LB_SECTION && s.packets > 0))).toBe(true);
    expect(results.some((r) => pathOf(r) === "nodeport-remote" && r.hops?.sections.some((s) => s.section === "endpoint-node"))).toBe(true);
  });

  it("reports every path in cells.csv", async () => {
    const written = await writeCampaignReport({ db, out: path.join(dir, "report") });
    const [head, ...rows] = readFileSync(path.join(path.dirname(written.markdown), "cells.csv"), "utf8").trim().split("\n");
    const column = head!.split(",").indexOf("path");
    expect(column).toBeGreaterThanOrEqual(0);
    expect([...new Set(rows.map((r) => r.split(",")[column]))].sort()).toEqual([...SERVICE_PATHS].sort());
  });

  it("leaves nothing behind: `testbed rehearse --cleanup` finds no run of it", () => {
    expect(findRunPrefixes()).not.toContain(prefix);
    const r = spawnSync(process.execPath, ["--import", "tsx/esm", path.join(CHECKOUT, "cli/main.ts"), "rehearse", "--cleanup"], { cwd: CHECKOUT, encoding: "utf8" });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).not.toContain(prefix);
  });
});
