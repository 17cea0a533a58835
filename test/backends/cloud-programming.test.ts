// The cloud's programming runs over a fake cluster (Kubernetes and the VMs are the mocks): the
// changes through kubectl on the master in their order, each between the probe's mark and its
// answer, the control plane's histograms read around each on the worker (a restart read as a new
// process), the listener in the backend pod's namespace, the Services put back when a change fails,
// and the scripts the worker and master run, under bash and shellcheck.
import { spawnSync } from "node:child_process";
import { EventEmitter } from "node:events";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { PassThrough } from "node:stream";
import { afterAll, describe, expect, it } from "vitest";
import { CLOUD_PROGRAMMING, CloudProgramming, listenerScript, programmingProbeOutput, writeFileScript, type RemoteProcess, type StreamingShell } from "../../backends/cloud-programming.js";
import type { CommandResult, RemoteHost } from "../../backends/cloud.js";
import { judgeChanges } from "../../measure/campaign.js";
import { clusterDataplane } from "../../infra/cluster/dataplanes/index.js";
import { PROGRAMMING_CHANGES } from "../../measure/types.js";
import { parseScenario, PLACEHOLDERS } from "../../scenario/schema.js";
import { buildServiceSet } from "../../workloads/service-set.js";

const scenario = parseScenario({ ...PLACEHOLDERS, dataplane: "iptables", families: ["ipv4", "ipv6"], services: 10, sweep: { services: [10], runs: 1, flowSeconds: 1, seed: 3 } });
const SYNC = "kubeproxy_sync_proxy_rules_duration_seconds";
const NPL = "kubeproxy_network_programming_duration_seconds";
const probed = buildServiceSet(scenario, 10).scaled.at(-1)!;

/** A cluster as kubectl, curl and the probe see it: the probed Service there or not, kube-proxy's syncs counted. */
class FakeCluster implements StreamingShell {
  readonly calls: string[] = [];
  probedThere = true;
  syncs = 4;
  agent = "kube-proxy-abcde";
  /** A change that never reaches the packets. */
  unseen: string | undefined;
  /** Scrapes since the 100 Services went, until kube-proxy's periodic sync. */
  periodicDue: number | undefined;
  /** Periodic syncs before the probed Service's flushed chains are gone (kube-proxy's nftables mode); 0: none left. */
  chainsLeftFor = 0;
  periodicSyncs = 0;
  private waiting: (() => void)[] = [];

  metrics(): string {
    const n = this.syncs;
    return [
      `# TYPE ${SYNC} histogram`,
      `${SYNC}_bucket{le="0.001"} 0`,
      `${SYNC}_bucket{le="0.002"} ${n}`,
      `${SYNC}_bucket{le="+Inf"} ${n}`,
      `${SYNC}_sum ${n * 0.0015}`,
      `${SYNC}_count ${n}`,
      `${NPL}_bucket{le="0.25"} 0`,
      `${NPL}_bucket{le="+Inf"} 0`,
      `${NPL}_sum 0`,
      `${NPL}_count 0`,
      "",
    ].join("\n");
  }

  async run(host: RemoteHost, command: string): Promise<CommandResult> {
    this.calls.push(`${host}: ${command.split("\n")[0]}`);
    const ok = (stdout = "") => ({ code: 0, stdout, stderr: "" });
    if (host === "receiver" && command.startsWith("curl")) {
      this.passTime();
      return ok(this.metrics());
    }
    if (host === "receiver" && command.startsWith('target=""')) return ok("listener 777\n");
    if (host === "receiver" || command.startsWith("rm -f")) return ok();
    if (command.includes("nft list chains")) {
      this.passTime();
      const left = this.periodicSyncs < this.chainsLeftFor ? `endpoint-ABCD1234-${probed.namespace}/${probed.name}/tcp/http__10.244.1.5/80\n` : "";
      this.calls.push(left ? "chains left" : "no chain left");
      return ok(left);
    }
    if (command.includes("get pods -l app.kubernetes.io/name=scale-backend")) {
      return ok(JSON.stringify({ items: [{ metadata: { name: "scale-backend-1" }, spec: { nodeName: "testbed-worker" }, status: { podIPs: [{ ip: "10.244.1.5" }, { ip: "fd00:10:244:1::5" }], conditions: [{ type: "Ready", status: "True" }] } }] }));
    }
    if (command.includes("get pods -l k8s-app=kube-proxy")) {
      return ok(JSON.stringify({ items: [{ metadata: { name: this.agent }, spec: { nodeName: "testbed-worker" }, status: { conditions: [{ type: "Ready", status: "True" }] } }] }));
    }
    if (command.startsWith("set -eu\nf=")) return ok(`/tmp/testbed-programming.${this.calls.length}.yaml\n`);
    // A change through the API: the worker's kube-proxy syncs it.
    if (command.includes("delete pod")) {
      this.agent = "kube-proxy-fghij";
      this.syncs = 1;
    } else {
      this.syncs++;
    }
    if (command.includes(" delete service ")) this.probedThere = false;
    if (/ delete service \S+ svc-/.test(command)) this.periodicDue = 0;
    if (command.includes(" apply ")) this.probedThere = true;
    const wake = this.waiting;
    this.waiting = [];
    for (const w of wake) w();
    return ok();
  }

  async fetch(): Promise<void> {}
  async close(): Promise<void> {}

  /** Time passes with every read of the worker: kube-proxy's periodic sync comes a few reads after the 100 Services went, and again while chains are left. */
  private passTime(): void {
    if (this.periodicDue === undefined || ++this.periodicDue !== 3) return;
    this.syncs++;
    this.periodicDue = undefined;
    this.calls.push("periodic sync");
    this.periodicSyncs++;
    if (this.periodicSyncs < this.chainsLeftFor) this.periodicDue = 0;
  }

  /** The probe: ready at once, a mark at 1 s on its clock, the change seen 250 ms after the mark once the API has it. */
  start(host: RemoteHost, command: string): RemoteProcess {
    this.calls.push(`${host} start: ${command}`);
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    const stdin = new PassThrough();
    const events = new EventEmitter();
    const expect = command.includes(" answered ") ? true : false;
    const process = Object.assign(events, {
      stdin, stdout, stderr, exitCode: null as number | null,
      kill: () => {
        process.exitCode = 143;
        events.emit("exit", 143);
      },
    });
    setImmediate(() => stdout.write("ready 10\n"));
    stdin.on("data", (d: Buffer) => {
      if (!d.toString().includes("mark")) return;
      stdout.write("mark 1000000000\n");
      this.waiting.push(() => {
        if (this.unseen && command.includes(` ${this.unseen} `)) {
          stdout.write("gave-up 900 0 2000\n");
          return;
        }
        if (this.probedThere === expect) stdout.write("changed 1200000000 1250000000\ndone 300 0 0 1324\n");
      });
    });
    return process as unknown as RemoteProcess;
  }
}

const programming = (shell: FakeCluster, probe: boolean | undefined = true) =>
  new CloudProgramming({
    stack: "iptables",
    shell,
    scenario,
    endpoints: { ipv4: { address: "198.18.1.21", signalingPort: 30900, dataPort: 31000 } },
    probe: probe ? { client: "/usr/local/bin/programming-probe", worker: "/usr/local/bin/programming-probe" } : undefined,
  });
const key = { dataplane: "iptables" as const, family: "ipv4" as const, profile: "programming" as const, services: 10, repetition: 0 };

describe("the cloud's programming runs", () => {
  it("makes every change through kubectl between the probe's mark and its answer, reads kube-proxy's histograms around each, and restarts kube-proxy for full-sync", async () => {
    const shell = new FakeCluster();
    const changes = await programming(shell).runChanges(key, CLOUD_PROGRAMMING);
    expect(changes.map((c) => c.change)).toEqual(["remove-one", "add-one", "remove-one", "add-100", "full-sync"]);
    expect(judgeChanges(changes)).toBeUndefined();
    for (const c of changes) {
      expect(c.programmedS).toBeCloseTo(0.25, 9);
      expect(c.syncS).toBeUndefined();
      expect(c.metrics!.map((m) => m.name)).toEqual([SYNC, NPL]);
    }
    // One sync per change; the restarted kube-proxy's first sync whole.
    expect(changes.map((c) => c.metrics![0]!.count)).toEqual([1, 1, 1, 1, 1]);
    expect(changes.map((c) => c.services)).toEqual([9, 10, 9, 109, 10]);
    const master = shell.calls.filter((c) => c.startsWith("master: ") && !c.includes(" get pods ") && !c.startsWith("master: set -eu"));
    expect(master.map((c) => c.replace(/sudo kubectl --kubeconfig \/etc\/kubernetes\/admin.conf/g, "kubectl"))).toEqual([
      `master: kubectl -n ${probed.namespace} delete service ${probed.name} >/dev/null`,
      expect.stringMatching(/^master: kubectl apply --server-side --force-conflicts --field-manager=dataplane-testbed -f \/tmp\/testbed-programming\.\d+\.yaml >\/dev\/null$/),
      `master: kubectl -n ${probed.namespace} delete service ${probed.name} >/dev/null`,
      expect.stringMatching(/apply .* -f \/tmp\/testbed-programming\.\d+\.yaml/),
      expect.stringMatching(new RegExp(`^master: kubectl -n ${probed.namespace} delete service ${probed.name} svc-00011 .* svc-00109 >/dev/null$`)),
      expect.stringMatching(/^master: kubectl -n kube-system delete pod kube-proxy-abcde >\/dev\/null && kubectl apply /),
      expect.stringMatching(/^master: rm -f /),
    ]);
    // kube-proxy restarts only after its periodic sync deleted what the deletion of the 100 left stale.
    expect(shell.calls.indexOf("periodic sync")).toBeGreaterThan(shell.calls.findIndex((c) => / delete service \S+ svc-00011 /.test(c)));
    expect(shell.calls.indexOf("periodic sync")).toBeLessThan(shell.calls.findIndex((c) => c.includes("delete pod")));
    // The probe towards the worker's NodePort address and the probed Service's NodePort, each attempt from the next source port.
    const starts = shell.calls.filter((c) => c.startsWith("client start: "));
    expect(starts).toHaveLength(5);
    expect(starts[0]).toBe(`client start: /usr/local/bin/programming-probe probe 198.18.1.21 ${probed.ports[0]!.nodePort} 1000 1024 60999 1024 refused 200 50 900`);
    expect(starts[1]).toContain(" 1324 answered ");
    // The listener in the backend pod's namespace on the worker, found by the pod's address of the run's family; stopped at the end.
    expect(shell.calls.find((c) => c.startsWith('receiver: target=""')) !== undefined).toBe(true);
    expect(shell.calls.at(-2)).toBe("receiver: sudo kill 777 2>/dev/null; true");
  });

  it("restarts kube-proxy's nftables mode only once no chain of the removed probed Service is left, however many syncs that takes", async () => {
    const shell = new FakeCluster();
    // The first sync counted after the deletion leaves the probed Service's chains flushed, not deleted.
    shell.chainsLeftFor = 2;
    const nft = new CloudProgramming({
      stack: "nftables",
      shell,
      scenario: { ...scenario, dataplane: "nftables" },
      endpoints: { ipv4: { address: "198.18.1.21", signalingPort: 30900, dataPort: 31000 } },
      probe: { client: "/usr/local/bin/programming-probe", worker: "/usr/local/bin/programming-probe" },
    });
    const changes = await nft.runChanges(key, CLOUD_PROGRAMMING);
    expect(changes.map((c) => c.change)).toEqual(["remove-one", "add-one", "remove-one", "add-100", "full-sync"]);
    const marks = shell.calls.filter((c) => ["periodic sync", "chains left", "no chain left"].includes(c) || c.includes("delete pod"));
    expect(marks.map((c) => (c.includes("delete pod") ? "delete pod" : c))).toEqual(["periodic sync", "chains left", "chains left", "periodic sync", "no chain left", "delete pod"]);
    // iptables mode leaves no chain behind: nothing is read.
    const ipt = new FakeCluster();
    await programming(ipt).runChanges(key, CLOUD_PROGRAMMING);
    expect(ipt.calls.filter((c) => c.includes("chain"))).toEqual([]);
  });

  it("puts the step's Services back and fails the run when a change never reaches the packets", async () => {
    const shell = new FakeCluster();
    shell.unseen = "answered";
    await expect(programming(shell).runChanges(key, CLOUD_PROGRAMMING)).rejects.toThrow(/add-one: no probe through 198\.18\.1\.21:\d+ was answered within 900 s of the change/);
    const restore = shell.calls.find((c) => c.includes("delete service --ignore-not-found"))!;
    expect(restore).toMatch(/apply .* -f \/tmp\/testbed-programming\.\d+\.yaml >\/dev\/null; .* delete service --ignore-not-found svc-00011 /);
    expect(shell.calls).toContain("receiver: sudo kill 777 2>/dev/null; true");
  });

  it("refuses, saying how to fix it, on a stack deployed before the probe, and reads the probe's output", async () => {
    await expect(programming(new FakeCluster(), false).runChanges(key, CLOUD_PROGRAMMING)).rejects.toThrow(/exports no `programmingProbe` output: .*`pulumi up --stack iptables`/);
    expect(programmingProbeOutput("s", {})).toBeUndefined();
    expect(programmingProbeOutput("s", { programmingProbe: { value: { client: "/a", worker: "/b" } } })).toEqual({ client: "/a", worker: "/b" });
    expect(() => programmingProbeOutput("s", { programmingProbe: { value: { client: "/a" } } })).toThrow(/no usable output `programmingProbe`/);
    expect(PROGRAMMING_CHANGES.length).toBe(4);
  });
});

describe("the scripts", () => {
  const dir = mkdtempSync(path.join(tmpdir(), "cloud-programming-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("writes a manifest to a new file on the host, byte for byte, and refuses one that would end the here-document", () => {
    const text = "apiVersion: v1\nkind: Service\nmetadata:\n  name: 'a $b `c`'\n";
    const r = spawnSync("bash", ["-c", writeFileScript(text)], { encoding: "utf8" });
    expect(r.status).toBe(0);
    const file = r.stdout.trim();
    expect(spawnSync("cat", [file], { encoding: "utf8" }).stdout).toBe(text);
    rmSync(file);
    expect(() => writeFileScript("x\nTESTBED_MANIFEST_END\n")).toThrow(/cannot be written by a here-document/);
  });

  it("pass shellcheck", () => {
    for (const [name, script] of [
      ["write.sh", writeFileScript("a: 1\n")],
      ["listen.sh", listenerScript("/usr/local/bin/programming-probe", "10.244.1.5", 80)],
      ["leftover.sh", `set -euo pipefail\nWORKER_NODE=testbed-worker\nSERVICE_FAMILIES="ipv4 ipv6"\nSERVICE=scale/svc-1\n${clusterDataplane("nftables").leftoverChains!}`],
    ] as const) {
      const file = path.join(dir, name);
      writeFileSync(file, `#!/usr/bin/env bash\n${script}\n`);
      const r = spawnSync("shellcheck", ["--shell=bash", "--severity=style", file], { encoding: "utf8" });
      expect(r.stdout, name).toBe("");
    }
  });
});
