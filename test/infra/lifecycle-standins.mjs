#!/usr/bin/env node
// Recording stand-ins for the tools the cluster's scripts call on the hosts: kubectl (a small API
// server: objects, EndpointSlices, what each dataplane has programmed), helm, kubeadm, ssh (the
// master's answer to the worker's join key), sudo and cloud-init. One JSON file is the cluster and
// the log of every call; the lifecycle test reads it for the end state. Installed as symlinks named
// after the tool; an invocation the stand-in does not model fails loudly (exit 99), so a script
// that starts calling something new cannot pass unnoticed.
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { parseAllDocuments } from "yaml";

const tool = path.basename(process.argv[1]);
const args = process.argv.slice(2);
const STATE = process.env.LIFECYCLE_STATE;
if (!STATE) fail("LIFECYCLE_STATE is not set");

function fail(message, code = 99) {
  process.stderr.write(`${tool} stand-in: ${message}\n`);
  process.exit(code);
}

function load() {
  return fs.existsSync(STATE)
    ? JSON.parse(fs.readFileSync(STATE, "utf8"))
    : { calls: [], objects: {}, helm: {}, nodes: {}, daemonsets: [], host: "" };
}
const state = load();
function save() {
  fs.writeFileSync(STATE, JSON.stringify(state));
}
state.calls.push({ host: process.env.LIFECYCLE_HOST ?? "", tool, args });
save();

const flag = (name) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const objectKey = (kind, ns, name) => `${kind}/${ns ?? ""}/${name}`;
const objectsOf = (kind, ns) => Object.values(state.objects).filter((o) => o.kind === kind && (ns === undefined || o.metadata.namespace === ns));
const familyOf = (ip) => (ip.includes(":") ? "IPv6" : "IPv4");

/** The cluster's own Services, which share the dataplane's tables with the workloads' ones. */
const SYSTEM_SERVICES = [
  { metadata: { namespace: "default", name: "kubernetes" }, spec: { clusterIPs: ["10.96.0.1", "fd00:10:96::1"], ports: [{ name: "https", protocol: "TCP", port: 443 }] } },
  { metadata: { namespace: "kube-system", name: "kube-dns" }, spec: { clusterIPs: ["10.96.0.10", "fd00:10:96::a"], ports: [{ name: "dns", protocol: "UDP", port: 53 }, { name: "dns-tcp", protocol: "TCP", port: 53 }] } },
];


function nodeIpsFrom(file) {
  for (const doc of parseAllDocuments(fs.readFileSync(file, "utf8"))) {
    const d = doc.toJSON();
    const arg = d?.nodeRegistration?.kubeletExtraArgs?.find((a) => a.name === "node-ip");
    if (arg) return arg.value.split(",");
  }
  return [];
}

switch (tool) {
  case "sudo": {
    const rest = args[0] === "-n" ? args.slice(1) : args;
    try {
      execFileSync(rest[0], rest.slice(1), { stdio: "inherit" });
    } catch (e) {
      process.exit(e.status ?? 1);
    }
    break;
  }
  case "cloud-init":
    if (args[0] !== "status") fail(`cloud-init ${args.join(" ")}`);
    break;
  case "ssh": {
    // The master's forced command: a join command for its cluster, whatever was asked.
    const master = state.nodes.master;
    if (!master) fail("ssh to a master that has no cluster", 255);
    process.stdout.write(`kubeadm join ${master.api}:6443 --token abcdef.0123456789abcdef --discovery-token-ca-cert-hash ${process.env.LIFECYCLE_CA_HASH} \n`);
    break;
  }
  case "kubeadm":
    kubeadm();
    break;
  case "helm":
    helm();
    break;
  case "kubectl":
    kubectl();
    break;
  default:
    fail(`no stand-in for ${tool}`);
}

function kubeadm() {
  if (args[0] === "reset") {
    delete state.nodes[process.env.LIFECYCLE_HOST];
    save();
    return;
  }
  if (args[0] === "init" && args[1] === "phase") return;
  if (args[0] === "token" && args[1] === "create") {
    process.stdout.write(`kubeadm join ${state.nodes.master.api}:6443 --token abcdef.0123456789abcdef --discovery-token-ca-cert-hash ${process.env.LIFECYCLE_CA_HASH} \n`);
    return;
  }
  if (args[0] === "init" || args[0] === "join") {
    const config = flag("--config");
    const text = fs.readFileSync(config, "utf8");
    const role = args[0] === "init" ? "master" : "worker";
    const k8sDir = process.env.LIFECYCLE_KUBERNETES_DIR;
    fs.mkdirSync(path.join(k8sDir, "pki"), { recursive: true });
    if (role === "master") {
      fs.writeFileSync(path.join(k8sDir, "admin.conf"), `apiVersion: v1\nkind: Config\nclusters: [{name: kubernetes, cluster: {server: "https://stand-in:6443"}}]\n`);
      fs.mkdirSync(path.join(k8sDir, "manifests"), { recursive: true });
      fs.writeFileSync(path.join(k8sDir, "manifests/kube-apiserver.yaml"), "kind: Pod\n");
      const ca = path.join(k8sDir, "pki/ca.crt");
      execFileSync("openssl", ["req", "-x509", "-newkey", "ed25519", "-nodes", "-keyout", path.join(k8sDir, "pki/ca.key"), "-out", ca, "-subj", "/CN=kubernetes", "-days", "2"], { stdio: "ignore" });
      const advertise = /advertiseAddress: (\S+)/.exec(text)?.[1];
      state.nodes.master = { name: "testbed-master", ips: nodeIpsFrom(config), api: advertise };
      state.daemonsets = [...new Set([...state.daemonsets, "coredns"])];
      const mode = /^mode: (\S+)$/m.exec(text)?.[1];
      if (mode) {
        state.daemonsets.push("kube-proxy");
        state.kubeProxyMode = mode;
      }
    } else {
      fs.writeFileSync(path.join(k8sDir, "kubelet.conf"), "kind: Config\n");
      // Each worker joins as the node its server is called (testbed-worker, testbed-worker-2, ...).
      const host = process.env.LIFECYCLE_HOST;
      state.nodes[host] = { name: `testbed-${host}`, ips: nodeIpsFrom(config) };
    }
    save();
    return;
  }
  fail(`kubeadm ${args.join(" ")}`);
}

function helm() {
  const release = args[0] === "upgrade" ? args[2] : args[1];
  if (args[0] === "upgrade" && args[1] === "--install") {
    const values = parseAllDocuments(fs.readFileSync(flag("--values"), "utf8"))[0].toJSON();
    state.helm[release] = { version: flag("--version"), values, revision: (state.helm[release]?.revision ?? 0) + 1 };
    if (!state.daemonsets.includes("cilium")) state.daemonsets.push("cilium");
    save();
    return;
  }
  if (args[0] === "get" && args[1] === "metadata") {
    const r = state.helm[args[2]];
    if (!r) fail(`release ${args[2]} not found`, 1);
    process.stdout.write(`NAME: ${args[2]}\nCHART: cilium\nVERSION: ${r.version}\nREVISION: ${r.revision}\n`);
    return;
  }
  if (args[0] === "uninstall") {
    delete state.helm[args[1]];
    state.daemonsets = state.daemonsets.filter((d) => d !== "cilium");
    save();
    return;
  }
  fail(`helm ${args.join(" ")}`);
}

function kubectl() {
  const ns = flag("-n");
  const rest = args.filter((a, i) => !(a === "-n" || args[i - 1] === "-n" || a === "--kubeconfig" || args[i - 1] === "--kubeconfig"));
  const verb = rest[0];
  const out = (text) => process.stdout.write(text);
  if (verb === "apply") {
    for (const doc of parseAllDocuments(fs.readFileSync(flag("-f"), "utf8"))) {
      const o = doc.toJSON();
      if (!o) continue;
      state.objects[objectKey(o.kind, o.metadata.namespace, o.metadata.name)] = o;
    }
    save();
    return;
  }
  if (verb === "delete" && rest[1] === "namespace") {
    const names = rest.slice(2).filter((a) => !a.startsWith("--"));
    for (const [k, o] of Object.entries(state.objects)) if (names.includes(o.metadata.namespace) || (o.kind === "Namespace" && names.includes(o.metadata.name))) delete state.objects[k];
    save();
    return;
  }
  if (verb === "delete") {
    for (const target of rest.slice(1).filter((a) => !a.startsWith("--"))) {
      if (target.startsWith("deployment/")) {
        delete state.objects[objectKey("Deployment", ns, target.slice("deployment/".length))];
        continue;
      }
      const key = objectKey("Service", ns, target.replace(/^service\//, ""));
      // The worker's dataplane drops a deleted Service only at its next syncs (dataplaneLagReads).
      if (state.objects[key]) (state.stale ??= {})[key] = { service: state.objects[key], readsLeft: state.dataplaneLagReads ?? 0 };
      delete state.objects[key];
    }
    save();
    return;
  }
  if (verb === "rollout" && rest[1] === "status") {
    const [kind, name] = rest[2].split("/");
    const ok = kind === "daemonset" ? state.daemonsets.includes(name) : objectsOf("Deployment", ns).some((d) => d.metadata.name === name);
    if (!ok) fail(`${rest[2]} not found in ${ns}`, 1);
    return;
  }
  if (verb === "rollout" && rest[1] === "restart") return;
  if (verb === "wait") return;
  if (verb === "exec") return exec(rest);
  if (verb === "get") return get(rest, ns, out);
  fail(`kubectl ${args.join(" ")}`);
}

function get(rest, ns, out) {
  const what = rest[1];
  const output = flag("-o") ?? "";
  if (what === "daemonset") {
    if (!state.daemonsets.includes(rest[2])) fail(`daemonset ${rest[2]} not found`, 1);
    return;
  }
  if (what === "configmap" && rest[2] === "kube-proxy") {
    out(state.kubeProxyMode ? `apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nmode: ${state.kubeProxyMode}\n` : "");
    return;
  }
  if (what === "nodes") {
    out(Object.values(state.nodes).map((n) => `${n.name}\tv1.32.9\tcontainerd://1.7.24\t${n.ips.join(" ")} \n`).join(""));
    return;
  }
  if (what === "pods" && /^app\.kubernetes\.io\/name=/.test(flag("-l") ?? "")) {
    // A Deployment's pod runs on the node its affinity names, or on the worker.
    const name = flag("-l").split("=")[1];
    const d = objectsOf("Deployment", ns).find((o) => o.spec?.selector?.matchLabels?.["app.kubernetes.io/name"] === name);
    if (!d) return;
    const terms = d.spec.template.spec.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution?.nodeSelectorTerms ?? [];
    const named = terms.flatMap((t) => t.matchExpressions ?? []).find((e) => e.key === "kubernetes.io/hostname")?.values?.[0];
    if (output !== "jsonpath={.items[*].spec.nodeName}") fail(`kubectl get pods -o ${output}`);
    out(named ?? "testbed-worker");
    return;
  }
  if (what === "pods") {
    const label = flag("-l") ?? "";
    const daemonset = /k8s-app=(\S+)/.exec(label)?.[1];
    if (daemonset && state.daemonsets.includes(daemonset)) out(`pod/${daemonset}-worker\n`);
    return;
  }
  if (what === "services") {
    const services = objectsOf("Service", ns);
    if (output === "name") out(services.map((s) => `service/${s.metadata.name}\n`).join(""));
    else if (output === 'jsonpath={range .items[*]}{.metadata.name}{" "}{.spec.clusterIPs[*]}{"\\n"}{end}') out(services.map((s) => `${[s.metadata.name, ...(s.spec.clusterIPs ?? [])].join(" ")}\n`).join(""));
    else if (args.includes("--no-headers")) out(services.map((s) => `${s.metadata.name}   ${s.spec.type}\n`).join(""));
    else fail(`kubectl get services ${output}`);
    return;
  }
  if (what === "endpointslices") {
    // The EndpointSlice controller has caught up: one ready slice per Service and family with a backend.
    const backends = objectsOf("Deployment", ns).length > 0;
    out(objectsOf("Service", ns).flatMap((s) => (s.spec.clusterIPs ?? []).map((ip) => `${s.metadata.name} ${familyOf(ip)} ${backends}\n`)).join(""));
    return;
  }
  fail(`kubectl get ${rest.slice(1).join(" ")}`);
}

/**
 * What the worker's dataplane holds: the API's Services, the cluster's own, and deleted ones it has
 * not dropped yet; each read is one sync, after which a stale Service has one read less to live
 * (dataplaneLagReads; -1: never dropped).
 */
function programmedServices() {
  const stale = Object.values(state.stale ?? {}).map((s) => s.service);
  for (const [key, s] of Object.entries(state.stale ?? {})) {
    if (s.readsLeft === 0) delete state.stale[key];
    else if (s.readsLeft > 0) s.readsLeft -= 1;
  }
  save();
  return [...SYSTEM_SERVICES, ...Object.values(state.objects).filter((o) => o.kind === "Service"), ...stale];
}

/** Per Service port and ClusterIP of a family: [ip, namespace/name, port]. */
function frontends(services, family) {
  return services.flatMap((s) =>
    (s.spec.clusterIPs ?? []).filter((ip) => family === undefined || familyOf(ip) === family).flatMap((ip) => (s.spec.ports ?? []).map((p) => [ip, `${s.metadata.namespace}/${s.metadata.name}`, p])),
  );
}

/** What the worker's dataplane has programmed, in the tool's own format. */
function exec(rest) {
  const dd = rest.indexOf("--");
  const command = rest.slice(dd + 1);
  if (command[0] === "cilium-dbg" && command[1] === "status") {
    const kpr = state.helm.cilium?.values?.kubeProxyReplacement === true;
    const routing = state.helm.cilium?.values?.routingMode === "native" ? "Native" : "Tunnel [vxlan]";
    process.stdout.write(`KubeProxyReplacement:    ${kpr ? "True" : "False"}   [tb-dc]\nRouting:                 Network: ${routing}   Host: Legacy\n`);
    return;
  }
  if (command[0] === "cilium-dbg" && command[1] === "service") {
    const list = frontends(programmedServices()).map(([ip, id, p], i) => {
      const [namespace, name] = id.split("/");
      return { spec: { id: i + 1, "frontend-address": { ip, port: p.port, protocol: p.protocol, scope: "external" }, "backend-addresses": [{ ip: "10.244.1.5", port: p.port, state: "active" }], flags: { type: "ClusterIP", trafficPolicy: "Cluster", name, namespace } }, status: {} };
    });
    process.stdout.write(JSON.stringify(list, null, 2));
    return;
  }
  if (command[0] === "nft" && command[1] === "list" && command[2] === "table") {
    if (state.kubeProxyMode !== "nftables") fail(`no table ${command[3]} ${command[4]}`, 1);
    process.stdout.write(`table ${command[3]} kube-proxy {\n}\n`);
    return;
  }
  if (command[0] === "nft" && command[1] === "list" && command[2] === "map") {
    const family = command[3] === "ip" ? "IPv4" : "IPv6";
    const elements = frontends(programmedServices(), family).map(([ip, id, p], i) => `${ip} . ${p.protocol.toLowerCase()} . ${p.port} : goto service-${String(i).padStart(8, "A")}-${id}/${p.protocol.toLowerCase()}/${p.name}`);
    process.stdout.write(`table ${command[3]} kube-proxy {\n\tmap service-ips {\n\t\ttype ${family === "IPv4" ? "ipv4_addr" : "ipv6_addr"} . inet_proto . inet_service : verdict\n\t\telements = { ${elements.join(",\n\t\t\t     ")} }\n\t}\n}\n`);
    return;
  }
  if (command[0] === "iptables-save" || command[0] === "ip6tables-save") {
    if (state.kubeProxyMode === "nftables") {
      process.stdout.write("*nat\n:POSTROUTING ACCEPT [0:0]\nCOMMIT\n");
      return;
    }
    const family = command[0] === "iptables-save" ? "IPv4" : "IPv6";
    const lines = frontends(programmedServices(), family).map(([ip, id, p], i) => {
      const proto = p.protocol.toLowerCase();
      return `-A KUBE-SERVICES -d ${ip}/${family === "IPv4" ? 32 : 128} -p ${proto} -m comment --comment "${id}:${p.name} cluster IP" -m ${proto} --dport ${p.port} -j KUBE-SVC-${String(i).padStart(16, "A")}`;
    });
    process.stdout.write(`*nat\n${lines.join("\n")}\nCOMMIT\n`);
    return;
  }
  fail(`kubectl exec -- ${command.join(" ")}`);
}
