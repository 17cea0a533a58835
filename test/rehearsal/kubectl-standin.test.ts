// kubectl on the rehearsal's master, run as the scripts run it (a process, flags as they write them),
// against an API directory of its own: apply, the gate's reads, pruning, a rollout restart and the
// wait for it, the node's DaemonSet pod, and a loud refusal of anything it does not model.
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, watch, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { entryScript } from "../../rehearsal/environment.js";
import { createServer } from "node:net";
import { createInterface } from "node:readline";
import { EXEC_SOCKET, KubeApi, templateHash, type ExecRequest, type PodStatus } from "../../rehearsal/kubernetes/api.js";
import { parseScenario, PLACEHOLDERS } from "../../scenario/schema.js";
import { renderManifests } from "../../workloads/manifests.js";
import { buildServiceSet } from "../../workloads/service-set.js";

let dir: string;
let api: KubeApi;
let kubectl: string;
let kubeconfig: string;
const scenario = parseScenario({ dataplane: "iptables", ...PLACEHOLDERS, services: 3 });

function run(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(kubectl, args, { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.once("close", (code) => resolve({ code: code ?? 1, stdout, stderr }));
  });
}
const k = (...args: string[]) => run(["--kubeconfig", kubeconfig, ...args]);

beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), "testbed-kubectl-"));
  api = new KubeApi(dir);
  api.writeCluster({
    nodes: [{ name: "testbed-worker", role: "worker", netns: "w", ips: [] }],
    systemPods: [
      { namespace: "kube-system", name: "kube-proxy-w1", owner: "kube-proxy", templateHash: "b", labels: { "k8s-app": "kube-proxy" }, nodeName: "testbed-worker", ips: [], netns: "w", containers: ["kube-proxy"], ready: true, hostNetwork: true },
      { namespace: "kube-system", name: "kube-proxy-m1", owner: "kube-proxy", templateHash: "b", labels: { "k8s-app": "kube-proxy" }, nodeName: "testbed-master", ips: [], netns: "m", containers: ["kube-proxy"], ready: true, hostNetwork: true },
    ],
    sandboxes: {},
    iptablesBackend: "legacy",
  });
  for (const f of renderManifests(scenario, buildServiceSet(scenario))) writeFileSync(path.join(dir, f.name), f.yaml);
  kubeconfig = path.join(dir, "admin.conf");
  writeFileSync(kubeconfig, "apiVersion: v1\nkind: Config\n");
  kubectl = path.join(dir, "kubectl");
  writeFileSync(kubectl, entryScript("rehearsal/kubernetes/kubectl.ts", { TESTBED_KUBE_API: dir }), { mode: 0o755 });
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("kubectl stand-in", () => {
  it("needs its kubeconfig, as kubectl does", async () => {
    const r = await run(["get", "services"], { KUBECONFIG: path.join(dir, "missing.conf") });
    expect(r).toMatchObject({ code: 1, stderr: expect.stringMatching(/stat .*missing\.conf: no such file/) });
  });

  it("applies the manifests server-side and answers the gate's reads", async () => {
    for (const f of ["namespaces.yaml", "scale-backend.yaml", "scale-services.yaml", "ditg-receiver.yaml"]) {
      const r = await run(["apply", "--server-side", "--force-conflicts", "--field-manager=dataplane-testbed", "-f", path.join(dir, f)], { KUBECONFIG: kubeconfig });
      expect(r.code, r.stderr).toBe(0);
    }
    expect((await k("-n", "scale", "get", "services", "-o", "name")).stdout).toBe("service/svc-00001\nservice/svc-00002\nservice/svc-00003\n");
    expect((await k("-n", "scale", "get", "services", "--no-headers")).stdout.trim().split("\n")).toHaveLength(3);
    expect((await k("-n", "ditg", "get", "services")).stdout).toMatch(/^NAME\s+TYPE\s+CLUSTER-IP/);
  });

  it("prunes Services as the apply script's xargs passes them", async () => {
    expect(await k("-n", "scale", "delete", "--wait=false", "service/svc-00003")).toMatchObject({ code: 0, stdout: 'service "svc-00003" deleted\n' });
    expect((await k("-n", "scale", "get", "services", "-o", "name")).stdout).not.toMatch(/svc-00003/);
  });

  it("finds the DaemonSet's pod on a node by label and field selector", async () => {
    const r = await k("-n", "kube-system", "get", "pods", "-l", "k8s-app=kube-proxy", "--field-selector", "spec.nodeName=testbed-worker", "-o", "name");
    expect(r.stdout).toBe("pod/kube-proxy-w1\n");
  });

  it("restarts a rollout with a new template and waits until the node agents run it ready", async () => {
    const key = "Deployment/ditg/ditg-receiver";
    const old = api.objects().objects[key]!;
    expect(await k("-n", "ditg", "rollout", "restart", "deployment/ditg-receiver")).toMatchObject({ code: 0, stdout: "deployment.apps/ditg-receiver restarted\n" });
    const restarted = api.objects().objects[key]!;
    expect(restarted.metadata.generation).toBe((old.metadata.generation ?? 0) + 1);
    expect(templateHash(restarted)).not.toBe(templateHash(old));
    // Nothing runs the new template: the wait ends at its timeout, saying so.
    expect(await k("-n", "ditg", "rollout", "status", "deployment/ditg-receiver", "--timeout=2s")).toMatchObject({ code: 1, stderr: "error: timed out waiting for the condition\n" });
    // The wait ends when the agents report the new template's pod ready.
    const waiting = k("-n", "ditg", "rollout", "status", "deployment/ditg-receiver", "--timeout=10m");
    const pod: PodStatus = { namespace: "ditg", name: "r", owner: "ditg-receiver", templateHash: templateHash(restarted), labels: {}, nodeName: "testbed-worker", ips: [], netns: "p", containers: ["itgrecv"], ready: false, hostNetwork: false };
    api.writeStatus({ pods: [pod] });
    api.writeStatus({ pods: [{ ...pod, ready: true }] });
    expect(await waiting).toMatchObject({ code: 0, stdout: expect.stringMatching(/deployment "ditg-receiver" successfully rolled out\n$/) });
  });

  it("deletes a DaemonSet's pod, recorded for the node agents, and waits until they replaced it under a new name", async () => {
    const recorded = new Promise<void>((resolve) => {
      const watcher = watch(dir, () => {
        if (!api.objects().podDeletions?.["kube-proxy-w1"]) return;
        watcher.close();
        resolve();
      });
    });
    const deleting = k("-n", "kube-system", "delete", "pod", "kube-proxy-w1");
    await recorded;
    const [old] = api.cluster().systemPods;
    api.writeStatus({ ...api.status(), replaced: { "kube-proxy-w1": { ...old!, name: "kube-proxy-w2", ready: false } } });
    expect(await deleting).toMatchObject({ code: 0, stdout: 'pod "kube-proxy-w1" deleted\n' });
    const now = await k("-n", "kube-system", "get", "pods", "-l", "k8s-app=kube-proxy", "--field-selector", "spec.nodeName=testbed-worker", "-o", "json");
    expect(JSON.parse(now.stdout).items.map((p: { metadata: { name: string } }) => p.metadata.name)).toEqual(["kube-proxy-w2"]);
    expect(await k("-n", "kube-system", "delete", "pod", "kube-proxy-w1")).toMatchObject({ code: 1, stderr: 'pods "kube-proxy-w1" not found\n' });
    api.writeStatus({ ...api.status(), pods: [{ namespace: "scale", name: "scale-backend-x", owner: "scale-backend", templateHash: "t", labels: {}, nodeName: "testbed-worker", ips: [], netns: "b", containers: ["pause"], ready: true, hostNetwork: false }] });
    expect(await k("-n", "scale", "delete", "pod", "scale-backend-x")).toMatchObject({ code: 1, stderr: "error: delete pod scale-backend-x: only DaemonSet pods are modelled\n" });
  });

  it("execs into a Deployment's ready pod through its node's kubelet, passing its output and exit code through", async () => {
    const d = api.objects().objects["Deployment/ditg/ditg-receiver"]!;
    const pod: PodStatus = { namespace: "ditg", name: "ditg-receiver-h-abcde", owner: "ditg-receiver", templateHash: templateHash(d), labels: {}, nodeName: "testbed-worker-2", ips: [], netns: "p", containers: ["itgrecv"], ready: true, hostNetwork: false };
    api.writeStatus({ ...api.status(), pods: [{ ...pod, name: "ditg-receiver-old-xxxxx", templateHash: "old" }, pod] });
    // The kubelet's side of the socket (node-agents.ts serves it): one request, then frames.
    const requests: ExecRequest[] = [];
    const kubelet = createServer((conn) => {
      createInterface({ input: conn }).once("line", (line) => {
        requests.push(JSON.parse(line) as ExecRequest);
        conn.write(`${JSON.stringify({ out: Buffer.from("sent 10\n").toString("base64") })}\n${JSON.stringify({ err: Buffer.from("slow\n").toString("base64") })}\n${JSON.stringify({ exit: 3 })}\n`);
        conn.end();
      });
    });
    await new Promise<void>((resolve) => kubelet.listen(path.join(dir, EXEC_SOCKET), resolve));
    try {
      const r = await k("-n", "ditg", "exec", "deployment/ditg-receiver", "--", "ITGSend", "-a", "198.19.255.253");
      expect(r).toEqual({ code: 3, stdout: "sent 10\n", stderr: "slow\n" });
      // The current template's pod, with the command as given.
      expect(requests).toEqual([{ namespace: "ditg", pod: "ditg-receiver-h-abcde", command: ["ITGSend", "-a", "198.19.255.253"] }]);
    } finally {
      kubelet.close();
    }
    // No socket: kubectl says the kubelet does not answer.
    expect(await k("-n", "ditg", "exec", "ditg-receiver-h-abcde", "--", "true")).toMatchObject({ code: 1, stderr: expect.stringMatching(/exec into ditg-receiver-h-abcde: the kubelet does not answer/) });
    api.writeStatus({ ...api.status(), pods: [] });
    expect(await k("-n", "ditg", "exec", "deployment/ditg-receiver", "--", "true")).toMatchObject({ code: 1, stderr: "error: cannot exec into deployment ditg-receiver: it has no ready pod\n" });
  });

  it("refuses what it does not model, by name", async () => {
    expect(await k("scale", "deployment/x", "--replicas=2")).toMatchObject({ code: 1, stderr: expect.stringMatching(/flag --replicas is not modelled|kubectl scale is not modelled/) });
    expect(await k("get", "configmaps")).toMatchObject({ code: 1, stderr: expect.stringMatching(/resource type "configmaps" is not modelled/) });
    expect(readFileSync(api.objectsFile, "utf8")).toContain("ditg-receiver");
  });
});
