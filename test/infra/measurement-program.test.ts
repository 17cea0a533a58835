// The measurement inside the real program, under the mocked engine: the ebpf stack with
// testbed:measure (throughput over IPv6, in this process) and, through `testbed plan` in child
// processes, the latency measurement of the documented example and the stack without testbed:measure.
// The mock monitor is instrumented to keep what the SDK tells the engine about each resource.
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { OfflineRun, PlannedResource } from "../../infra/offline-engine.js";
import {
  CHECKOUT_DIR,
  measuredFlow,
  measurementCreate,
  measurementPlan,
  measurementSummary,
  type MeasurementSummary,
} from "../../infra/measurement.js";
import { contentHash } from "../../infra/remote-files.js";
import type { DitgEndpoint } from "../../infra/workloads.js";
import type { Scenario } from "../../scenario/schema.js";
import { fixturePath } from "../../scripts/record-measurement-fixture.js";
import { PROJECT_DIR, runStack } from "./openstack-stack-checks.js";
import { recordRegistrations, reg, registrations } from "./mock-registrations.js";

const MEASURE = { profile: "throughput", family: "ipv6", runs: 3, runId: "tp1" } as const;
let run: OfflineRun;
let scenario: Scenario;
const planned = (name: string): PlannedResource => {
  const r = run.resources.find((x) => x.name === name);
  if (!r) throw new Error(`no resource named ${name}`);
  return r;
};

beforeAll(async () => {
  recordRegistrations();
  ({ run, scenario } = await runStack("ebpf", { "testbed:measure": JSON.stringify(MEASURE) }));
});

describe("with testbed:measure", () => {
  it("one measurement component holding the runs on the client and the pairing on the Pulumi host", () => {
    const components = registrations.filter((r) => r.type === "testbed:measurement:Measurement");
    expect(components.map((c) => c.name)).toEqual(["measurement"]);
    expect(reg("measurement").parent).toBe(reg("testbed").urn);
    const commands = run.resources.filter((r) => r.type.startsWith("command:") && r.name.startsWith("measurement"));
    expect(commands.map((c) => `${c.type} ${c.name}`)).toEqual(["command:remote:Command measurement-ditg-runs", "command:local:Command measurement-ditg-pairing"]);
    expect(reg("measurement-ditg-runs").parent).toBe(reg("measurement").urn);
    expect(reg("measurement-ditg-pairing").parent).toBe(reg("measurement").urn);
  });

  it("the pairing runs after the runs, in the checkout, with the key as a secret on its standard input only", () => {
    const pairing = planned("measurement-ditg-pairing");
    expect(reg("measurement-ditg-pairing").dependencies).toContain(reg("measurement-ditg-runs").urn);
    expect(pairing.inputs.dir).toBe(CHECKOUT_DIR);
    expect(pairing.inputs.interpreter).toEqual(["/bin/bash", "-c"]);
    expect(pairing.inputs.stdin).toEqual({ $secret: "offline-stand-in-private-key" });
    expect(pairing.inputs.addPreviousOutputInEnv).toBe(false);
    expect(JSON.stringify(pairing.inputs.create)).not.toContain("offline-stand-in-private-key");
    // It pairs the runs it follows: their output's hash is in its script, so new runs are paired anew.
    const runsStdout = fs.readFileSync(fixturePath("throughput", "ipv6", "runs"), "utf8");
    expect(String(pairing.inputs.create)).toContain(`# testbed measurement pairing: runs ${contentHash(runsStdout)}`);
    const hosts = run.outputs.hostAddresses as Record<string, Record<string, Record<string, string>>>;
    expect(String(pairing.inputs.create)).toContain(`BASTION='${String(run.outputs.bastionAddress)}'`);
    expect(String(pairing.inputs.create)).toContain(`WORKER='${hosts.worker!.management!.ipv4}'`);
  });

  it("runs on the client, through the bastion, with the SSH connection as a secret", () => {
    const connection = planned("measurement-ditg-runs").inputs.connection as { $secret: { host: string; user: string; proxy: { host: string } } };
    expect(connection.$secret).toBeDefined();
    expect(connection.$secret.host).toBe(run.outputs.clientAddress);
    expect(connection.$secret.host).not.toBe(run.outputs.masterAddress);
    expect(connection.$secret.proxy.host).toBe(run.outputs.bastionAddress);
    expect(reg("measurement-ditg-runs").deletedWith).toBe(reg("lab-servers-client").urn);
  });

  it("waits for the Services and the receiver to be applied, and for the client and the router to be ready", () => {
    expect(reg("measurement-ditg-runs").dependencies).toContain(reg("workloads-apply").urn);
    expect(reg("measurement-ditg-runs").dependencies).toContain(reg("lab-client-ready").urn);
    expect(reg("measurement-ditg-runs").dependencies).toContain(reg("lab-router-ready").urn);
    // The check can fail: the apply does not wait for the measurement.
    expect(reg("workloads-apply").dependencies).not.toContain(reg("measurement-ditg-runs").urn);
  });

  it("re-runs, as an update, on the dataplane, the Service count, the run id, the profile, the family and the run count", () => {
    expect(planned("measurement-ditg-runs").inputs.triggers).toBeUndefined();
    expect(String(planned("measurement-ditg-runs").inputs.create).split("\n")[0]).toBe("# testbed measurement: ebpf 1 tp1 throughput ipv6 3");
    expect(planned("measurement-ditg-runs").inputs.addPreviousOutputInEnv).toBe(false);
    expect(reg("measurement-ditg-runs").customTimeouts?.create).toMatch(/^\d+m$/);
  });

  it("the command is the measurement script for the worker's IPv6 NodePort endpoint", () => {
    const endpoint = (run.outputs.ditgEndpoints as Record<string, DitgEndpoint>).ipv6!;
    expect(endpoint.address).toBe((run.outputs.hostAddresses as Record<string, Record<string, Record<string, string>>>).worker!.datacenter!.ipv6);
    const create = planned("measurement-ditg-runs").inputs.create as string;
    expect(create).toBe(measurementCreate(scenario, scenario.measure!, measurementPlan(scenario, scenario.measure!, endpoint)));
    expect(create).toContain(`ITGSend -a ${endpoint.address} -Sdp 30900 -rp 31000 -T TCP -D -m owdm -p 0`);
  });

  it("the output `measurement` is both commands' stdout, judged, with real numbers from the recorded run", () => {
    const output = run.outputs.measurement as MeasurementSummary;
    const recorded = (command: "runs" | "pairing") => fs.readFileSync(fixturePath("throughput", "ipv6", command), "utf8");
    const endpoint = (run.outputs.ditgEndpoints as Record<string, DitgEndpoint>).ipv6!;
    const expected = measuredFlow(measurementPlan(scenario, scenario.measure!, endpoint)).expected;
    expect(output).toEqual(measurementSummary(recorded("runs"), recorded("pairing"), { measure: MEASURE, dataplane: "ebpf", services: 1, expected }));
    expect(output).toMatchObject({ runId: "tp1", profile: "throughput", family: "ipv6", dataplane: "ebpf", services: 1 });
    expect(output.runs.length).toBeGreaterThan(0);
    for (const r of output.runs) {
      expect(r.bitrateKbps!).toBeGreaterThan(0);
      expect(r.packets!).toBeGreaterThan(0);
      expect(r.delaySource).toBe("sender");
    }
    expect(output.acrossRuns).toMatchObject({ metric: "bitrateKbps", okRuns: output.runs.filter((r) => r.ok).length });
  });
});

describe("through `testbed plan`", () => {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), "measurement-plan-"));
  afterAll(() => fs.rmSync(work, { recursive: true, force: true }));
  const plan = (out: string, ...config: string[]) =>
    execFileSync(process.execPath, ["--import", "tsx", "cli/main.ts", "plan", "--stack", "ebpf", "--quiet", "--out", out, ...config.flatMap((c) => ["--config", c])], {
      cwd: PROJECT_DIR,
      encoding: "utf8",
      stdio: ["ignore", "pipe", "pipe"],
    });
  const read = (file: string) => JSON.parse(fs.readFileSync(file, "utf8")) as unknown;

  it("the documented example yields the latency measurement over IPv4 with the recorded numbers", () => {
    const out = path.join(work, "latency");
    plan(out, 'measure={"profile":"latency","family":"ipv4","runs":2,"runId":"r1"}');
    const outputs = read(path.join(out, "outputs.json")) as { measurement: MeasurementSummary };
    const recorded = (command: "runs" | "pairing") => fs.readFileSync(fixturePath("latency", "ipv4", command), "utf8");
    const expected = { records: 30000, minShare: 0.95, durationS: 30 };
    expect(outputs.measurement).toEqual(measurementSummary(recorded("runs"), recorded("pairing"), { measure: { profile: "latency", family: "ipv4", runs: 2, runId: "r1" }, dataplane: "ebpf", services: 1, expected }));
    expect(outputs.measurement.acrossRuns.metric).toBe("delayMeanS");
    // Exact round trips from the paired logs.
    expect(outputs.measurement.runs.every((r) => r.delayMeanS! > 0 && r.delaySource === "paired" && r.excludedRecords === 0)).toBe(true);
    const resources = read(path.join(out, "resources.json")) as PlannedResource[];
    const command = resources.find((r) => r.name === "measurement-ditg-runs")!;
    expect(String(command.inputs.create).split("\n")[0]).toBe("# testbed measurement: ebpf 1 r1 latency ipv4 2");
    expect(command.inputs.connection).toBe("[secret]");
  }, 120_000);

  it("without testbed:measure there is no measurement command and no `measurement` output", () => {
    const out = path.join(work, "none");
    plan(out);
    const outputs = read(path.join(out, "outputs.json")) as Record<string, unknown>;
    expect(Object.keys(outputs)).not.toContain("measurement");
    expect(Object.keys(outputs)).toContain("ditgEndpoints");
    const resources = read(path.join(out, "resources.json")) as PlannedResource[];
    expect(resources.length).toBeGreaterThan(50);
    expect(resources.filter((r) => /measurement|ditg-runs/.test(r.name) || r.type.startsWith("testbed:measurement"))).toEqual([]);
  }, 120_000);

  it("a bad testbed:measure is refused before any resource, naming the key and what is accepted", () => {
    const out = path.join(work, "bad");
    let stderr = "";
    try {
      plan(out, 'measure={"profile":"jitter","runs":0,"runId":"r1"}');
    } catch (err) {
      stderr = String((err as { stderr?: string }).stderr);
    }
    expect(stderr).toContain('testbed:measure.profile: "jitter" is not accepted; accepted: "throughput" or "latency"');
    expect(stderr).toContain("testbed:measure.runs: 0 is not accepted; accepted: a number >= 1");
    expect(fs.existsSync(path.join(out, "resources.json"))).toBe(false);
  }, 120_000);
});
