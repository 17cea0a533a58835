// `kubectl` on the rehearsal's master: the calls the stack's scripts and `testbed campaign` make,
// answered from the rehearsal's API (api.ts), and nothing else. An invocation it does not model
// fails with exit 1 and says so, so a script that starts to call something new cannot pass unnoticed.
//
//   apply --server-side [--force-conflicts] [--field-manager=M] -f FILE
//   get services|endpointslices|pods|deployments [NAME] [-n NS] [-l SEL] [--field-selector spec.nodeName=N]
//       [-o name|json|jsonpath=TEMPLATE] [--no-headers]
//   delete [--wait=false] KIND/NAME... | KIND NAME... | namespace NAME...
//       (a pod: one of a DaemonSet's on the worker, replaced by the node agents; waits until it is gone)
//   rollout status|restart deployment/NAME [--timeout=D]
//   exec POD|deployment/NAME [-c CONTAINER] -- COMMAND...   a workload's pod: by its node's kubelet
//       (node-agents.ts, on its exec socket), in the container's namespaces and the pod's cgroup, its
//       output and exit code passed through; a host-network pod (kube-proxy, Cilium): in the node's
//       network namespace, with the agents' own tools where the rehearsal has none:
//       `cilium-dbg service list -o json` reads the eBPF model's maps, and `iptables-save` is the
//       iptables kube-proxy wrote its rules with (its image's iptables-wrapper)
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, watch } from "node:fs";
import { connect } from "node:net";
import path from "node:path";
import { createInterface } from "node:readline";
import { parseAllDocuments } from "yaml";
import { endpointSlices, EXEC_SOCKET, KubeApi, matchesLabelSelector, objectKey, serviceSpecOf, templateHash, type ExecFrame, type KubeObject, type PodStatus } from "./api.js";
import { printServiceList, servicesByFrontend } from "./cilium-dbg.js";
import { jsonpath } from "./jsonpath.js";

class KubectlError extends Error {
  /** Whether kubectl prefixes the message with "error: ". */
  constructor(
    message: string,
    readonly prefixed = true,
  ) {
    super(message);
  }
}

const VALUE_FLAGS = new Set(["-n", "--namespace", "--kubeconfig", "-o", "--output", "-l", "--selector", "--field-selector", "-f", "--filename", "-c", "--container", "--timeout", "--field-manager", "--wait"]);
const BOOLEAN_FLAGS = new Set(["--server-side", "--force-conflicts", "--no-headers", "--ignore-not-found"]);

interface Parsed {
  readonly words: string[];
  readonly flags: Map<string, string>;
  /** After `--` (exec's command). */
  readonly command: string[];
}

function parse(argv: readonly string[]): Parsed {
  const words: string[] = [];
  const flags = new Map<string, string>();
  const alias: Record<string, string> = { "-n": "--namespace", "-o": "--output", "-l": "--selector", "-f": "--filename", "-c": "--container" };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--") return { words, flags, command: argv.slice(i + 1) };
    if (!a.startsWith("-")) {
      words.push(a);
      continue;
    }
    const eq = a.indexOf("=");
    let name = eq > 0 ? a.slice(0, eq) : a;
    let value = eq > 0 ? a.slice(eq + 1) : undefined;
    if (/^-[a-z].+/.test(name) && alias[name.slice(0, 2)] && eq < 0) {
      value = name.slice(2);
      name = name.slice(0, 2);
    }
    if (BOOLEAN_FLAGS.has(name)) {
      flags.set(name, value ?? "true");
      continue;
    }
    if (!VALUE_FLAGS.has(name)) throw new KubectlError(`flag ${name} is not modelled`);
    if (value === undefined) {
      value = argv[++i];
      if (value === undefined) throw new KubectlError(`flag ${name} needs a value`);
    }
    flags.set(alias[name] ?? name, value);
  }
  return { words, flags, command: [] };
}

const KINDS: Record<string, string> = {
  service: "Service",
  services: "Service",
  svc: "Service",
  endpointslice: "EndpointSlice",
  endpointslices: "EndpointSlice",
  pod: "Pod",
  pods: "Pod",
  po: "Pod",
  deployment: "Deployment",
  deployments: "Deployment",
  deploy: "Deployment",
  "deployment.apps": "Deployment",
  namespace: "Namespace",
  namespaces: "Namespace",
  ns: "Namespace",
};
const RESOURCE: Record<string, string> = { Service: "service", EndpointSlice: "endpointslice.discovery.k8s.io", Pod: "pod", Deployment: "deployment.apps", Namespace: "namespace" };

function kindOf(word: string): string {
  const kind = KINDS[word];
  if (!kind) throw new KubectlError(`resource type "${word}" is not modelled; accepted: ${[...new Set(Object.values(KINDS))].join(", ")}`);
  return kind;
}

const api = new KubeApi(process.env.TESTBED_KUBE_API ?? "");
const out = (text: string) => process.stdout.write(text);

function podObject(p: PodStatus): KubeObject {
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name: p.name, namespace: p.namespace, labels: { ...p.labels } },
    spec: { nodeName: p.nodeName, hostNetwork: p.hostNetwork, containers: p.containers.map((name) => ({ name })) },
    status: { phase: "Running", podIPs: p.ips.map((ip) => ({ ip })), conditions: [{ type: "Ready", status: p.ready ? "True" : "False" }] },
  };
}

/** The objects of a kind in a namespace (undefined: every namespace), as the API would list them. */
function list(kind: string, namespace: string | undefined): KubeObject[] {
  const inNs = (o: KubeObject) => namespace === undefined || o.metadata.namespace === namespace;
  if (kind === "EndpointSlice") return endpointSlices(api.objects(), api.pods(), namespace);
  if (kind === "Pod") return api.pods().map(podObject).filter(inNs);
  return Object.values(api.objects().objects)
    .filter((o) => o.kind === kind && (kind === "Namespace" || inNs(o)))
    .sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
}

function table(kind: string, objects: readonly KubeObject[], headers: boolean): string {
  const rows = objects.map((o) => {
    const spec = (o.spec ?? {}) as { type?: string; clusterIP?: string; ports?: { port: number; nodePort?: number; protocol?: string }[]; nodeName?: string };
    if (kind === "Service") {
      const ports = (spec.ports ?? []).map((p) => `${p.port}${p.nodePort ? `:${p.nodePort}` : ""}/${p.protocol ?? "TCP"}`).join(",");
      return [o.metadata.name, spec.type ?? "ClusterIP", spec.clusterIP ?? "None", "<none>", ports, "1m"];
    }
    if (kind === "Pod") {
      const ready = ((o.status as { conditions: { status: string }[] }).conditions[0]!.status === "True" ? 1 : 0);
      return [o.metadata.name, `${ready}/1`, "Running", "0", "1m"];
    }
    return [o.metadata.name, "1m"];
  });
  const head = kind === "Service" ? ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"] : kind === "Pod" ? ["NAME", "READY", "STATUS", "RESTARTS", "AGE"] : ["NAME", "AGE"];
  const all = headers ? [head, ...rows] : rows;
  const widths = head.map((_, i) => Math.max(...all.map((r) => (r[i] ?? "").length)));
  return all.map((r) => `${r.map((c, i) => c.padEnd(widths[i]! + 3)).join("").trimEnd()}\n`).join("");
}

function get(p: Parsed, namespace: string | undefined): void {
  const [, what, name] = p.words;
  if (!what) throw new KubectlError("get: which resource?");
  let kind: string;
  let wanted = name;
  if (what.includes("/")) {
    kind = kindOf(what.split("/")[0]!);
    wanted = what.split("/")[1];
  } else {
    kind = kindOf(what);
  }
  let objects = list(kind, namespace);
  const selector = p.flags.get("--selector");
  if (selector) objects = objects.filter((o) => matchesLabelSelector(o.metadata.labels, selector));
  const fieldSelector = p.flags.get("--field-selector");
  if (fieldSelector) {
    const m = /^spec\.nodeName=(.*)$/.exec(fieldSelector);
    if (!m) throw new KubectlError(`--field-selector ${fieldSelector}: accepted: spec.nodeName=NODE`);
    objects = objects.filter((o) => (o.spec as { nodeName?: string } | undefined)?.nodeName === m[1]);
  }
  if (wanted !== undefined) {
    objects = objects.filter((o) => o.metadata.name === wanted);
    if (objects.length === 0) {
      throw new KubectlError(`Error from server (NotFound): ${RESOURCE[kind]}s "${wanted}" not found`, false);
    }
  }
  const output = p.flags.get("--output") ?? "";
  if (output === "name") out(objects.map((o) => `${RESOURCE[kind]}/${o.metadata.name}\n`).join(""));
  else if (output === "json") out(`${JSON.stringify(wanted !== undefined ? objects[0] : { apiVersion: "v1", kind: "List", items: objects }, null, 2)}\n`);
  else if (output.startsWith("jsonpath=")) out(jsonpath(output.slice("jsonpath=".length), wanted !== undefined ? objects[0] : { apiVersion: "v1", kind: "List", items: objects }));
  else if (output === "") {
    if (objects.length === 0) process.stderr.write(`No resources found in ${namespace ?? "default"} namespace.\n`);
    else out(table(kind, objects, !p.flags.has("--no-headers")));
  } else throw new KubectlError(`-o ${output} is not modelled; accepted: name, json, jsonpath=...`);
}

function apply(p: Parsed): void {
  const file = p.flags.get("--filename");
  if (!file) throw new KubectlError("apply: -f FILE is required");
  if (!p.flags.has("--server-side")) throw new KubectlError("apply without --server-side is not modelled");
  const stored = api.objects();
  for (const doc of parseAllDocuments(readFileSync(file, "utf8"))) {
    const o = doc.toJSON() as KubeObject | null;
    if (!o) continue;
    const k = objectKey(o.kind, o.metadata.namespace, o.metadata.name);
    const prior = stored.objects[k];
    const changed = !prior || JSON.stringify(prior.spec) !== JSON.stringify(o.spec);
    stored.objects[k] = {
      ...o,
      metadata: { ...o.metadata, generation: (prior?.metadata.generation ?? 0) + (changed ? 1 : 0), creationTimestamp: prior?.metadata.creationTimestamp ?? new Date().toISOString() },
    };
    stored.resourceVersion++;
    out(`${RESOURCE[o.kind] ?? o.kind.toLowerCase()}/${o.metadata.name} serverside-applied\n`);
  }
  api.writeObjects(stored);
}

/** Waits, watching the agents' status, until `done` holds; bounded. */
function until(done: () => boolean, timeoutS: number, what: string): Promise<void> {
  if (done()) return Promise.resolve();
  return new Promise<void>((resolve, reject) => {
    const watcher = watch(api.dir, () => {
      if (!done()) return;
      clearTimeout(timer);
      watcher.close();
      resolve();
    });
    const timer = setTimeout(() => {
      watcher.close();
      reject(new KubectlError(`timed out waiting for ${what}`));
    }, timeoutS * 1000);
    // The status may have changed between the first look and the watch.
    if (done()) {
      clearTimeout(timer);
      watcher.close();
      resolve();
    }
  });
}

/** Deletes DaemonSet pods (its controller makes new ones: the node agents); waits until they are gone unless --wait=false. */
async function deletePods(p: Parsed, names: readonly string[], namespace: string | undefined): Promise<void> {
  const stored = api.objects();
  const system = api.cluster().systemPods;
  for (const name of names) {
    const pod = api.pods().find((q) => q.name === name && q.namespace === (namespace ?? "default"));
    if (!pod) {
      if (p.flags.get("--ignore-not-found") === "true") continue;
      throw new KubectlError(`pods "${name}" not found`, false);
    }
    if (!system.some((s) => s.owner === pod.owner && s.nodeName === pod.nodeName)) throw new KubectlError(`delete pod ${name}: only DaemonSet pods are modelled`);
    stored.podDeletions = { ...stored.podDeletions, [name]: new Date().toISOString() };
    stored.resourceVersion++;
  }
  api.writeObjects(stored);
  for (const name of names) out(`pod "${name}" deleted\n`);
  if (p.flags.get("--wait") === "false") return;
  await until(() => !api.pods().some((q) => names.includes(q.name)), seconds(p.flags.get("--timeout") ?? "60s"), `the deletion of pod(s) ${names.join(", ")}`);
}

async function del(p: Parsed, namespace: string | undefined): Promise<void> {
  const targets = p.words.slice(1);
  const pods = targets[0] !== undefined && !targets[0].includes("/") && kindOf(targets[0]) === "Pod" ? targets.slice(1) : targets.filter((t) => t.includes("/") && kindOf(t.split("/")[0]!) === "Pod").map((t) => t.split("/")[1]!);
  if (pods.length > 0) {
    if (pods.length !== targets.length - (targets[0]!.includes("/") ? 0 : 1)) throw new KubectlError("delete: pods with other kinds in one call are not modelled");
    await deletePods(p, pods, namespace);
    return;
  }
  const stored = api.objects();
  const remove = (kind: string, name: string) => {
    const ns = kind === "Namespace" ? undefined : (namespace ?? "default");
    const k = objectKey(kind, ns, name);
    if (!stored.objects[k]) {
      if (p.flags.get("--ignore-not-found") === "true") return;
      throw new KubectlError(`${RESOURCE[kind]}s "${name}" not found`);
    }
    delete stored.objects[k];
    if (kind === "Namespace") for (const [key, o] of Object.entries(stored.objects)) if (o.metadata.namespace === name) delete stored.objects[key];
    stored.resourceVersion++;
    out(`${RESOURCE[kind]!.split(".")[0]} "${name}" deleted\n`);
  };
  if (targets.length > 0 && !targets[0]!.includes("/")) {
    const kind = kindOf(targets[0]!);
    for (const name of targets.slice(1)) remove(kind, name);
  } else {
    for (const t of targets) {
      const [k, name] = t.split("/") as [string, string];
      remove(kindOf(k), name);
    }
  }
  api.writeObjects(stored);
}

function deployment(target: string | undefined, namespace: string | undefined): KubeObject {
  const m = /^(deployment|deployments|deploy|deployment\.apps)\/(.+)$/.exec(target ?? "");
  if (!m) throw new KubectlError(`rollout: "${target}" is not modelled; accepted: deployment/NAME`);
  const d = api.objects().objects[objectKey("Deployment", namespace ?? "default", m[2]!)];
  if (!d) throw new KubectlError(`deployments.apps "${m[2]}" not found`);
  return d;
}

function seconds(duration: string): number {
  const m = /^(\d+)(s|m|h)?$/.exec(duration);
  if (!m) throw new KubectlError(`--timeout ${duration}: accepted: a number with s, m or h`);
  return Number(m[1]) * ({ s: 1, m: 60, h: 3600 }[m[2] as "s" | "m" | "h"] ?? 1);
}

/** Resolves when the Deployment's current template runs in a ready pod, watching the agents' status. */
async function rolloutStatus(namespace: string | undefined, target: string, timeout: string): Promise<void> {
  const name = target.split("/")[1]!;
  const done = () => {
    const d = deployment(target, namespace);
    const hash = templateHash(d);
    return api.status().pods.some((pod) => pod.namespace === d.metadata.namespace && pod.owner === name && pod.templateHash === hash && pod.ready);
  };
  if (done()) {
    out(`deployment "${name}" successfully rolled out\n`);
    return;
  }
  out(`Waiting for deployment "${name}" rollout to finish: 0 of 1 updated replicas are available...\n`);
  await until(done, seconds(timeout), "the condition");
  out(`deployment "${name}" successfully rolled out\n`);
}

function rolloutRestart(namespace: string | undefined, target: string): void {
  const d = deployment(target, namespace);
  const stored = api.objects();
  const k = objectKey("Deployment", d.metadata.namespace, d.metadata.name);
  const spec = structuredClone(d.spec ?? {}) as { template?: { metadata?: { annotations?: Record<string, string> } } };
  spec.template = { ...spec.template, metadata: { ...spec.template?.metadata, annotations: { ...spec.template?.metadata?.annotations, "kubectl.kubernetes.io/restartedAt": new Date().toISOString() } } };
  stored.objects[k] = { ...d, spec: spec as Record<string, unknown>, metadata: { ...d.metadata, generation: (d.metadata.generation ?? 0) + 1 } };
  stored.resourceVersion++;
  api.writeObjects(stored);
  out(`deployment.apps/${d.metadata.name} restarted\n`);
}

/** The command as the pod's image would run it. */
function inPod(pod: PodStatus, command: string[]): string[] | "cilium-service-list" {
  const cluster = api.cluster();
  if (command[0] === "cilium-dbg") {
    if (!pod.containers.includes("cilium-agent")) throw new KubectlError(`exec: pod ${pod.name} has no cilium-dbg`);
    if (command.slice(1).join(" ") !== "service list -o json") throw new KubectlError(`exec: cilium-dbg ${command.slice(1).join(" ")} is not modelled; accepted: service list -o json`);
    return "cilium-service-list";
  }
  const save = /^(ip6?tables)-save$/.exec(command[0] ?? "");
  if (save && pod.containers.includes("kube-proxy")) return [`${save[1]}-${cluster.iptablesBackend}-save`, ...command.slice(1)];
  return command;
}

/** The pod `kubectl exec` runs in: a pod by name, or a Deployment's (deployment/NAME: its ready pod of the current template). */
function execTarget(target: string, namespace: string): PodStatus {
  const d = /^(deployment|deployments|deploy|deployment\.apps)\/(.+)$/.exec(target);
  if (d) {
    const hash = templateHash(deployment(target, namespace));
    const pod = api.status().pods.find((q) => q.namespace === namespace && q.owner === d[2] && q.templateHash === hash && q.ready);
    if (!pod) throw new KubectlError(`cannot exec into deployment ${d[2]}: it has no ready pod`);
    return pod;
  }
  const name = target.replace(/^pods?\//, "");
  const pod = api.pods().find((q) => q.name === name && q.namespace === namespace);
  if (!pod) throw new KubectlError(`pods "${name}" not found`);
  return pod;
}

/** Runs the command in a workload's container through its node's kubelet; resolves with its exit code. */
function execByKubelet(pod: PodStatus, command: readonly string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const conn = connect(path.join(api.dir, EXEC_SOCKET));
    conn.once("error", (e) => reject(new KubectlError(`exec into ${pod.name}: the kubelet does not answer (${e.message})`)));
    conn.once("connect", () => conn.write(`${JSON.stringify({ namespace: pod.namespace, pod: pod.name, command })}\n`));
    let exit: number | undefined;
    const frames = createInterface({ input: conn });
    // The socket's errors are conn's, reported above.
    frames.on("error", () => undefined);
    frames.on("line", (line) => {
      const f = JSON.parse(line) as ExecFrame;
      if ("out" in f) process.stdout.write(Buffer.from(f.out, "base64"));
      else if ("err" in f) process.stderr.write(Buffer.from(f.err, "base64"));
      else if ("exit" in f) exit = f.exit;
      else reject(new KubectlError(`exec into ${pod.name}: ${f.error}`));
    });
    conn.once("close", () => (exit === undefined ? reject(new KubectlError(`exec into ${pod.name}: the kubelet closed the stream without an exit code`)) : resolve(exit)));
  });
}

async function execIn(p: Parsed, namespace: string | undefined): Promise<number> {
  const pod = execTarget(p.words[1] ?? "", namespace ?? "default");
  if (p.command.length === 0) throw new KubectlError("exec: a command after -- is required");
  const container = p.flags.get("--container");
  if (container !== undefined && !pod.containers.includes(container)) throw new KubectlError(`container ${container} is not valid for pod ${pod.name}`);
  if (!pod.hostNetwork) return execByKubelet(pod, p.command);
  const command = inPod(pod, p.command);
  if (command === "cilium-service-list") {
    const services = Object.values(api.objects().objects).filter((o) => o.kind === "Service").map(serviceSpecOf);
    out(printServiceList(api.status().bpfMaps ?? {}, servicesByFrontend(services)));
    return 0;
  }
  const r = spawnSync("nsenter", [`--net=/run/netns/${pod.netns}`, "--", ...command], { stdio: "inherit" });
  if (r.error) throw new KubectlError(`exec ${command[0]}: ${r.error.message}`);
  return r.status ?? 1;
}

async function main(argv: string[]): Promise<number> {
  const p = parse(argv);
  const kubeconfig = p.flags.get("--kubeconfig") ?? process.env.KUBECONFIG;
  if (!kubeconfig || !existsSync(kubeconfig)) {
    throw new KubectlError(kubeconfig ? `stat ${kubeconfig}: no such file or directory` : "no kubeconfig: the connection to the server localhost:8080 was refused");
  }
  const namespace = p.flags.get("--namespace");
  switch (p.words[0]) {
    case "apply":
      apply(p);
      return 0;
    case "get":
      get(p, namespace);
      return 0;
    case "delete":
      await del(p, namespace);
      return 0;
    case "rollout":
      if (p.words[1] === "status") await rolloutStatus(namespace, p.words[2] ?? "", p.flags.get("--timeout") ?? "10m");
      else if (p.words[1] === "restart") rolloutRestart(namespace, p.words[2] ?? "");
      else throw new KubectlError(`rollout ${p.words[1]} is not modelled; accepted: status, restart`);
      return 0;
    case "exec":
      return await execIn(p, namespace);
    default:
      throw new KubectlError(`kubectl ${p.words[0] ?? ""} is not modelled; accepted: apply, get, delete, rollout, exec`);
  }
}

// Exit codes through process.exitCode: process.exit() would cut off output still queued for a pipe.
main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    const message = err instanceof Error ? err.message : String(err);
    process.stderr.write(err instanceof KubectlError ? `${err.prefixed ? "error: " : ""}${message}\n` : `kubectl stand-in of the rehearsal: ${message}\n`);
    process.exitCode = 1;
  },
);
