// The cluster component inside the real program, under the mocked engine (runOffline): the order
// the engine would run the steps in, what is secret, what re-runs them, and that the two stacks'
// cluster resources differ in the dataplane only. The mock monitor is instrumented to record what
// the SDK tells the engine about each resource (dependencies, parent, options).
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { readStackConfig, runOffline, type OfflineRun, type PlannedResource } from "../../infra/offline-engine.js";
import { mockCommandStdout } from "../../infra/offline-fixtures.js";
import type { Change } from "../../cli/diff.js";
import { recordRegistrations, reg, registrations, waitsFor } from "./mock-registrations.js";

const PROJECT = path.resolve(import.meta.dirname, "../..");

let run: OfflineRun;
const planned = (name: string): PlannedResource => run.resources.find((r) => r.name === name)!;

const isSecret = (v: unknown) => !!v && typeof v === "object" && "$secret" in (v as object);

beforeAll(async () => {
  recordRegistrations();
  const { values, secretKeys } = readStackConfig(PROJECT, "ebpf", (p) => fs.readFileSync(p, "utf8"));
  run = await runOffline({ stack: "ebpf", config: values, secretKeys });
});

describe("order of the bootstrap", () => {
  it("waits for SSH and cloud-init on a node before anything runs on it", () => {
    expect(waitsFor("cluster-kubeadm-init-config", "cluster-master-wait")).toBe(true);
    expect(waitsFor("cluster-kubeadm-join-config", "cluster-worker-wait")).toBe(true);
    expect(waitsFor("cluster-master-wait", "lab-servers-master")).toBe(true);
    expect(waitsFor("cluster-worker-wait", "lab-servers-worker")).toBe(true);
  });

  it("init after its configuration file; the join after the worker's key is authorized on the master, after init", () => {
    expect(waitsFor("cluster-kubeadm-init", "cluster-kubeadm-init-config")).toBe(true);
    expect(waitsFor("cluster-join-authorize", "cluster-kubeadm-init")).toBe(true);
    expect(waitsFor("cluster-join-authorize", "cluster-join-key")).toBe(true);
    expect(waitsFor("cluster-kubeadm-join", "cluster-join-authorize")).toBe(true);
    expect(waitsFor("cluster-kubeadm-join", "cluster-kubeadm-join-config")).toBe(true);
  });

  it("Cilium after the join, readiness after Cilium, the Kubernetes provider after readiness", () => {
    expect(waitsFor("cluster-cilium", "cluster-kubeadm-join")).toBe(true);
    expect(waitsFor("cluster-cilium", "cluster-cilium-values")).toBe(true);
    expect(waitsFor("cluster-nodes-ready", "cluster-cilium")).toBe(true);
    expect(waitsFor("cluster-k8s", "cluster-nodes-ready")).toBe(true);
    expect(waitsFor("cluster-k8s", "cluster-kubeadm-init")).toBe(true);
  });

  it("the order check can fail: nothing waits for a later step", () => {
    expect(waitsFor("cluster-kubeadm-init", "cluster-kubeadm-join")).toBe(false);
    expect(waitsFor("cluster-kubeadm-join", "cluster-nodes-ready")).toBe(false);
  });

  it("every cluster resource is a child of the cluster component", () => {
    const component = reg("cluster");
    expect(component.type).toBe("testbed:cluster:KubernetesCluster");
    const ours = registrations.filter((r) => r.name.startsWith("cluster-"));
    expect(ours.length).toBeGreaterThanOrEqual(10);
    for (const r of ours) expect(r.parent, r.name).toBe(component.urn);
  });
});

describe("secrets", () => {
  it("the kubeconfig stack output is a secret, with the server where the Pulumi host reaches the API", () => {
    const out = run.outputs.kubeconfig as { $secret: string };
    expect(isSecret(out)).toBe(true);
    expect(out.$secret).toMatch(/server: https:\/\/127\.0\.0\.1:6443/);
    expect(out.$secret).toMatch(/client-key-data:/);
  });

  it("the provider gets the kubeconfig as a secret", () => {
    expect(isSecret(planned("cluster-k8s").inputs.kubeconfig)).toBe(true);
  });

  it("every remote step carries its SSH connection as a secret", () => {
    const steps = run.resources.filter((r) => r.name.startsWith("cluster-") && r.type.startsWith("command:remote:"));
    expect(steps.length).toBe(11);
    for (const r of steps) expect(isSecret(r.inputs.connection), r.name).toBe(true);
  });

  it("no join token passes through Pulumi: the worker mints its own, with a key that can do nothing else", () => {
    expect(planned("cluster-kubeadm-join").inputs.stdin).toBeUndefined();
    expect(run.resources.some((r) => r.name.includes("join-token"))).toBe(false);
    expect(String(planned("cluster-join-authorize").inputs.create)).toMatch(/restrict,command=/);
    expect(planned("cluster-kubeadm-join").inputs.logging).toBe("stderr");
  });

  it("kubeadm init's stdout (admin.conf) is a secret output and not logged", () => {
    expect(reg("cluster-kubeadm-init").additionalSecretOutputs).toContain("stdout");
    expect(planned("cluster-kubeadm-init").inputs.logging).toBe("stderr");
  });

  it("no command whose stdout holds a credential hands it to its next run's environment (PULUMI_COMMAND_STDOUT)", () => {
    // Found by what the commands print (the offline fixtures stand for the real outputs), not by name.
    const CREDENTIAL = /client-key-data|PRIVATE KEY|--token [a-z0-9]{6}\.|certificate-key/;
    const commands = run.resources.filter((r) => r.type === "command:remote:Command" || r.type === "command:local:Command");
    const holding = commands.filter((r) => CREDENTIAL.test(mockCommandStdout(r.name, r.inputs)));
    expect(holding.map((r) => r.name)).toEqual(["cluster-kubeadm-init"]);
    // Every command with a secret stdout, and every one holding a credential, turns the variable off.
    const secretStdout = commands.filter((r) => r.options?.additionalSecretOutputs.includes("stdout"));
    for (const r of [...holding, ...secretStdout]) expect(r.inputs.addPreviousOutputInEnv, r.name).toBe(false);
    // The check can fail: pulumi-command's default (unset) is to pass the previous stdout on.
    expect(commands.filter((r) => r.inputs.addPreviousOutputInEnv === undefined).length).toBeGreaterThan(0);
  });

  it("no credential of the fixtures appears outside a secret", () => {
    const plainText = JSON.stringify(
      run.resources.map((r) => r.inputs),
      (_k, v) => (isSecret(v) ? "[secret]" : v),
    );
    expect(plainText).not.toContain("0123456789abcdef");
    expect(plainText).not.toContain("client-key-data");
  });
});

describe("when steps run again", () => {
  it("waits for SSH without a dial limit, bounded by a timeout, in each host's readiness check", () => {
    const conn = (planned("lab-master-ready").inputs.connection as { $secret: Record<string, any> }).$secret;
    expect(conn.dialErrorLimit).toBe(-1);
    expect(conn.proxy.dialErrorLimit).toBe(-1);
    // The boot's SSH wait (10 min) and the check's own limit (cloud-init's 25 min and the checks).
    expect(reg("lab-master-ready").customTimeouts?.create).toBe("39m");
    expect(waitsFor("cluster-master-wait", "lab-master-ready")).toBe(true);
  });

  it("names only the identity of what a step runs on in triggers: a server, or for the join the cluster", () => {
    const triggers = (name: string) => planned(name).inputs.triggers;
    expect(triggers("cluster-kubeadm-init")).toEqual(["lab-servers-master-id"]);
    expect(triggers("cluster-kubeadm-join")).toEqual(["cluster-kubeadm-init-id", "lab-servers-worker-id"]);
    expect(triggers("cluster-cilium")).toBeUndefined();
    expect(triggers("cluster-nodes-ready")).toBeUndefined();
    expect(triggers("workloads-apply")).toBeUndefined();
    for (const upload of run.resources.filter((r) => r.type === "command:remote:CopyToRemote")) expect(upload.inputs.triggers, upload.name).toBeUndefined();
  });

  it("init and join reset their node only when replaced (a new host), tolerating a host that is gone", () => {
    for (const [name, server] of [["cluster-kubeadm-init", "lab-servers-master"], ["cluster-kubeadm-join", "lab-servers-worker"]] as const) {
      const r = reg(name);
      expect(r.ignoreChanges).toEqual(["connection"]);
      expect(r.deleteBeforeReplace).toBe(true);
      expect(r.deletedWith).toBe(reg(server).urn);
      expect(planned(name).inputs.delete).toMatch(/\|\| true$/);
    }
  });

  it("Cilium: one script installs and upgrades (helm upgrade --install), naming the values it was run with", async () => {
    const { contentHash } = await import("../../infra/remote-files.js");
    const inputs = planned("cluster-cilium").inputs;
    expect(inputs.update).toBeUndefined();
    expect(inputs.create).toMatch(/helm upgrade --install cilium cilium --repo "\$CHART_REPO" --version "\$CILIUM_VERSION"/);
    expect(inputs.create).toContain("CILIUM_VERSION='\"'\"'1.17.18'\"'\"'");
    const uploaded = (planned("cluster-cilium-values").inputs.source as { $text: string }).$text;
    expect(inputs.create).toContain(`VALUES_SHA256='"'"'${contentHash(uploaded)}'"'"'`);
    expect(inputs.delete).toMatch(/\|\| true$/);
  });
});

describe("plan artifacts and outputs", () => {
  it("uploads kubeadm/init.yaml, kubeadm/join.yaml and helm/cilium-values.yaml", () => {
    const paths = run.resources.filter((r) => r.type === "command:remote:CopyToRemote").map((r) => r.inputs.remotePath);
    expect(paths).toEqual(expect.arrayContaining(["/opt/testbed/kubeadm/init.yaml", "/opt/testbed/kubeadm/join.yaml", "/opt/testbed/helm/cilium-values.yaml"]));
  });

  it("node preparation is in the master's and the worker's user data only", () => {
    const userData = (role: string) => run.resources.find((r) => r.name === `lab-servers-${role}` && r.type === "openstack:compute/instance:Instance")!.inputs.userData as string;
    for (const role of ["master", "worker"]) expect(userData(role)).toContain("/usr/local/sbin/testbed-node-prep");
    for (const role of ["client", "router", "bastion"]) expect(userData(role)).not.toContain("testbed-node-prep");
  });

  it("exports nodes with their data-center addresses, the dataplane and the versions", () => {
    const hostAddresses = run.outputs.hostAddresses as Record<string, Record<string, Record<string, string>>>;
    const nodes = run.outputs.nodes as { role: string; name: string; addresses: Record<string, string> }[];
    expect(nodes.map((n) => n.role)).toEqual(["master", "worker"]);
    expect(nodes[0]!.addresses).toEqual(hostAddresses.master!.datacenter);
    expect(nodes[1]!.addresses).toEqual(hostAddresses.worker!.datacenter);
    expect(run.outputs.dataplane).toBe("ebpf");
    expect(run.outputs.versions).toMatchObject({ kubernetes: "1.32.9-1.1", cilium: "1.17.18", helm: "v3.18.6" });
    expect(run.outputs.kubernetesApiTunnel).toBe(`ssh -N -L 127.0.0.1:6443:${hostAddresses.master!.management!.ipv4}:6443 ubuntu@${run.outputs.bastionAddress}`);
  });
});

describe("the two stacks", () => {
  it("differ, in the cluster's resources, only in what the dataplane decides", () => {
    const out = execFileSync(process.execPath, ["--import", "tsx", "cli/main.ts", "diff", "iptables", "ebpf", "--json"], {
      cwd: PROJECT,
      encoding: "utf8",
      maxBuffer: 64 << 20,
    });
    const changes = (JSON.parse(out) as { changes: Change[] }).changes.filter((c) => /::cluster(-|$)|^pulumi:providers:kubernetes::/.test(c.resource));
    const keys = changes.map((c) => (c.kind === "changed" ? `${c.resource.split("::")[1]} ${c.key}` : `${c.kind} ${c.resource}`)).sort();
    expect(keys).toEqual([
      "cluster-cilium create", // the values' hash
      "cluster-cilium-values source.$text",
      "cluster-kubeadm-init create", // the configuration's hash, and whether kube-proxy is reconfigured
      "cluster-kubeadm-init-config source.$text",
      "cluster-nodes-ready create", // the dataplane's checks, the values' hash
    ]);
    const initConfig = changes.find((c) => c.kind === "changed" && c.resource.endsWith("::cluster-kubeadm-init-config") && c.key === "source.$text")!;
    expect(initConfig.kind === "changed" && initConfig.after).toMatch(/proxy:\n  disabled: true/);
  }, 600_000);

  it("on one image, kube-proxy's iptables and nftables stacks differ in kube-proxy's mode and the checks of it", () => {
    const sameImage = ["openstack.image=ubuntu-22.04", "openstack.imageKernel=5.15", "openstack.imageCgroup=v2", "kubernetes.version=1.33.9"].flatMap((c) => ["--config", c]);
    const out = execFileSync(process.execPath, ["--import", "tsx", "cli/main.ts", "diff", "iptables", "nftables", "--json", ...sameImage], {
      cwd: PROJECT,
      encoding: "utf8",
      maxBuffer: 64 << 20,
    });
    const all = (JSON.parse(out) as { changes: Change[] }).changes;
    const changes = all.filter((c) => /::(cluster|workloads)(-|$)/.test(c.resource));
    expect(changes.map((c) => (c.kind === "changed" ? `${c.resource.split("::")[1]} ${c.key}` : `${c.kind} ${c.resource}`)).sort()).toEqual([
      "cluster-cilium create", // the values file's hash (its header names the dataplane)
      "cluster-cilium-values source.$text",
      "cluster-kubeadm-init create",
      "cluster-kubeadm-init-config source.$text",
      "cluster-nodes-ready create",
      "workloads-apply create", // how the worker's programmed ClusterIPs are read
    ]);
    const initConfig = changes.find((c) => c.kind === "changed" && c.resource.endsWith("::cluster-kubeadm-init-config"))!;
    const changedLines = (text: unknown) => String(text).split("\n");
    expect(initConfig.kind === "changed" && changedLines(initConfig.after).filter((l) => !changedLines(initConfig.before).includes(l))).toEqual([
      "# kubeadm init --config for the master (dataplane: nftables).",
      "mode: nftables",
    ]);
    // Outside the cluster, only what names the stack differs (its key pair, the servers using it).
    const outside = [...new Set(all.filter((c) => !changes.includes(c)).map((c) => c.resource.split("::")[1]))].sort();
    expect(outside).toEqual(["lab-access-key", "lab-servers-bastion", "lab-servers-client", "lab-servers-master", "lab-servers-router", "lab-servers-worker", "outputs"]);
  }, 600_000);
});
