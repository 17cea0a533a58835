// What a real `pulumi up` does to a running lab, modelled (infra/lifecycle.ts) and then run: every
// script of the deployment executes in order against recording stand-ins for kubectl, helm and
// kubeadm (lifecycle-replay.ts), and the tests judge the end state. A first `up` builds the lab; a
// campaign step and a Cilium change must then update it in place, never uninstall, reset or delete.
import { createHash } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import { planInChild } from "../../cli/diff.js";
import { deployment, previewMark, type Deployment, type Operation } from "../../infra/lifecycle.js";
import { assetText, type PlannedResource } from "../../infra/offline-engine.js";
import { parseStepReadiness, stepGateCommand } from "../../infra/step-gate.js";
import { testScenario } from "../fixtures/scenario.js";
import { canReplay, Replay, type StandInState } from "./lifecycle-replay.js";

const cmd = (name: string, inputs: Record<string, unknown>, options: Partial<NonNullable<PlannedResource["options"]>> = {}): PlannedResource => ({
  type: "command:remote:Command",
  name,
  inputs,
  options: {
    parent: "",
    dependencies: [],
    propertyDependencies: {},
    deleteBeforeReplace: false,
    ignoreChanges: [],
    replaceOnChanges: [],
    additionalSecretOutputs: [],
    deletedWith: "",
    ...options,
  },
});
const kinds = (d: Deployment) => Object.fromEntries(d.operations.map((o) => [o.id.split("::")[1], o.kind]));

describe("the lifecycle model (pulumi-command and engine rules)", () => {
  it("updates a Command whose script changed and replaces one whose triggers changed", () => {
    const d = deployment([cmd("a", { create: "x" }), cmd("b", { create: "x", triggers: [1] })], [cmd("a", { create: "y" }), cmd("b", { create: "x", triggers: [2] })]);
    expect(kinds(d)).toEqual({ a: "update", b: "replace" });
    expect(d.steps.map((s) => `${s.action} ${s.id.split("::")[1]}`)).toEqual(["update a", "create b", "delete b"]);
  });

  it("ignores changes of ignoreChanges inputs", () => {
    const d = deployment([cmd("a", { create: "x", connection: 1 })], [cmd("a", { create: "x", connection: 2 }, { ignoreChanges: ["connection"] })]);
    expect(kinds(d)).toEqual({ a: "same" });
    expect(d.steps).toEqual([]);
  });

  it("runs the old delete after the new create (create-before-delete), or first with deleteBeforeReplace", () => {
    const cbd = deployment([cmd("a", { create: "x", delete: "old", triggers: [1] }), cmd("z", {})], [cmd("a", { create: "x", delete: "new", triggers: [2] }), cmd("z", { create: "c" })]);
    const script = (s: Deployment["steps"][number]) => String(s.action === "delete" ? s.resource.inputs.delete : s.resource.inputs.create);
    expect(cbd.steps.map((s) => `${s.action} ${s.id.split("::")[1]} ${script(s)}`)).toEqual([
      "create a x",
      "update z c",
      "delete a old",
    ]);
    const dbr = deployment([cmd("a", { create: "x", delete: "old", triggers: [1] }, { deleteBeforeReplace: true })], [cmd("a", { create: "x", delete: "new", triggers: [2] }, { deleteBeforeReplace: true })]);
    expect(dbr.steps.map((s) => `${s.action} ${script(s)}`)).toEqual(["delete old", "create x"]);
  });

  it("spreads a replacement to inputs that come from the replaced resource", () => {
    const before = [cmd("a", { triggers: [1] }), cmd("b", { create: "uses a-id", triggers: ["a-id"] }, { propertyDependencies: { triggers: ["command:remote:Command::a"] } }), cmd("c", { create: "uses a" }, { propertyDependencies: { create: ["command:remote:Command::a"] } })];
    const after = [cmd("a", { triggers: [2] }), before[1]!, before[2]!];
    expect(kinds(deployment(before, after))).toEqual({ a: "replace", b: "replace", c: "update" });
  });

  it("skips a delete whose deletedWith resource goes in the same deployment", () => {
    const server = (v: string): PlannedResource => ({ type: "openstack:compute/instance:Instance", name: "srv", inputs: { userData: v }, options: cmd("x", {}).options! });
    const before = [server("1"), cmd("a", { delete: "reset", triggers: ["srv-1"] }, { deletedWith: "openstack:compute/instance:Instance::srv", propertyDependencies: { triggers: ["openstack:compute/instance:Instance::srv"] } })];
    const after = [server("2"), before[1]!];
    const d = deployment(before, after);
    expect(kinds(d)).toEqual({ srv: "replace", a: "replace" });
    expect(d.steps.filter((s) => s.action === "delete").map((s) => s.id)).toEqual(["openstack:compute/instance:Instance::srv"]);
  });

  it("treats an OpenStack attribute it does not know as one that forces a new resource", () => {
    const port = (v: Record<string, unknown>): PlannedResource => ({ type: "openstack:networking/port:Port", name: "p", inputs: v, options: cmd("x", {}).options! });
    expect(kinds(deployment([port({ fixedIps: [1] })], [port({ fixedIps: [2] })]))).toEqual({ p: "update" });
    expect(kinds(deployment([port({ networkId: "n1" })], [port({ networkId: "n2" })]))).toEqual({ p: "replace" });
    expect(kinds(deployment([port({ somethingNew: 1 })], [port({ somethingNew: 2 })]))).toEqual({ p: "replace" });
  });

  it("marks operations as pulumi preview does", () => {
    const op = (o: Partial<Operation>): Operation => ({ id: "x", kind: "same", changed: [], ...o });
    expect([op({ kind: "update" }), op({ kind: "replace" }), op({ kind: "replace", deleteBeforeReplace: true }), op({ kind: "create" }), op({ kind: "delete" })].map(previewMark)).toEqual(["~", "+-", "-+", "+", "-"]);
  });
});

describe("switching the pod routing of a running lab (the model)", () => {
  it("updates the nodes' ports, Cilium's values and the checks in place; the one rule replaced runs no script", async () => {
    const base = ["openstack.sshUser=root", "services=1000", "workers=2"];
    const [tunnel, native] = await Promise.all([planInChild("iptables", base), planInChild("iptables", [...base, "podRouting=native"])]);
    const d = deployment(tunnel, native);
    expect(d.operations.filter((o) => o.kind !== "same").map((o) => `${o.kind} ${o.id.split("::")[1]}`).sort()).toEqual([
      "create lab-access-cluster-7",
      "create lab-access-cluster-8",
      "create lab-access-cluster-9",
      "replace lab-access-cluster-6",
      "update cluster-cilium",
      "update cluster-cilium-values",
      "update cluster-nodes-ready",
      "update lab-servers-master-datacenter",
      "update lab-servers-worker-2-datacenter",
      "update lab-servers-worker-datacenter",
    ]);
    // The VXLAN rule gives way to a rule that admits the pod subnet: created first, the old one
    // deleted at the end (no Command, so no delete script), never a duplicate Neutron would refuse.
    expect(d.steps.filter((st) => st.action === "delete").map((st) => st.id)).toEqual(["openstack:networking/secGroupRule:SecGroupRule::lab-access-cluster-6"]);
    const rule = native.find((r) => r.name === "lab-access-cluster-6")!;
    expect(rule.inputs).toMatchObject({ ethertype: "IPv4", remoteIpPrefix: "10.244.0.0/16" });
  }, 300_000);
});

/** What a step change must never run: uninstall, reset, deletion of the workloads. */
function destructiveCalls(s: StandInState, since: number): string[] {
  return s.calls
    .slice(since)
    .filter(
      (c) =>
        (c.tool === "helm" && c.args[0] === "uninstall") ||
        (c.tool === "kubeadm" && (c.args[0] === "reset" || (c.args[0] === "init" && c.args[1] !== "phase") || c.args[0] === "join")) ||
        (c.tool === "kubectl" && c.args.includes("delete") && c.args.includes("namespace")),
    )
    .map((c) => `${c.host}: ${c.tool} ${c.args.join(" ")}`);
}

const servicesIn = (s: StandInState, ns: string) => Object.values(s.objects).filter((o) => o.kind === "Service" && o.metadata.namespace === ns).map((o) => o.metadata.name);
const receiverRuns = (s: StandInState) => Object.values(s.objects).some((o) => o.kind === "Deployment" && o.metadata.namespace === "ditg");

describe.skipIf(!canReplay).each(["ebpf", "iptables", "nftables"] as const)("a running %s lab under pulumi up (scripts run against stand-ins)", (stack) => {
  let plans: Record<"s1000" | "s5000" | "cilium" | "resized", PlannedResource[]>;
  let replay: Replay;
  let afterFirstUp = 0;

  beforeAll(async () => {
    // The hosts' login is root here: the replay has no `ubuntu` user, and root's home is private to it.
    const base = ["openstack.sshUser=root"];
    const [s1000, s5000, cilium, resized] = await Promise.all([
      planInChild(stack, [...base, "services=1000"]),
      planInChild(stack, [...base, "services=5000"]),
      planInChild(stack, [...base, "services=5000", "cilium.version=1.17.17"]),
      planInChild(stack, [...base, "services=1000", "hosts.worker.flavor=m1.xlarge"]),
    ]);
    plans = { s1000, s5000, cilium, resized };
    replay = new Replay(stack === "nftables" ? "1.33.9" : "1.32.9");
  }, 300_000);
  afterAll(() => replay?.close());

  it("a first up runs every script in order and leaves a cluster with the step's Services and the receiver", () => {
    const first = deployment([], plans.s1000);
    expect(first.steps.every((s) => s.action === "create")).toBe(true);
    const runs = replay.run(first.steps);
    const s = replay.state();
    expect(Object.values(s.nodes).map((n) => n.name).sort()).toEqual(["testbed-master", "testbed-worker"]);
    expect(s.helm.cilium?.version).toBe("1.17.18");
    expect(s.helm.cilium?.values.kubeProxyReplacement).toBe(stack === "ebpf");
    expect(servicesIn(s, "scale")).toHaveLength(1000);
    expect(receiverRuns(s)).toBe(true);
    // The apply proves the step: ready endpoints, then the dataplane's own view of the ClusterIPs.
    const apply = runs.find((r) => r.step.id === "command:remote:Command::workloads-apply")!;
    expect(apply.stdout).toMatch(/^step services=1000 endpointsReadyAfterS=[0-9.]+ programmedAfterS=[0-9.]+ programmedServices=1000$/m);
    const execs = s.calls.filter((c) => c.tool === "kubectl" && c.args.includes("exec")).map((c) => c.args.join(" "));
    const readsOwnView = { ebpf: /cilium-dbg service list -o json/, iptables: /iptables-save -t nat/, nftables: /nft list map ip6? kube-proxy service-ips/ }[stack];
    expect(execs.some((c) => readsOwnView.test(c))).toBe(true);
    afterFirstUp = s.calls.length;
  });

  it("a campaign step (1000 -> 5000 Services) updates the apply and its manifests, nothing else, and runs no teardown", () => {
    const step = deployment(plans.s1000, plans.s5000);
    const changed = step.operations.filter((o) => o.kind !== "same");
    expect(changed.map((o) => `${o.kind} ${o.id}`).sort()).toEqual([
      "update command:remote:Command::workloads-apply",
      "update command:remote:CopyToRemote::workloads-scale-services",
    ]);
    expect(step.steps.some((s) => s.action === "delete")).toBe(false);
    replay.run(step.steps);
    const s = replay.state();
    expect(destructiveCalls(s, afterFirstUp)).toEqual([]);
    expect(servicesIn(s, "scale")).toHaveLength(5000);
    expect(receiverRuns(s)).toBe(true);
  });

  it("a Cilium version change upgrades Cilium in place and checks the nodes again", () => {
    const change = deployment(plans.s5000, plans.cilium);
    expect(change.operations.filter((o) => o.kind !== "same").map((o) => `${o.kind} ${o.id}`).sort()).toEqual([
      "update command:remote:Command::cluster-cilium",
      "update command:remote:Command::cluster-nodes-ready",
    ]);
    const before = replay.state().calls.length;
    replay.run(change.steps);
    const s = replay.state();
    expect(destructiveCalls(s, afterFirstUp)).toEqual([]);
    expect(s.helm.cilium).toMatchObject({ version: "1.17.17", revision: 2 });
    expect(s.calls.slice(before).filter((c) => c.tool === "helm").map((c) => c.args.slice(0, 2).join(" "))).toEqual(["upgrade --install", "get metadata"]);
    expect(servicesIn(s, "scale")).toHaveLength(5000);
  });

  it("a step back down (5000 Services, Cilium 1.17.17 -> 1000, 1.17.18) prunes the Services above the step, in place", () => {
    const down = deployment(plans.cilium, plans.s1000);
    expect(down.operations.filter((o) => o.kind !== "same" && o.kind !== "update")).toEqual([]);
    const before = replay.state().calls.length;
    replay.run(down.steps);
    const s = replay.state();
    expect(destructiveCalls(s, before)).toEqual([]);
    expect(servicesIn(s, "scale")).toHaveLength(1000);
    expect(s.helm.cilium?.version).toBe("1.17.18");
    expect(receiverRuns(s)).toBe(true);
  });

  it("the step gate alone refuses a worker that still holds a larger step's Services, and waits for one that drops them late", () => {
    // Three Services of a larger step, pruned from the API, that the worker's dataplane still holds.
    const template = Object.values(replay.state().objects).find((o) => o.kind === "Service" && o.metadata.name === "svc-01000")!;
    const stale = (readsLeft: number) => (st: StandInState) => {
      st.stale = Object.fromEntries(
        [1001, 1002, 1003].map((n) => {
          const name = `svc-0${n}`;
          const service = { ...template, metadata: { ...template.metadata, name }, spec: { ...template.spec, clusterIPs: [`10.96.200.${n - 1000}`, `fd00:10:96::c8:${n - 1000}`] } };
          return [`Service/scale/${name}`, { service, readsLeft }];
        }),
      );
    };
    const scenario = { ...testScenario(), dataplane: stack, services: 1000 };
    const gate = (waitS: number) => replay.runScript("master", "step-gate", stepGateCommand(scenario, { workerNode: "testbed-worker", waitS, pollS: 1 }));

    replay.patchState(stale(-1));
    let refused;
    try {
      refused = gate(3);
    } finally {
      replay.patchState((st) => delete st.stale);
    }
    expect(refused.status).toBe(1);
    expect(refused.stderr).toMatch(
      new RegExp(`^after 3 s the ${stack} dataplane on testbed-worker holds 1003 scaled Services: 6 ClusterIPs more than the step's \\(e\\.g\\. scale/svc-01001 10\\.96\\.200\\.1, `),
    );

    replay.patchState(stale(2));
    const waited = gate(60);
    expect(waited.stderr).toBe("");
    expect(waited.status).toBe(0);
    const step = parseStepReadiness(waited.stdout);
    expect(step).toMatchObject({ services: 1000, programmedServices: 1000 });
    expect(step.programmedAfterS).toBeGreaterThanOrEqual(2);
    expect(replay.state().stale).toEqual({});
  });

  it("a worker resize (a reboot) updates the server and checks the host, kubelet, the dataplane and the receiver again; nothing is torn down", () => {
    const resize = deployment(plans.s1000, plans.resized);
    expect(resize.operations.filter((o) => o.kind !== "same").map((o) => `${o.kind} ${o.id}`).sort()).toEqual([
      "update command:remote:Command::cluster-nodes-ready",
      "update command:remote:Command::cluster-worker-wait",
      "update command:remote:Command::lab-worker-ready",
      "update command:remote:Command::workloads-apply",
      "update openstack:compute/instance:Instance::lab-servers-worker",
    ]);
    expect(resize.steps.some((s) => s.action === "delete")).toBe(false);
    // The server first, then every check that names its boot identity, in dependency order.
    expect(resize.steps.map((s) => s.id.split("::")[1])).toEqual(["lab-servers-worker", "lab-worker-ready", "cluster-worker-wait", "cluster-nodes-ready", "workloads-apply"]);
    const before = replay.state().calls.length;
    const runs = replay.run(resize.steps);
    const s = replay.state();
    expect(destructiveCalls(s, before)).toEqual([]);
    const again = s.calls.slice(before).map((c) => `${c.tool} ${c.args.join(" ")}`);
    expect(again).toContain("cloud-init status --wait");
    expect(again.some((c) => /^kubectl wait --for=condition=Ready nodes --all/.test(c))).toBe(true);
    expect(again.some((c) => / rollout status deployment\/ditg-receiver /.test(c))).toBe(true);
    expect(runs.find((r) => r.step.id.endsWith("::workloads-apply"))!.stdout).toMatch(/^step services=1000 .* programmedServices=1000$/m);
    expect(servicesIn(s, "scale")).toHaveLength(1000);
  });

  it("the check catches the old defect: with triggers on the apply, a step deletes the workloads after applying them", () => {
    // The apply as it used to be declared: its hash as a trigger, so a new set replaces the command.
    const withTriggers = (plan: PlannedResource[]) =>
      plan.map((r) => (r.name === "workloads-apply" ? { ...r, inputs: { ...r.inputs, triggers: [createHash("sha256").update(String(r.inputs.create)).digest("hex")] } } : r));
    const broken = deployment(withTriggers(plans.s1000), withTriggers(plans.s5000));
    expect(broken.operations.find((o) => o.id.endsWith("::workloads-apply"))?.kind).toBe("replace");
    const mark = replay.state().calls.length;
    replay.run(broken.steps);
    const s = replay.state();
    expect(destructiveCalls(s, mark)).toEqual([expect.stringMatching(/^master: kubectl delete namespace scale ditg/)]);
    expect(servicesIn(s, "scale")).toHaveLength(0);
    expect(receiverRuns(s)).toBe(false);
  });
});

describe.skipIf(!canReplay).each(["ebpf", "iptables", "nftables"] as const)("workers and paths added to a running %s lab (scripts run against stand-ins)", (stack) => {
  let plans: Record<"one" | "workers2" | "paths", PlannedResource[]>;
  let replay: Replay;

  beforeAll(async () => {
    const base = ["openstack.sshUser=root", "services=1000"];
    const [one, workers2, paths] = await Promise.all([
      planInChild(stack, base),
      planInChild(stack, [...base, "workers=2"]),
      planInChild(stack, [...base, "workers=2", 'paths=["nodeport-local","nodeport-remote","clusterip"]']),
    ]);
    plans = { one, workers2, paths };
    replay = new Replay(stack === "nftables" ? "1.33.9" : "1.32.9", 2);
    replay.run(deployment([], plans.one).steps);
  }, 300_000);
  afterAll(() => replay?.close());

  it("adding a worker to the running lab creates its server, bootstrap and join, and updates what names the nodes; nothing it keeps is replaced or torn down", () => {
    const add = deployment(plans.one, plans.workers2);
    expect(add.operations.filter((o) => o.kind === "replace" || o.kind === "delete")).toEqual([]);
    expect(add.steps.some((s) => s.action === "delete")).toBe(false);
    expect(add.operations.filter((o) => o.kind === "create").map((o) => o.id.split("::")[1]).sort()).toEqual([
      "cluster-join-authorize-worker-2",
      "cluster-join-key-worker-2",
      "cluster-kubeadm-join-config-worker-2",
      "cluster-kubeadm-join-worker-2",
      "cluster-worker-2-wait",
      "lab-servers-worker-2",
      "lab-servers-worker-2-datacenter",
      "lab-servers-worker-2-management",
      "lab-worker-2-ready",
      // The connection-setup probe, built on the new worker too: the remote paths' listeners run there.
      "setup-probe-worker-2-build",
      "setup-probe-worker-2-source",
    ]);
    // Updates only: the readiness check (a third node), the workloads (worker 1 now named in the
    // backend's and the receiver's placement, the nodes' boot identities in the apply).
    expect(add.operations.filter((o) => o.kind === "update").map((o) => `${o.id.split("::")[1]}: ${o.changed.join(",")}`).sort()).toEqual([
      "cluster-nodes-ready: create",
      "workloads-apply: create",
      "workloads-ditg-receiver: source",
      "workloads-scale-backend: source",
    ]);
    const before = replay.state().calls.length;
    const runs = replay.run(add.steps);
    const s = replay.state();
    // A join (with its reset of the node first) runs on the new worker alone.
    expect(destructiveCalls(s, before).filter((c) => !c.startsWith("worker-2: "))).toEqual([]);
    expect(destructiveCalls(s, before).filter((c) => c.startsWith("worker-2: kubeadm join"))).toHaveLength(1);
    expect(Object.values(s.nodes).map((n) => n.name).sort()).toEqual(["testbed-master", "testbed-worker", "testbed-worker-2"]);
    expect(s.calls.slice(before).filter((c) => c.tool === "helm")).toEqual([]);
    expect(servicesIn(s, "scale")).toHaveLength(1000);
    expect(runs.find((r) => r.step.id.endsWith("::workloads-apply"))!.stdout).toMatch(/^step services=1000 .* programmedServices=1000$/m);
  });

  it("adding the further paths applies one command each; dropping them runs their delete, which removes their objects and nothing else", () => {
    const add = deployment(plans.workers2, plans.paths);
    // The remote receiver's four NodePorts (two per ITGRecv) leave the scaled Services' order: the (at
    // most four) Services that held one get the order's last free ports, every other Service keeps its own.
    expect(add.operations.filter((o) => o.kind !== "same" && o.kind !== "create").map((o) => `${o.kind} ${o.id.split("::")[1]}`)).toEqual([
      "update workloads-scale-services",
      "update workloads-apply",
    ]);
    const nodePorts = (plan: PlannedResource[]) => {
      const r = plan.find((x) => x.name === "workloads-scale-services")!;
      return new Map(parseAllDocuments(assetText(r.inputs.source)!).map((d) => d.toJS() as { metadata: { name: string }; spec: { ports: { nodePort?: number }[] } }).map((o) => [o.metadata.name, o.spec.ports[0]!.nodePort]));
    };
    const [was, now] = [nodePorts(plans.workers2), nodePorts(plans.paths)];
    const moved = [...was].filter(([name, port]) => now.get(name) !== port);
    expect(moved.length).toBeLessThanOrEqual(4);
    for (const [, port] of moved) expect([30901, 31001, 30903, 31003]).toContain(port);
    for (const reserved of [30901, 31001, 30903, 31003]) expect([...now.values()]).not.toContain(reserved);
    expect(add.operations.filter((o) => o.kind === "create").map((o) => o.id.split("::")[1]).sort()).toEqual([
      "workloads-ditg-clusterip",
      "workloads-ditg-nodeport-remote",
      "workloads-path-clusterip",
      "workloads-path-nodeport-remote",
    ]);
    const runs = replay.run(add.steps);
    expect(runs.filter((r) => r.step.id.includes("::workloads-path-")).map((r) => r.stdout.trim())).toEqual(["path nodeport-remote ready", "path clusterip ready"]);
    const deployments = () => Object.values(replay.state().objects).filter((o) => o.kind === "Deployment" && o.metadata.namespace === "ditg").map((o) => o.metadata.name).sort();
    expect(deployments()).toEqual(["ditg-client", "ditg-receiver", "ditg-receiver-clusterip", "ditg-receiver-remote"]);
    expect(servicesIn(replay.state(), "ditg").sort()).toEqual(["ditg-receiver", "ditg-receiver-clusterip", "ditg-receiver-remote"]);

    const drop = deployment(plans.paths, plans.workers2);
    expect(drop.operations.filter((o) => o.kind !== "same" && o.kind !== "delete").map((o) => `${o.kind} ${o.id.split("::")[1]}`)).toEqual([
      "update workloads-scale-services",
      "update workloads-apply",
    ]);
    expect(drop.steps.filter((st) => st.action === "delete").map((st) => st.id.split("::")[1])).toEqual([
      "workloads-path-clusterip",
      "workloads-path-nodeport-remote",
      "workloads-ditg-clusterip",
      "workloads-ditg-nodeport-remote",
    ]);
    const before = replay.state().calls.length;
    replay.run(drop.steps);
    const s = replay.state();
    expect(destructiveCalls(s, before)).toEqual([]);
    expect(deployments()).toEqual(["ditg-receiver"]);
    expect(servicesIn(s, "ditg")).toEqual(["ditg-receiver"]);
    expect(servicesIn(s, "scale")).toHaveLength(1000);
  });

});
