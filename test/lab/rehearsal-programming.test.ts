// The cloud path's programming profile, rehearsed: `testbed campaign --stack S --profiles programming`
// from the operator's namespace against a stack on namespace hosts (rehearsal/), so every part runs
// for real but the Kubernetes API and its agents' processes: SSH through the bastion, kubectl on the
// master, the programming probe built where the stack builds it and run on the client against the
// worker's NodePort, its listener in the backend pod's namespace, the worker's lab dataplane synced by
// partial syncs and restarted, and the control plane's histograms read from its endpoint on the
// worker. For a kube-proxy stack (a sync per family) and the Cilium stack (one event per Service).
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { rehearsalProblem } from "../../cli/rehearse.js";
import { clusterDataplane } from "../../infra/cluster/dataplanes/index.js";
import { labProfile } from "../../lab/profiles.js";
import { ResultStore } from "../../measure/store.js";
import type { ChangeMeasurement } from "../../measure/types.js";
import { RehearsalEnvironment } from "../../rehearsal/environment.js";
import { matchesLabelSelector } from "../../rehearsal/kubernetes/api.js";
import type { Dataplane } from "../../scenario/schema.js";

const problem = rehearsalProblem();
const dir = mkdtempSync(path.join(tmpdir(), "rehearsal-programming-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const count = (c: ChangeMeasurement, metric: string | undefined) => c.metrics?.find((m) => m.name === metric)?.count ?? 0;

describe.skipIf(problem !== undefined)("programming on a rehearsed stack", () => {
  it.each<Dataplane>(["iptables", "ebpf"])(
    "%s: each change made through kubectl is seen by the probe and counted in the control plane's metrics, full-sync restarts it, and the step's Services are back",
    async (dataplane) => {
      const lines: string[] = [];
      const env = await RehearsalEnvironment.create({ dataplane, profile: labProfile("smoke"), log: (l) => lines.push(l) });
      const db = path.join(dir, `${dataplane}.db`);
      let code: number;
      const agentBefore = env.api.pods().find((p) => p.nodeName.includes("worker") && matchesLabelSelector(p.labels, clusterDataplane(dataplane).controlPlane.podLabel))!;
      let agentAfter: typeof agentBefore | undefined;
      let scaled: string[];
      try {
        code = await env.campaign(db, ["--profiles", "programming", "--families", "ipv4", "--services", "1", "--runs", "1", "--retries", "0"]);
        agentAfter = env.api.pods().find((p) => p.owner === agentBefore.owner && p.nodeName === agentBefore.nodeName);
        scaled = Object.values(env.api.objects().objects).filter((o) => o.kind === "Service" && /^svc-/.test(o.metadata.name)).map((o) => o.metadata.name);
      } finally {
        await env.close();
      }
      expect(code, lines.join("\n")).toBe(0);
      const store = ResultStore.open(db);
      const [id] = store.campaignIds();
      const [run] = store.results(id!);
      store.close();
      expect(run).toMatchObject({ status: "ok", profile: "programming", services: 1 });
      const changes = run!.changes!;
      expect(changes.map((c) => c.change)).toEqual(["remove-one", "add-one", "remove-one", "add-100", "full-sync"]);
      for (const c of changes) {
        expect(c.programmedS, c.change).toBeGreaterThan(0);
        expect(c.probes!.sent, c.change).toBeGreaterThan(10);
        expect(c.probes!.flaps, c.change).toBe(0);
      }
      const { sync, programming } = clusterDataplane(dataplane).controlPlane.metrics;
      const byChange = (name: string) => changes.find((c) => c.change === name)!;
      if (sync) {
        // kube-proxy: a sync per family for every change; each new Service's endpoints per family.
        for (const c of changes) expect(count(c, sync), c.change).toBeGreaterThanOrEqual(2);
        expect(count(byChange("add-one"), programming)).toBe(2);
        expect(count(byChange("add-100"), programming)).toBe(200);
      } else {
        // The Cilium agent: one event per Service, added or deleted.
        expect(changes.filter((c) => c.change === "remove-one").map((c) => count(c, programming))).toEqual([1, 1]);
        expect(count(byChange("add-one"), programming)).toBe(1);
        expect(count(byChange("add-100"), programming)).toBe(100);
      }
      // The restarted control plane's first sync holds the Service created while it was away.
      expect(count(byChange("full-sync"), programming)).toBeGreaterThan(0);
      expect(agentAfter).toMatchObject({ ready: true });
      expect(agentAfter!.name).not.toBe(agentBefore.name);
      expect(scaled!).toEqual(["svc-00001"]);
    },
    900_000,
  );
});
