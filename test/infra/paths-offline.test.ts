// The real program of the ebpf stack with two workers and every path, under the mocked engine: the
// second worker's server, bootstrap and join; each further path's manifest, apply and removal; the
// stack output ditgPaths.
import { cloudPaths } from "../../backends/cloud.js";
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { beforeAll, describe, expect, it } from "vitest";
import { parse as parseYaml, parseAllDocuments } from "yaml";
import { NODE_PREP_SCRIPT } from "../../infra/cluster/node-prep.js";
import { scriptOfRootCommand } from "../../infra/cluster/shell.js";
import { assetText, type OfflineRun, type PlannedResource } from "../../infra/offline-engine.js";
import { SETUP_PROBE_PATH } from "../../infra/setup-probe.js";
import type { Scenario } from "../../scenario/schema.js";
import { cloudConfigProblems } from "./cloud-init-checks.js";
import { named, OPENSTACK_TYPES as T, ofType, runStack } from "./openstack-stack-checks.js";

let run: OfflineRun;
let s: Scenario;
beforeAll(async () => {
  ({ run, scenario: s } = await runStack("ebpf", {
    "testbed:workers": "2",
    "testbed:paths": JSON.stringify(["nodeport-local", "nodeport-remote", "clusterip"]),
  }));
});

const command = (name: string) => named(run, "command:remote:Command", name);
const upload = (name: string) => named(run, "command:remote:CopyToRemote", name);
const deps = (r: PlannedResource) => r.options?.dependencies ?? [];

describe("a second worker", () => {
  it("is a server of its own, sized as the worker, with the worker's cloud-init", () => {
    expect(ofType(run, T.instance)).toHaveLength(6);
    const server = named(run, T.instance, "lab-servers-worker-2").inputs;
    expect(server).toMatchObject({ name: "testbed-worker-2", flavorName: s.hosts.worker.flavor, metadata: { "testbed-role": "worker", "testbed-host": "worker-2" } });
    expect(cloudConfigProblems(String(server.userData))).toEqual([]);
    expect(String(server.userData)).toContain(NODE_PREP_SCRIPT);
    expect(named(run, T.port, "lab-servers-worker-2-datacenter").inputs).toMatchObject({
      name: "testbed-worker-2-datacenter",
      fixedIps: [{ ipAddress: "198.18.1.2" }, { ipAddress: "2001:2:0:20::2" }].map((f) => expect.objectContaining(f)),
      securityGroupIds: ["lab-access-path-id", "lab-access-cluster-id"],
    });
  });

  it("is checked ready, waits for its node preparation and joins with a key and a join file of its own", () => {
    expect(command("lab-worker-2-ready").options?.deletedWith).toBe("openstack:compute/instance:Instance::lab-servers-worker-2");
    expect(command("cluster-worker-2-wait").options?.deletedWith).toBe("openstack:compute/instance:Instance::lab-servers-worker-2");
    expect(scriptOfRootCommand(String(command("cluster-join-key-worker-2").inputs.create))).toContain("-C testbed-join-worker-2 ");
    // The master's authorized_keys is rewritten by one authorization at a time.
    expect(deps(command("cluster-join-authorize-worker-2"))).toContain("command:remote:Command::cluster-join-authorize");
    expect(scriptOfRootCommand(String(command("cluster-join-authorize-worker-2").inputs.create))).toContain("grep -v ' testbed-join-worker-2$'");
    expect(scriptOfRootCommand(String(command("cluster-join-authorize").inputs.create))).toContain("grep -v ' testbed-join$'");
    const joinFile = upload("cluster-kubeadm-join-config-worker-2");
    expect(joinFile.inputs.remotePath).toBe("/opt/testbed/kubeadm/join-worker-2.yaml");
    expect(assetText(joinFile.inputs.source)).toContain("value: 198.18.1.2,2001:2:0:20::2");
    const join = command("cluster-kubeadm-join-worker-2");
    expect(scriptOfRootCommand(String(join.inputs.create))).toContain("CONFIG='/opt/testbed/kubeadm/join-worker-2.yaml'");
    expect(join.inputs.triggers).toEqual(["cluster-kubeadm-init-id", "lab-servers-worker-2-id"]);
    expect(deps(command("cluster-nodes-ready"))).toEqual(expect.arrayContaining(["command:remote:Command::cluster-kubeadm-join", "command:remote:Command::cluster-kubeadm-join-worker-2"]));
  });

  it("is a node the readiness check expects, by its data-center addresses and its boot identity", () => {
    const ready = scriptOfRootCommand(String(command("cluster-nodes-ready").inputs.create));
    expect(ready).toContain("EXPECTED_NODE_IPS='198.18.1.13,2001:2:0:20::13 198.18.1.14,2001:2:0:20::14 198.18.1.2,2001:2:0:20::2'");
    expect(ready).toContain("NODE_COUNT='3'");
    expect(ready).toContain("# worker-2 boot: server lab-servers-worker-2-id flavor m1.medium");
    expect((run.outputs.nodes as { role: string; name: string }[]).map((n) => [n.role, n.name])).toEqual([
      ["master", "testbed-master"],
      ["worker", "testbed-worker"],
      ["worker-2", "testbed-worker-2"],
    ]);
    expect(Object.keys(run.outputs.hostAddresses as object)).toEqual(["bastion", "client", "router", "master", "worker", "worker-2"]);
  });
});

describe("the further paths", () => {
  for (const [path, file, deployments] of [
    ["nodeport-remote", "ditg-nodeport-remote", ["ditg-receiver-remote=testbed-worker-2"]],
    ["clusterip", "ditg-clusterip", ["ditg-receiver-clusterip=testbed-worker-2", "ditg-client=testbed-worker"]],
  ] as const) {
    it(`${path}: uploads its manifest, applies it after the workloads, checks placement and endpoints, removes it on delete`, () => {
      const up = upload(`workloads-${file}`);
      const content = assetText(up.inputs.source)!;
      const apply = command(`workloads-path-${path}`);
      expect(deps(apply)).toEqual(expect.arrayContaining([`command:remote:CopyToRemote::workloads-${file}`, "command:remote:Command::workloads-apply"]));
      const script = scriptOfRootCommand(String(apply.inputs.create));
      expect(script).toContain(`FILE_SHA256='${createHash("sha256").update(content).digest("hex")}'`);
      expect(script).toContain(`PLACEMENT='${deployments.join(" ")}'`);
      expect(script).toContain("# nodes: master server lab-servers-master-id flavor m1.medium; worker server lab-servers-worker-id flavor m1.medium; worker-2 server lab-servers-worker-2-id flavor m1.medium");
      execFileSync("shellcheck", ["-s", "bash", "-"], { input: script });
      const removal = scriptOfRootCommand(String(apply.inputs.delete));
      for (const d of deployments) expect(removal).toContain(`deployment/${d.split("=")[0]}`);
      expect(apply.inputs.triggers).toBeUndefined();
      const kinds = parseAllDocuments(content).map((d) => (d.toJS() as { kind: string }).kind);
      expect(kinds).toEqual(path === "clusterip" ? ["Deployment", "Service", "Deployment"] : ["Deployment", "Service"]);
    });
  }

  it("mounts worker 1's build of the connection-setup probe into the client pod, once it is built", () => {
    expect(deps(command("workloads-path-clusterip"))).toContain("command:remote:Command::setup-probe-worker-build");
    const client = parseAllDocuments(assetText(upload("workloads-ditg-clusterip").inputs.source)!).map((d) => d.toJS()).find((d) => d.metadata.name === "ditg-client");
    expect(client.spec.template.spec.volumes).toContainEqual({ name: "setup-probe", hostPath: { path: SETUP_PROBE_PATH, type: "File" } });
  });

  it("places the paper's receiver and the backend on worker 1 by name", () => {
    const receiver = parseAllDocuments(assetText(upload("workloads-ditg-receiver").inputs.source)!)[0]!.toJS();
    expect(JSON.stringify(receiver.spec.template.spec.affinity)).toContain('"key":"kubernetes.io/hostname","operator":"In","values":["testbed-worker"]');
  });

  it("exports every path: where to send, the receiver's node, and the client", () => {
    const paths = run.outputs.ditgPaths as Record<string, { endpoints: Record<string, { address: string; signalingPort: number; dataPort: number }>; receiver: { deployment: string; nodeAddress: string }; client: Record<string, unknown>; service: Record<string, unknown> }>;
    expect(Object.keys(paths)).toEqual(["nodeport-local", "nodeport-remote", "clusterip"]);
    expect(paths["nodeport-local"]!.endpoints).toEqual(run.outputs.ditgEndpoints);
    // Each endpoint with the ports of the receiver pod's second ITGRecv, where campaigns alternate their flows.
    expect(paths["nodeport-remote"]!.endpoints.ipv4).toEqual({ address: "198.18.1.14", signalingPort: 30901, dataPort: 31001, protocols: ["TCP", "UDP"], alternate: { signalingPort: 30903, dataPort: 31003 } });
    expect(paths["nodeport-remote"]!.receiver).toMatchObject({ deployment: "ditg-receiver-remote", nodeAddress: "198.19.0.2" });
    expect(paths["nodeport-remote"]!.service).toEqual({ namespace: "ditg", name: "ditg-receiver-remote", type: "NodePort", externalTrafficPolicy: "Cluster" });
    expect(paths.clusterip!.endpoints.ipv6).toEqual({ address: "fd00:10:96::fffd", signalingPort: 9000, dataPort: 31000, protocols: ["TCP", "UDP"], alternate: { signalingPort: 9001, dataPort: 31002 } });
    expect((run.outputs.ditgEndpoints as Record<string, unknown>).ipv4).toMatchObject({ signalingPort: 30900, dataPort: 31000, alternate: { signalingPort: 30902, dataPort: 31002 } });
    expect(paths.clusterip!.client).toEqual({
      kind: "pod",
      namespace: "ditg",
      deployment: "ditg-client",
      nodeAddress: "198.19.0.14",
      podLogDir: "/logs",
      nodeLogDir: "/var/lib/dataplane-testbed/ditg-client-logs",
      setupProbe: SETUP_PROBE_PATH,
    });
    expect(paths["nodeport-local"]!.client).toEqual({ kind: "external", host: "client" });
    expect(run.outputs.podRouting).toBe("tunnel");
    // What `testbed campaign --stack` reads from it: each path's hosts, worker 2 reached by its own name.
    const read = cloudPaths("paths", paths, { endpoints: run.outputs.ditgEndpoints as never, receiver: run.outputs.ditgReceiver as never });
    expect(read.workerHosts).toEqual({ worker2: "198.19.0.2" });
    expect(read.paths.clusterip!.alternates.ipv6).toEqual({ address: "fd00:10:96::fffd", signalingPort: 9001, dataPort: 31002 });
    expect(Object.fromEntries(Object.values(read.paths).map((p) => [p!.name, [p!.receiverHost, p!.client.kind === "pod" ? p!.client.host : "client"]]))).toEqual({
      "nodeport-local": ["receiver", "client"],
      "nodeport-remote": ["worker2", "client"],
      clusterip: ["worker2", "receiver"],
    });
  });

  it("writes the Cilium values and the kubeadm files the plan directory shows", () => {
    const values = parseYaml(assetText(upload("cluster-cilium-values").inputs.source)!);
    expect(values).toMatchObject({ routingMode: "tunnel", devices: "tb-dc" });
  });
});
