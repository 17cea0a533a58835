// The lab experiment end to end on this kernel: the smoke profile's campaign over the lab backend
// (every dataplane, both families, throughput, latency and setup through the NodePort), what each
// step holds in the kernel while it runs (and what the others parked), the report against the
// baseline, and a host left as it was found.
// The `testbed lab` command itself: refusal without root or its capabilities, --cleanup after a crash.
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeCampaignReport } from "../../cli/report.js";
import { LabBackend, NODE_BASE_RULE, type PreparedStep } from "../../backends/lab.js";
import { runJudge } from "../../measure/campaign.js";
import { ebpfLoadBalancer } from "../../lab/dataplanes/ebpf/module.js";
import type { InstalledCounts } from "../../lab/dataplanes/index.js";
import { kubeProxyJumps, kubeProxyLeftovers } from "../../lab/dataplanes/iptables/kernel.js";
import { kubeProxyNftablesStates, type NftablesTableState } from "../../lab/dataplanes/nftables/kernel.js";
import { EBPF_DATAPLANE_PREF } from "../../lab/dataplanes/ebpf/kernel.js";
import { exec, listLinks, listNetns } from "../../lab/netns.js";
import { labDefinition, LAB_PROFILES } from "../../lab/profiles.js";
import { estimateWallSeconds } from "../../lab/wall-estimate.js";
import { RUN_MARKER, RUN_STATE_DIR } from "../../lab/run-registry.js";
import { findRunObjects, labHostProblem, shapingCommands } from "../../lab/topology.js";
import { WorkerLogDecoder } from "../../measure/campaign-decode.js";
import { campaignIdFor, planCampaign, sameStep, type CampaignDefinition } from "../../measure/campaign-plan.js";
import { runCampaign, type CampaignEvent } from "../../measure/campaign.js";
import { flowLogs, senderCommand } from "../../measure/ditg-commands.js";
import { decodeLogFile } from "../../measure/ditg-log.js";
import { awaitSender, settledLog } from "../../backends/ditg-sender.js";
import { ResultStore } from "../../measure/store.js";
import type { RunResult } from "../../measure/types.js";
import type { Family } from "../../scenario/cidr.js";
import { bpfObjectGone } from "./bpf-objects.js";
import { BUSY_HOST } from "./busy-host.js";
import { asNobodyIn, asRootWithout, canDropPrivileges } from "./privilege-drop.js";

const hostProblem = labHostProblem();
const FAMILIES: readonly Family[] = ["ipv4", "ipv6"];
const ROOT = fileURLToPath(new URL("../../", import.meta.url));

/** What the hook saw in the kernel right after a step was prepared, read independently of the dataplane modules. */
interface StepSeen {
  readonly dataplane: string;
  readonly services: number;
  readonly sync: PreparedStep["sync"];
  readonly nodePortServices: number;
  readonly clusterIpServices: number;
  /** What the dataplane counts of itself, from the kernel. */
  readonly counts: InstalledCounts;
  /** KUBE-* chains in the legacy nat table, parked or not, and the jumps into them. */
  readonly kubeChains: number;
  readonly kubeJumps: number;
  readonly nftables: Record<Family, NftablesTableState>;
  readonly tcFilters: string;
  readonly bpf?: { programs: readonly number[]; maps: readonly number[] };
  readonly nodeBaseRule: boolean;
}

async function inspect(step: PreparedStep): Promise<StepSeen> {
  const worker = step.topology.namespace("worker");
  const leftovers = (await Promise.all(FAMILIES.map((f) => kubeProxyLeftovers(worker, f)))).flat();
  const jumps = (await Promise.all(FAMILIES.map((f) => kubeProxyJumps(worker, f)))).flat();
  // The eBPF dataplane's filters (the hop probes' share the uplink in every mode).
  const tcFilters = ["ingress", "egress"]
    .map((d) => step.topology.run("worker", ["tc", "filter", "show", "dev", step.topology.plan.worker.uplink, d, "pref", String(EBPF_DATAPLANE_PREF)]).trim())
    .join("");
  const base = step.topology.exec("worker", ["iptables-legacy", "-w", "60", ...NODE_BASE_RULE.map((a) => (a === "-A" ? "-C" : a))]).status === 0;
  const loadBalancer = ebpfLoadBalancer(step.module);
  return {
    dataplane: step.dataplane,
    services: step.services,
    sync: step.sync,
    nodePortServices: step.serviceSet.counts.nodePort,
    clusterIpServices: step.serviceSet.counts.clusterIp,
    counts: await step.module.counts(),
    kubeChains: leftovers.filter((t) => t.table === "nat").reduce((n, t) => n + t.chains.length, 0),
    kubeJumps: jumps.reduce((n, t) => n + t.jumps.length, 0),
    nftables: await kubeProxyNftablesStates(worker),
    tcFilters,
    ...(loadBalancer ? { bpf: loadBalancer.objectIds() } : {}),
    nodeBaseRule: base,
  };
}

/**
 * Calibration: what this machine, as loaded now, carries over the lab's capped links with the
 * throughput profile's flow, sent straight to the pod's address (routed, no Service in the way).
 */
async function barePathMbps(backend: LabBackend, def: CampaignDefinition, family: Family): Promise<number> {
  const { receiver } = backend.scenario;
  const cmd = senderCommand({
    traffic: def.traffic.throughput,
    durationS: def.flowSeconds,
    target: { address: backend.topology.addresses.pod[family], signalingPort: receiver.signalingPort, dataPort: receiver.dataPort },
    logs: flowLogs(`bare-path-${family}`, { senderDir: backend.logDir, receiverDir: backend.logDir }),
    linkMbps: def.linkMbps,
  });
  const child = backend.topology.spawn("client", cmd.argv, { cwd: backend.logDir, stdio: ["ignore", "pipe", "pipe"] });
  const { outcome } = await awaitSender(child, cmd, new Date());
  await settledLog(outcome.logPath);
  const decoded = await decodeLogFile(outcome.logPath);
  expect(decoded.total.packets, `bare path ${family}: ${outcome.senderOutput}`).toBeGreaterThan(0);
  return decoded.total.bitrateKbps / 1000;
}

const crossedThePipeline = (r: RunResult) => r.status === "ok" || BUSY_HOST.test(r.failure ?? "");

describe.skipIf(hostProblem !== undefined)(`the lab's smoke campaign on this kernel${hostProblem ? ` (skipped: ${hostProblem})` : ""}`, () => {
  const def = labDefinition(LAB_PROFILES.smoke);
  const campaignId = campaignIdFor(def);
  const dir = mkdtempSync(join(tmpdir(), "lab-campaign-"));
  const db = join(dir, "results.db");
  const seen: StepSeen[] = [];
  const events: CampaignEvent[] = [];
  const barePath: Partial<Record<Family, number>> = {};
  let prefix = "";
  let summary: Awaited<ReturnType<typeof runCampaign>>;
  let report = "";
  let hopObjects: { programs: number[]; maps: number[] } = { programs: [], maps: [] };

  beforeAll(async () => {
    const store = ResultStore.open(db);
    const decoder = new WorkerLogDecoder();
    try {
      store.ensureCampaign(campaignId, def, planCampaign(campaignId, def));
      const backend = await LabBackend.start({ linkMbps: def.linkMbps, onPrepared: async (step) => void seen.push(await inspect(step)) });
      prefix = backend.topology.prefix;
      hopObjects = backend.hops!.objectIds();
      for (const family of FAMILIES) barePath[family] = await barePathMbps(backend, def, family);
      summary = await runCampaign({ store, campaignId, backend, decoder, judge: runJudge, retries: 2, onEvent: (e) => events.push(e) });
    } finally {
      await decoder.close();
      store.close();
    }
    report = (await writeCampaignReport({ db, out: join(dir, "report") })).markdown;
    // Headroom for a loaded host and the retries: five times the plan's own estimate of an idle run.
  }, 5 * estimateWallSeconds(def) * 1000);
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("stores in every cell a run that crossed the pipeline: ok, or short only because a busy host's ITGSend fell behind", () => {
    expect(def.dataplanes).toEqual(["iptables", "nftables", "ebpf"]);
    const planned = planCampaign(campaignId, def).length;
    expect(planned).toBe(def.dataplanes.length * def.families.length * def.profiles.length * def.services.length * def.runs);
    expect(summary).toMatchObject({ total: planned, done: planned, stopped: false });
    const store = ResultStore.open(db);
    try {
      const results = store.results(campaignId);
      const cellOf = (r: RunResult) => `${r.dataplane} ${r.family} ${r.profile} ${r.services}`;
      for (const dataplane of def.dataplanes) for (const family of def.families) for (const profile of def.profiles) for (const services of def.services) {
        const cell = `${dataplane} ${family} ${profile} ${services}`;
        const runs = results.filter((r) => cellOf(r) === cell);
        expect(runs.filter(crossedThePipeline).length, `${cell}: ${runs.map((r) => r.failure ?? r.status).join("; ")}`).toBeGreaterThanOrEqual(1);
      }
      // Never above the cap: its rate plus what the shaper's bucket and the first message (sent before the first
      // record's receive time) add over the run. Most of what the bare path carried on this machine in this test.
      const [shaper] = shapingCommands("x", "tbf", def.linkMbps);
      const burstBytes = Number(shaper![shaper!.indexOf("burst") + 1]);
      for (const r of results.filter(crossedThePipeline)) {
        const s = r.summary!;
        if (r.profile === "throughput") {
          const mbps = s.bitrateKbps / 1000;
          const ceiling = def.linkMbps + ((burstBytes + def.traffic.throughput.payloadBytes) * 8) / (s.durationS * 1e6);
          expect(mbps, `${r.runId}: above the ${def.linkMbps} Mbit/s cap`).toBeLessThanOrEqual(ceiling);
          expect(mbps, `${r.runId}: the bare path carried ${barePath[r.family]} Mbit/s`).toBeGreaterThanOrEqual(0.75 * barePath[r.family]!);
        } else {
          // Round trips and handshakes through namespaces on one host: well under 50 ms.
          expect(s.packets).toBeGreaterThan(0);
          expect(s.delayMinS).toBeGreaterThan(0);
          expect(s.p50S).toBeLessThan(0.05);
        }
      }
    } finally {
      store.close();
    }
  });

  it("fails no attempt for a reason of the pipeline: a shortfall is the busy host's, named as such", () => {
    const failed = events.filter((e): e is Extract<CampaignEvent, { kind: "attempt-failed" }> => e.kind === "attempt-failed");
    expect(failed.filter((e) => !BUSY_HOST.test(e.reason)).map((e) => `${e.run.runId}: ${e.reason}`)).toEqual([]);
  });

  it("interleaves the dataplanes within each Service count, moving each to a step once (installing its first) and parking it in between", () => {
    const prepares = events.filter((e): e is Extract<CampaignEvent, { kind: "prepare" }> => e.kind === "prepare").map((e) => `${e.step.dataplane} ${e.step.services}`);
    // One prepare per change of (dataplane, Service count) in the plan: a retry stays on its step.
    const plan = planCampaign(campaignId, def);
    expect(prepares).toHaveLength(plan.filter((run, i) => i === 0 || !sameStep(plan[i - 1]!.key, run.key)).length);
    for (const n of def.services) expect(new Set(prepares.filter((p) => p.endsWith(` ${n}`)))).toEqual(new Set(def.dataplanes.map((d) => `${d} ${n}`)));
    // A dataplane installs its first step, moves to each later one by a partial sync the first time it
    // is prepared for it, and resumes it afterwards.
    for (const d of def.dataplanes) {
      const ofDataplane = seen.filter((s) => s.dataplane === d);
      expect(ofDataplane[0]!.sync, d).toBe("full");
      for (const n of def.services) {
        expect(ofDataplane.filter((s) => s.services === n).map((s) => s.sync !== "none"), `${d} ${n}`).toEqual(ofDataplane.filter((s) => s.services === n).map((_, i) => i === 0));
      }
      expect(ofDataplane.filter((s) => s.sync === "partial"), d).toHaveLength(def.services.length - 1);
    }
    expect(seen.filter((s) => s.sync === "none").length).toBeGreaterThan(0);
  });

  it("at 2000 Services holds what each dataplane installs, on the packet path alone, the others parked or gone", () => {
    const big = seen.filter((s) => s.services >= 2000);
    expect(new Set(big.map((s) => s.dataplane))).toEqual(new Set(def.dataplanes));
    // cilium-and-kube-proxy notes §2.7: 11 nat rules per NodePort Service (ETP=Local, one local endpoint,
    // local-traffic detector), 5 per ClusterIP Service, the receiver's 6 NodePorts (3 for each of its
    // pod's two ITGRecv), 5 fixed rules.
    const kubeProxyNat = (s: StepSeen) => 11 * s.nodePortServices + 5 * s.clusterIpServices + 6 * 11 + 5;
    for (const s of big) {
      expect(s.nodeBaseRule).toBe(true);
      const nftablesOn = FAMILIES.filter((f) => s.nftables[f] === "active");
      if (s.dataplane === "iptables") {
        expect(s.counts).toMatchObject({ "ipv4 nat rules": kubeProxyNat(s), "ipv6 nat rules": kubeProxyNat(s) });
        expect(s.kubeJumps).toBeGreaterThan(0);
        expect(nftablesOn).toEqual([]);
        expect(s.tcFilters).toBe("");
      } else if (s.dataplane === "nftables") {
        // One service-ips element per ClusterIP port (the receiver's 6 and one per scaled Service), one
        // service-nodeports element per NodePort.
        for (const f of FAMILIES) {
          expect(s.counts[`${f} service-ips elements`], f).toBe(6 + s.nodePortServices + s.clusterIpServices);
          expect(s.counts[`${f} service-nodeports elements`], f).toBe(6 + s.nodePortServices);
        }
        expect(nftablesOn).toEqual(FAMILIES);
        expect(s.kubeJumps).toBe(0);
        expect(s.tcFilters).toBe("");
      } else {
        // Slot 0 plus one backend slot per frontend: ClusterIP and NodePort frontends of the receiver's
        // 6 ports and of each NodePort Service, the ClusterIP frontend of each ClusterIP Service.
        const entries = 2 * (6 * 2 + 2 * s.nodePortServices + s.clusterIpServices);
        expect(s.counts).toEqual({ "ipv4 service map entries": entries, "ipv6 service map entries": entries });
        expect(s.kubeJumps).toBe(0);
        expect(nftablesOn).toEqual([]);
        expect(s.tcFilters).toMatch(/lb_nodeport.*lb_revnat|lb_revnat.*lb_nodeport/s);
      }
      // What a dataplane parked stays in the kernel off the packet path: KUBE-* chains without jumps, dormant tables.
      if (s.dataplane !== "iptables" && s.kubeChains > 0) expect(s.kubeJumps).toBe(0);
      if (s.dataplane !== "nftables") for (const f of FAMILIES) expect(["absent", "dormant"]).toContain(s.nftables[f]);
    }
    expect(big.some((s) => s.dataplane !== "iptables" && s.kubeChains > 0), "iptables parked at some step").toBe(true);
    expect(big.some((s) => s.dataplane !== "nftables" && s.nftables.ipv4 === "dormant"), "nftables parked at some step").toBe(true);
  });

  it("writes the report with the setup profile, every dataplane against the baseline", () => {
    expect(report).toBe(join(dir, "report", "report.md"));
    const md = readFileSync(report, "utf8");
    // A run that failed its record-count check on a loaded host even after retries is reported, not hidden:
    // the report analyses exactly the store's ok runs.
    const planned = planCampaign(campaignId, def).length;
    const store = ResultStore.open(db);
    const ok = store.results(campaignId).filter((r) => r.status === "ok").length;
    store.close();
    expect(md).toContain(`Campaign \`${campaignId}\` (backend lab). ${ok} of ${planned} runs analysed.`);
    expect(md).toMatch(/\| setup \| ipv4 \| 2000 \| [12]\b.*\| [12]\b.*\| [12]\b.*\|/);
    // The Summary's row of each dataplane against the baseline (metric, statistic, family, dataplane against baseline).
    for (const dataplane of ["nftables", "ebpf"]) expect(md).toContain(`| setup | mean | ipv4 | ${dataplane} / iptables | `);
    const cells = readFileSync(join(dir, "report", "cells.csv"), "utf8");
    for (const dataplane of def.dataplanes) {
      expect(cells).toMatch(new RegExp(`^setup,ipv6,2000,${dataplane},packetDelayMs,ms,packet,[12],`, "m"));
    }
  });

  it("measures latency exactly: paired round trips, the meter's readings and the one-way delays, all in the report", () => {
    const store = ResultStore.open(db);
    let results: RunResult[];
    try {
      results = store.results(campaignId);
    } finally {
      store.close();
    }
    // Every latency run that crossed the pipeline kept its exact round trips: ok, or short only because a busy
    // host's ITGSend fell behind (the packets it did send were measured all the same).
    const latency = results.filter((r) => r.profile === "latency" && crossedThePipeline(r));
    expect(latency.length).toBeGreaterThan(0);
    for (const r of latency) {
      expect([r.delaySource, r.excludedRecords], r.runId).toEqual(["paired", 0]);
      expect(Object.keys(r.delayViews ?? {}).sort(), r.runId).toEqual(["itgdec", "oneWay", "sender"]);
      // One clock: the way out is part of the round trip.
      expect(r.delayViews!.oneWay!.summary.delayMeanS).toBeLessThan(r.summary!.delayMeanS);
      expect(r.delayViews!.oneWay!.summary.delayMinS).toBeGreaterThan(0);
    }
    // The report analyses the ok runs: its latency sections hold a row for every cell with ok runs, with their
    // count (on a loaded host a cell may have none; what the store holds decides, not a number).
    const md = readFileSync(report, "utf8");
    const ok = latency.filter((r) => r.status === "ok");
    expect(md.includes("## Measurement validity: D-ITG's round-trip meter against exact round trips"), `${ok.length} ok latency runs`).toBe(ok.length > 0);
    expect(md.includes("## One-way delays, sender -> receiver (one shared clock)")).toBe(ok.length > 0);
    if (ok.length > 0) expect(md).toContain(`- **Delays:** latency: ${ok.length} exact round trips from the paired sender and receiver logs`);
    for (const family of def.families) {
      const section = /### latency, \S+\n[\s\S]*?(?=\n#)/.exec(md.slice(md.indexOf(`### latency, ${family}\n`)))?.[0] ?? "";
      for (const dataplane of def.dataplanes) for (const services of def.services) {
        const runs = ok.filter((r) => r.family === family && r.dataplane === dataplane && r.services === services).length;
        const row = new RegExp(`\\n\\| ${services} \\| ${dataplane} \\| (\\d+) \\| \\d+ of \\d+ \\(\\d+\\) \\| `).exec(section);
        expect(row ? Number(row[1]) : 0, `latency ${family} ${services} ${dataplane}`).toBe(runs);
      }
    }
  });

  it("cuts every latency run into sections that add up to its exact delays, stamps every setup run's first packets, and writes hops.csv", () => {
    const store = ResultStore.open(db);
    try {
      const ok = store.results(campaignId).filter((r) => r.status === "ok");
      for (const r of ok) {
        if (r.profile === "throughput") {
          expect(r.hops, r.runId).toBeUndefined();
          continue;
        }
        const check = r.hops!.check;
        expect(check.keying, r.runId).toBe(r.profile === "setup" ? "handshake" : "ditg");
        expect(check, r.runId).toMatchObject({ decomposed: check.packets, incomplete: 0, outOfOrder: 0, droppedStamps: 0, unreadStamps: 0, addsUp: true });
        if (r.profile === "latency") {
          // 1 in sampleEvery of the flow's round trips (by a hash of the key): about packets / sampleEvery.
          expect(check.sampleEvery, r.runId).toBeGreaterThan(1);
          expect(check.packets, r.runId).toBeGreaterThan(r.summary!.packets / (2 * check.sampleEvery));
          expect(check.packets, r.runId).toBeLessThan((2 * r.summary!.packets) / check.sampleEvery + 10);
        }
      }
    } finally {
      store.close();
    }
    const csv = readFileSync(join(dir, "report", "hops.csv"), "utf8").trim().split("\n");
    expect(csv[0]).toBe("dataplane,family,services,direction,section,statistic,valueS");
    const okRuns = ResultStore.openReadOnly(db);
    const measured = (key: { dataplane: string; family: string; services: number }, profile: string) =>
      okRuns.results(campaignId).some((r) => r.status === "ok" && r.profile === profile && r.dataplane === key.dataplane && r.family === key.family && r.services === key.services);
    for (const dataplane of def.dataplanes) for (const family of def.families) for (const services of def.services) {
      const rows = csv.filter((l) => l.startsWith(`${dataplane},${family},${services},`));
      // 14 sections and 2 end-to-end from the cell's latency runs, the first packets from its setup runs, 6 statistics
      // each; a cell whose latency runs all failed for a busy host (the first test) has the first packets only.
      const cell = { dataplane, family, services };
      const sections = (measured(cell, "latency") ? 16 : 0) + (measured(cell, "setup") ? 1 : 0);
      expect(sections, `${dataplane} ${family} ${services}: no run of the cell measured`).toBeGreaterThan(0);
      expect(rows, `${dataplane} ${family} ${services}`).toHaveLength(sections * 6);
      expect(rows.every((l) => Number(l.split(",")[6]) > 0), `${dataplane} ${family} ${services}`).toBe(true);
    }
    okRuns.close();
    const md = readFileSync(report, "utf8");
    expect(md).toMatch(/## Where the delay comes from[\s\S]*- \*\*Check:\*\* (\d+) of \1 latency runs add up/);
  });

  it("leaves no namespace, veth, qdisc, mount, pinned map or program of the run behind", async () => {
    expect(prefix).toMatch(/^dptb[a-z0-9]{4}$/);
    expect(listNetns().filter((n) => n.startsWith(prefix))).toEqual([]);
    expect(listLinks().filter((n) => n.startsWith(prefix))).toEqual([]);
    expect(exec(["tc", "qdisc", "show"]).stdout).not.toContain(prefix);
    expect(findRunObjects(prefix)).toEqual({ namespaces: [], links: [], mounts: [], dirs: [] });
    expect(hopObjects.programs).toHaveLength(12);
    for (const id of hopObjects.programs) expect(await bpfObjectGone("prog", id), `hop program ${id}`).toBe(true);
    for (const id of hopObjects.maps) expect(await bpfObjectGone("map", id), `hop map ${id}`).toBe(true);
    const ebpfSteps = seen.filter((s) => s.bpf);
    expect(ebpfSteps.length).toBeGreaterThan(0);
    for (const s of ebpfSteps) {
      for (const id of s.bpf!.programs) expect(await bpfObjectGone("prog", id), `program ${id}`).toBe(true);
      for (const id of s.bpf!.maps) expect(await bpfObjectGone("map", id), `map ${id}`).toBe(true);
    }
  });
});

describe("the lab command", () => {
  const testbed = (args: string[], prefix: readonly string[] = []) =>
    spawnSync(
      prefix[0] ?? process.execPath,
      [...prefix.slice(1), ...(prefix.length > 0 ? [process.execPath] : []), "--import", "tsx/esm", "cli/main.ts", "lab", ...args],
      { cwd: ROOT, encoding: "utf8", env: { ...process.env, HOME: tmpdir() }, timeout: 60_000 },
    );
  /** What a lab run leaves on the host before it measures anything: namespaces, its run directory, the results folder. */
  const hostState = (out: string) => ({
    namespaces: listNetns().filter((n) => n.startsWith(RUN_MARKER)),
    runDirs: existsSync(RUN_STATE_DIR) ? readdirSync(RUN_STATE_DIR).sort() : [],
    out: existsSync(out),
  });
  const refused = (prefix: readonly string[], reason: string) => {
    const out = join(tmpdir(), `lab-refused-${process.pid}`);
    const before = hostState(out);
    const r = testbed(["--profile", "smoke", "--out", out], prefix);
    expect(r.stderr).toContain(`testbed: lab: ${reason}; nothing was changed`);
    expect(r.status).toBe(1);
    expect(before.out).toBe(false);
    expect(hostState(out)).toEqual(before);
  };

  it.skipIf(!canDropPrivileges)("refuses to start without root, saying why, and changes nothing", () => {
    asNobodyIn(ROOT, (prefix) => refused(prefix, "the local lab needs root (network namespaces, tc, bpf), and this process runs as uid 65534"));
  });

  it.skipIf(!canDropPrivileges)("refuses root without the capabilities it needs, naming them, and changes nothing", () => {
    refused(
      asRootWithout("all"),
      "the local lab needs root with CAP_NET_ADMIN, CAP_NET_RAW and CAP_SYS_ADMIN, and this process lacks CAP_NET_ADMIN (links, routes, tc, iptables rules, conntrack), CAP_NET_RAW (iptables-legacy), CAP_SYS_ADMIN (network namespaces, mounts, bpf)",
    );
  });

  it("names a bad flag before anything else", () => {
    const r = testbed(["--profile", "smoke", "--runs", "many"]);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('--runs: "many" is not accepted; accepted: a whole number from 1 to 100000');
  });

  it.skipIf(hostProblem !== undefined)("--cleanup removes what a crashed run left and spares nothing else", async () => {
    // A lab run that is killed before it can tear down.
    const child = spawn(process.execPath, ["--import", "tsx/esm", "test/lab/topology-child.ts", "--ebpf"], { cwd: ROOT, stdio: ["ignore", "pipe", "inherit"] });
    const line = await new Promise<string>((resolve) => child.stdout!.once("data", (d: Buffer) => resolve(d.toString())));
    const { prefix } = JSON.parse(line) as { prefix: string };
    child.kill("SIGKILL");
    await new Promise((r) => child.once("exit", r));
    expect(findRunObjects(prefix).namespaces).toHaveLength(4);
    const r = testbed(["--cleanup"]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`removed lab run ${prefix}: 4 namespaces, 0 links, 1 mounts, \\d+ directories`));
    expect(findRunObjects(prefix)).toEqual({ namespaces: [], links: [], mounts: [], dirs: [] });
  });
});
