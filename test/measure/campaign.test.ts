import { campaignTraffic } from "../../measure/connection-setup.js";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { runCampaign, type CampaignEvent, type FlowJudge, type LogDecoder } from "../../measure/campaign.js";
import type { TotalReport } from "../../measure/ditg-log.js";
import type { DecodedFlow, FlowLogFiles } from "../../measure/ditg-pairing.js";
import { campaignIdFor, planCampaign, type CampaignDefinition } from "../../measure/campaign-plan.js";
import { ResultStore } from "../../measure/store.js";
import { ReceiverSessionError, type Backend, type FlowOutcome, type FlowSummary, type RunKey, type RunProfile, type StepReadiness } from "../../measure/types.js";
import { scenarioSchema } from "../../scenario/schema.js";

const def: CampaignDefinition = {
  backend: "fake",
  dataplanes: ["iptables", "ebpf"],
  families: ["ipv4"],
  profiles: ["throughput", "latency"],
  services: [1, 100],
  runs: 2,
  flowSeconds: 1,
  linkMbps: 0,
  seed: 1,
  order: { randomize: false, interleave: 0 },
  traffic: campaignTraffic(scenarioSchema.shape.traffic.parse(undefined)),
};

const label = (k: RunKey) => `${k.dataplane}/${k.services}/${k.repetition}/${k.family}/${k.profile}`;

function summary(packets: number): FlowSummary {
  return {
    packets, bytes: packets * 512, durationS: 1, delayMinS: 0.001, delayMaxS: 0.002, delayMeanS: 0.0015, delayStdS: 0.0001,
    jitterS: 0.0001, bitrateKbps: packets * 4.096, packetRate: packets, dropped: 0, p50S: 0.0015, p90S: 0.0018, p99S: 0.0019, p999S: 0.002,
  };
}

/** A scriptable backend: records every call in order; flows write a small file as their "log". */
class FakeBackend implements Backend {
  readonly name = "fake";
  readonly calls: string[] = [];
  flowFailures = new Map<string, number>();
  /** Runs whose next flow's receiver session fails: "bind" (ITGSend exits 0 and says so, D-ITG B3) or "hang" (the sender is stopped by its bound). */
  sessionFailures = new Map<string, "bind" | "hang">();
  aliveAnswers: boolean[] = [];
  prepareError: Error | undefined;
  flowDelayMs = 2;
  /** Profiles whose flows are round trips: they hand back the receiver's log too. */
  roundTrips = new Set<string>();
  sharedClock: boolean | undefined;
  constructor(private readonly dir: string) {}

  readonly profiles: readonly RunProfile[] = ["throughput", "latency"];
  /** What prepare() reports; undefined: nothing to record. */
  readiness: StepReadiness | undefined;
  async prepare(step: { dataplane: string; services: number }) {
    this.calls.push(`prepare ${step.dataplane}/${step.services}`);
    if (this.prepareError && step.services === 100) throw this.prepareError;
    return this.readiness && { ...this.readiness, programmedServices: { ipv4: step.services } };
  }
  async runFlow(key: RunKey, flow: { logName: string; durationS: number }): Promise<FlowOutcome> {
    this.calls.push(`flow ${label(key)} ${flow.logName}`);
    const startedAt = new Date();
    await new Promise((r) => setTimeout(r, this.flowDelayMs));
    const left = this.flowFailures.get(label(key)) ?? 0;
    if (left > 0) {
      this.flowFailures.set(label(key), left - 1);
      throw new Error(`Connect error in createTransportChan(): Connection refused`);
    }
    const session = this.sessionFailures.get(label(key));
    this.sessionFailures.delete(label(key));
    if (session === "hang") throw new ReceiverSessionError("ITGSend on the client exited with 124");
    const logPath = path.join(this.dir, `${flow.logName}.log`);
    writeFileSync(logPath, label(key));
    const said = session === "bind" ? "Error on bind to receiver side\nError at Receiver side\n" : "";
    const done = { logPath, senderOutput: `${said}Finished sending packets of flow ID: 1`, startedAt, endedAt: new Date() };
    if (!this.roundTrips.has(key.profile)) return done;
    const receiverLogPath = path.join(this.dir, `${flow.logName}.rlog`);
    writeFileSync(receiverLogPath, `R:${label(key)}`);
    return { ...done, receiverLogPath };
  }
  async collectLog(outcome: FlowOutcome) {
    this.calls.push(`collect ${path.basename(outcome.logPath)}`);
    return outcome.receiverLogPath === undefined ? { log: outcome.logPath } : { log: outcome.logPath, receiverLog: outcome.receiverLogPath };
  }
  async receiverAlive() {
    return this.aliveAnswers.shift() ?? true;
  }
  async restartReceiver() {
    this.calls.push("restart-receiver");
  }
  async teardown() {
    this.calls.push("teardown");
  }
  flows(): string[] {
    return this.calls.filter((c) => c.startsWith("flow ")).map((c) => c.split(" ")[1]!);
  }
}

/** Decodes the fake log (its text is the run label); optionally slow, to make pipelining visible. */
class FakeDecoder implements LogDecoder {
  delayMs = 0;
  readonly calls: string[] = [];
  /** What each decode was asked to read, with the receiver log's text. */
  readonly requests: (FlowLogFiles & { receiverText?: string })[] = [];
  constructor(private readonly timeline: string[]) {}
  async decode(files: FlowLogFiles): Promise<DecodedFlow> {
    const { log: logPath } = files;
    const text = readFileSync(logPath, "utf8");
    this.calls.push(text);
    this.requests.push({ ...files, ...(files.receiverLog ? { receiverText: readFileSync(files.receiverLog, "utf8") } : {}) });
    if (this.delayMs) await new Promise((r) => setTimeout(r, this.delayMs));
    this.timeline.push(`decoded ${text}`);
    const total: TotalReport = { ...summary(1000), droppedPercent: 0, lossBurstSize: 0, negativeDelays: 0, excludedRecords: 0, delaySource: "sender", flowCount: 1, errorLines: 0 };
    if (files.receiverLog === undefined) return { file: logPath, flows: [], total, histogram: `H:${text}` };
    // A round trip: exact delays first, the meter's readings beside them, one-way delays when asked.
    const view = (over: Partial<typeof total>, histogram: string) => ({ flows: [], total: { ...total, ...over }, histogram });
    return {
      file: logPath,
      receiverLog: files.receiverLog,
      ...view({ delaySource: "paired" }, `H:${text}`),
      views: { sender: view({ excludedRecords: 3, delayMaxS: 0.0004 }, "S"), logged: view({ delayMaxS: 1.0002 }, "L") },
      ...(files.oneWay ? { oneWay: view({ delayMeanS: 0.0007 }, "O") } : {}),
    };
  }
}

const okJudge: FlowJudge = () => ({ ok: true });

let dir: string;
let store: ResultStore;
let id: string;
let timeline: string[];
beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), "campaign-test-"));
  store = ResultStore.open(path.join(dir, "results.db"));
  id = campaignIdFor(def);
  store.ensureCampaign(id, def, planCampaign(id, def));
  timeline = [];
});
afterEach(() => {
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

function setup(over: { backend?: FakeBackend; decoder?: FakeDecoder } = {}) {
  const backend = over.backend ?? new FakeBackend(dir);
  const decoder = over.decoder ?? new FakeDecoder(timeline);
  const events: CampaignEvent[] = [];
  const onEvent = (e: CampaignEvent) => {
    events.push(e);
    if (e.kind === "flow-start") timeline.push(`flow-start ${label(e.run.key)}`);
    if (e.kind === "prepare") timeline.push(`prepare ${e.step.dataplane}/${e.step.services}`);
  };
  return { backend, decoder, events, onEvent };
}

describe("runCampaign", () => {
  it("runs the plan in order, preparing once per step, and commits every run", async () => {
    const { backend, decoder, onEvent } = setup();
    const summaryOut = await runCampaign({ store, campaignId: id, backend, decoder, judge: okJudge, retries: 0, onEvent });
    const plan = store.campaign(id)!.plan;
    expect(backend.flows()).toEqual(plan.map((r) => label(r.key)));
    expect(backend.calls.filter((c) => c.startsWith("prepare"))).toEqual([
      "prepare iptables/1", "prepare iptables/100", "prepare ebpf/1", "prepare ebpf/100",
    ]);
    expect(backend.calls.at(-1)).toBe("teardown");
    const results = store.results(id);
    expect(results.map((r) => r.runId)).toEqual(plan.map((r) => r.runId));
    expect(results.every((r) => r.status === "ok" && r.retries === 0 && r.summary?.packets === 1000)).toBe(true);
    expect(results[0]!.histogram).toBe(`H:${label(plan[0]!.key)}`);
    expect(summaryOut).toMatchObject({ total: 16, done: 16, committed: 16, failed: 0, stopped: false });
    expect(store.pendingRuns(id)).toEqual([]);
    // Logs are deleted once decoded unless kept.
    expect(existsSync(path.join(dir, `${plan[0]!.runId}-1.log`))).toBe(false);
  });

  it("keeps what each prepared step reported of its readiness, one row per preparation and family", async () => {
    const { backend, decoder } = setup();
    backend.readiness = { endpointsReadyAfterS: 4.5, programmedAfterS: 7.25, programmedServices: {} };
    await runCampaign({ store, campaignId: id, backend, decoder, judge: okJudge, retries: 0 });
    expect(store.steps(id).map(({ preparedAt, ...rest }) => ({ ...rest, prepared: typeof preparedAt }))).toEqual(
      ["iptables/1", "iptables/100", "ebpf/1", "ebpf/100"].map((step) => {
        const [dataplane, services] = step.split("/");
        return { dataplane, services: Number(services), endpointsReadyAfterS: 4.5, programmedAfterS: 7.25, programmedServices: { ipv4: Number(services) }, prepared: "string" };
      }),
    );
  });

  it("refuses, before any run, a profile the backend does not measure", async () => {
    const { backend, decoder } = setup();
    const setupDef = { ...def, profiles: ["setup"] as const, traffic: { ...def.traffic, setup: def.traffic.latency } };
    const setupId = campaignIdFor(setupDef);
    store.ensureCampaign(setupId, setupDef, planCampaign(setupId, setupDef));
    await expect(runCampaign({ store, campaignId: setupId, backend, decoder, judge: okJudge, retries: 0 })).rejects.toThrow(
      `campaign ${setupId} plans profile(s) setup, which backend fake does not measure; accepted: throughput, latency`,
    );
    expect(backend.calls).toEqual([]);
  });

  it("refuses, before any run, a path the backend does not measure, and hands each run its path where it does", async () => {
    const { backend, decoder } = setup();
    const pathsDef: CampaignDefinition = { ...def, paths: ["nodeport-local", "clusterip"] };
    const pathsId = campaignIdFor(pathsDef);
    store.ensureCampaign(pathsId, pathsDef, planCampaign(pathsId, pathsDef));
    await expect(runCampaign({ store, campaignId: pathsId, backend, decoder, judge: okJudge, retries: 0 })).rejects.toThrow(
      `campaign ${pathsId} plans path(s) clusterip, which backend fake does not measure; accepted: nodeport-local`,
    );
    expect(backend.calls).toEqual([]);
    const serving = Object.assign(new FakeBackend(dir), { paths: ["nodeport-local", "clusterip"] as const });
    const keys: (string | undefined)[] = [];
    const runFlow = serving.runFlow.bind(serving);
    serving.runFlow = (key, flow) => (keys.push(key.path), runFlow(key, flow));
    await runCampaign({ store, campaignId: pathsId, backend: serving, decoder, judge: okJudge, retries: 0 });
    expect(keys.filter((p) => p === "clusterip")).toHaveLength(16);
    expect(keys.filter((p) => p === undefined)).toHaveLength(16);
    expect(store.results(pathsId).filter((r) => r.path === "clusterip")).toHaveLength(16);
  });

  it("starts flow k+1 while run k is still decoding, and drains before changing step", async () => {
    const { backend, decoder, onEvent } = setup();
    decoder.delayMs = 40;
    backend.flowDelayMs = 5;
    await runCampaign({ store, campaignId: id, backend, decoder, judge: okJudge, retries: 0, onEvent });
    const plan = store.campaign(id)!.plan;
    for (let k = 0; k + 1 < plan.length; k++) {
      const [cur, next] = [label(plan[k]!.key), label(plan[k + 1]!.key)];
      const decodedAt = timeline.indexOf(`decoded ${cur}`);
      if (plan[k]!.key.services === plan[k + 1]!.key.services && plan[k]!.key.dataplane === plan[k + 1]!.key.dataplane) {
        // Same step: the next flow started before this run's decode finished.
        expect(timeline.indexOf(`flow-start ${next}`)).toBeLessThan(decodedAt);
      } else {
        // Step change: this run is decoded (and committed) before the backend is re-prepared.
        expect(decodedAt).toBeLessThan(timeline.indexOf(`prepare ${plan[k + 1]!.key.dataplane}/${plan[k + 1]!.key.services}`));
      }
    }
    expect(store.results(id)).toHaveLength(plan.length);
  });

  it("retries a failed flow a bounded number of times and records every failed attempt", async () => {
    const { backend, decoder, onEvent, events } = setup();
    const plan = store.campaign(id)!.plan;
    const [flaky, dead] = [plan[1]!, plan[5]!];
    backend.flowFailures.set(label(flaky.key), 2);
    backend.flowFailures.set(label(dead.key), 99);
    await runCampaign({ store, campaignId: id, backend, decoder, judge: okJudge, retries: 2, onEvent });

    const count = (run: typeof flaky) => backend.flows().filter((f) => f === label(run.key)).length;
    expect(count(flaky)).toBe(3);
    expect(count(dead)).toBe(3);
    const results = new Map(store.results(id).map((r) => [r.runId, r]));
    expect(results.get(flaky.runId)).toMatchObject({ status: "ok", retries: 2 });
    expect(results.get(dead.runId)).toMatchObject({ status: "failed", retries: 2 });
    expect(results.get(dead.runId)!.failure).toMatch(/flow failed: Connect error .* Connection refused/);
    expect(results.get(dead.runId)!.summary).toBeUndefined();
    expect(store.attempts(flaky.runId).map((a) => a.attempt)).toEqual([1, 2]);
    expect(store.attempts(dead.runId).map((a) => a.failure)).toEqual([
      "flow failed: Connect error in createTransportChan(): Connection refused",
      "flow failed: Connect error in createTransportChan(): Connection refused",
    ]);
    // Each attempt gets its own log name (D-ITG truncates a reused one).
    expect(backend.calls.filter((c) => c.startsWith(`flow ${label(flaky.key)} `)).map((c) => c.split(" ")[2])).toEqual([
      `${flaky.runId}-1`, `${flaky.runId}-2`, `${flaky.runId}-3`,
    ]);
    // The retry runs right after the failure, in the same step.
    const flows = backend.flows();
    expect(flows.indexOf(label(flaky.key))).toBe(1);
    expect(flows.slice(1, 4)).toEqual([label(flaky.key), label(flaky.key), label(flaky.key)]);
    expect(events.filter((e) => e.kind === "attempt-failed" && e.run.runId === dead.runId).map((e) => (e as { willRetry: boolean }).willRetry)).toEqual([
      true, true, false,
    ]);
  });

  it("retries a run the judge rejects and keeps the last measurement of a finally rejected run", async () => {
    const { backend, decoder, onEvent } = setup();
    const plan = store.campaign(id)!.plan;
    const rejected = label(plan[2]!.key);
    const judge: FlowJudge = (_out, decoded) =>
      decoded.histogram === `H:${rejected}` ? { ok: false, reason: "achieved 912 pkt/s, below 99% of 1000" } : { ok: true };
    await runCampaign({ store, campaignId: id, backend, decoder, judge, retries: 1, onEvent });
    expect(backend.flows().filter((f) => f === rejected)).toHaveLength(2);
    const r = store.results(id).find((x) => x.runId === plan[2]!.runId)!;
    expect(r).toMatchObject({ status: "failed", retries: 1, failure: "achieved 912 pkt/s, below 99% of 1000" });
    expect(r.summary?.packets).toBe(1000);
    expect(store.attempts(plan[2]!.runId)).toHaveLength(1);
  });

  it("restarts a dead receiver before the run and records it", async () => {
    const { backend, decoder, onEvent } = setup();
    backend.aliveAnswers = [true, true, false];
    const out = await runCampaign({ store, campaignId: id, backend, decoder, judge: okJudge, retries: 0, onEvent });
    const plan = store.campaign(id)!.plan;
    const i = backend.calls.indexOf("restart-receiver");
    expect(backend.calls.filter((c) => c === "restart-receiver")).toHaveLength(1);
    expect(backend.calls[i + 1]).toBe(`flow ${label(plan[2]!.key)} ${plan[2]!.runId}-1`);
    expect(out.receiverRestarts).toBe(1);
    expect(store.events(id).filter((e) => e.kind === "receiver-restart").map((e) => e.runId)).toEqual([plan[2]!.runId]);
  });

  it("restarts a receiver that lives on after a failed session, before the next flow, and not after a transport failure", async () => {
    const { backend, decoder } = setup();
    const plan = store.campaign(id)!.plan;
    backend.sessionFailures.set(label(plan[1]!.key), "bind");
    backend.sessionFailures.set(label(plan[5]!.key), "hang");
    backend.flowFailures.set(label(plan[9]!.key), 1);
    const judge: FlowJudge = (output) => (/error/i.test(output) ? { ok: false, reason: "ITGSend reported an error" } : { ok: true });
    const out = await runCampaign({ store, campaignId: id, backend, decoder, judge, retries: 1 });
    const restarts = backend.calls.flatMap((c, i) => (c === "restart-receiver" ? [backend.calls.slice(i + 1).find((n) => n.startsWith("flow "))] : []));
    // The flow after each broken session meets a restarted receiver, though receiverAlive answered true every
    // time: the run after it (the bind error is judged while that one runs), or the hung run's retry.
    expect(restarts).toEqual([`flow ${label(plan[2]!.key)} ${plan[2]!.runId}-1`, `flow ${label(plan[5]!.key)} ${plan[5]!.runId}-2`]);
    expect(out).toMatchObject({ receiverRestarts: 2, failed: 0 });
    expect(store.events(id).filter((e) => e.kind === "receiver-restart").map((e) => e.detail)).toEqual([
      "the last flow's receiver session failed: Error on bind to receiver side",
      "the last flow's receiver session failed: ITGSend on the client exited with 124",
    ]);
  });

  it("stops on request and resumes without repeating or losing a run", async () => {
    const controller = new AbortController();
    const first = setup();
    first.decoder.delayMs = 10;
    const onEvent = (e: CampaignEvent) => {
      first.onEvent(e);
      if (e.kind === "run-done" && e.done === 5) controller.abort();
    };
    const out1 = await runCampaign({
      store, campaignId: id, backend: first.backend, decoder: first.decoder, judge: okJudge, retries: 0, onEvent, signal: controller.signal,
    });
    expect(out1.stopped).toBe(true);
    const before = store.results(id);
    expect(before.length).toBeGreaterThanOrEqual(5);
    expect(before.length).toBeLessThan(16);

    const second = setup();
    const out2 = await runCampaign({ store, campaignId: id, backend: second.backend, decoder: second.decoder, judge: okJudge, retries: 0 });
    expect(out2).toMatchObject({ total: 16, done: 16, committed: 16 - before.length });
    const after = store.results(id);
    expect(after).toHaveLength(16);
    for (const r of before) expect(after.find((a) => a.runId === r.runId)).toEqual(r);
    // Only flows whose run was not committed were run again.
    const committedFirst = new Set(before.map((r) => label(r)));
    expect(second.backend.flows().some((f) => committedFirst.has(f))).toBe(false);
    expect(new Set([...second.backend.flows(), ...committedFirst]).size).toBe(16);
    expect(store.events(id).map((e) => e.kind)).toContain("resume");
  });

  it("keeps raw logs under the store's log directory when asked", async () => {
    const { backend, decoder } = setup();
    await runCampaign({ store, campaignId: id, backend, decoder, judge: okJudge, retries: 0, keepLogs: true });
    const plan = store.campaign(id)!.plan;
    const rec = store.runRecords(id).get(plan[3]!.runId)!;
    expect(rec.logPath).toBe(path.join("results.db.logs", id, `${plan[3]!.runId}.log`));
    expect(readFileSync(path.join(dir, rec.logPath!), "utf8")).toBe(label(plan[3]!.key));
  });

  it("pairs a round trip's logs: both to the decoder, the exact summary and the meter's readings to the store, both logs kept", async () => {
    const { backend, decoder } = setup();
    backend.roundTrips.add("latency");
    backend.sharedClock = true;
    await runCampaign({ store, campaignId: id, backend, decoder, judge: okJudge, retries: 0, keepLogs: true });
    const plan = store.campaign(id)!.plan;
    for (const run of plan) {
      const asked = decoder.requests.find((r) => r.log.endsWith(`${run.runId}-1.log`))!;
      const roundTrip = run.key.profile === "latency";
      expect([asked.receiverText, asked.oneWay]).toEqual(roundTrip ? [`R:${label(run.key)}`, true] : [undefined, false]);
      const stored = store.results(id).find((r) => r.runId === run.runId)!;
      const rec = store.runRecords(id).get(run.runId)!;
      if (!roundTrip) {
        expect([stored.delaySource, stored.delayViews, rec.receiverLogPath]).toEqual(["sender", undefined, undefined]);
        continue;
      }
      expect([stored.delaySource, stored.excludedRecords, stored.histogram]).toEqual(["paired", 0, `H:${label(run.key)}`]);
      expect(stored.delayViews?.sender).toMatchObject({ excludedRecords: 3, histogram: "S", summary: { delayMaxS: 0.0004 } });
      expect(stored.delayViews?.itgdec).toMatchObject({ excludedRecords: 0, histogram: "L", summary: { delayMaxS: 1.0002 } });
      expect(stored.delayViews?.oneWay).toMatchObject({ histogram: "O", summary: { delayMeanS: 0.0007 } });
      expect(rec.receiverLogPath).toBe(path.join("results.db.logs", id, `${run.runId}.receiver.rlog`));
      expect(readFileSync(path.join(dir, rec.receiverLogPath!), "utf8")).toBe(`R:${label(run.key)}`);
    }
  });

  it("asks for one-way delays only where the backend's ends share a clock, and drops both logs of a retried attempt", async () => {
    const { backend, decoder } = setup();
    backend.roundTrips.add("latency");
    const plan = store.campaign(id)!.plan;
    const rejected = plan.find((r) => r.key.profile === "latency")!;
    let rejections = 0;
    const judge: FlowJudge = (_out, decoded) =>
      decoded.histogram === `H:${label(rejected.key)}` && rejections++ === 0 ? { ok: false, reason: "unpaired" } : { ok: true };
    await runCampaign({ store, campaignId: id, backend, decoder, judge, retries: 1 });
    expect(decoder.requests.filter((r) => r.receiverLog !== undefined).every((r) => r.oneWay === false)).toBe(true);
    expect(store.results(id).filter((r) => r.profile === "latency").every((r) => r.delayViews?.oneWay === undefined && r.delayViews?.itgdec)).toBe(true);
    expect(store.attempts(rejected.runId)).toHaveLength(1);
    for (const ext of ["log", "rlog"]) expect(existsSync(path.join(dir, `${rejected.runId}-1.${ext}`)), ext).toBe(false);
  });

  it("commits decoded runs, tears down and reports a fatal prepare error", async () => {
    const { backend, decoder } = setup();
    backend.prepareError = new Error("pulumi up failed: quota exceeded");
    await expect(runCampaign({ store, campaignId: id, backend, decoder, judge: okJudge, retries: 3 })).rejects.toThrow(/quota exceeded/);
    expect(store.results(id)).toHaveLength(4);
    expect(backend.calls.at(-1)).toBe("teardown");
  });
});
