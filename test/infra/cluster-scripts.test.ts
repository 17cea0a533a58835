// The cluster's remote scripts: real shellcheck on every one, and real bash runs against stand-ins
// for kubeadm/kubectl/cloud-init. Scripts that touch the node (init, join, reset) run as root in a
// private mount and network namespace, so iptables, links and files of this host stay untouched.
import { execFileSync, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { PLACEHOLDERS, parseScenario } from "../../scenario/schema.js";
import {
  ciliumInstallScript,
  ciliumUninstallScript,
  kubeadmInitScript,
  joinAuthorizeScript,
  joinKeyComment,
  joinForcedCommand,
  joinKeyScript,
  kubeadmJoinScript,
  nodesReadyScript,
  parseJoinTrust,
  parseNodePrepMarker,
  parseNodeTable,
  resetNodeScript,
  waitForNodeScript,
  type ExpectedNode,
  type JoinTrust,
  type NodePaths,
} from "../../infra/cluster/bootstrap.js";
import { renderKubeadmJoin } from "../../infra/cluster/kubeadm.js";
import { apiServerUrl, apiTunnelCommand, isLoopback, kubeconfigWithServer, parseEndpoint } from "../../infra/cluster/kubeconfig.js";
import { nodePrepScript } from "../../infra/cluster/node-prep.js";
import { asRootCommand, scriptOfRootCommand, shellAssignments, shellQuote } from "../../infra/cluster/shell.js";

const work = fs.mkdtempSync(path.join(os.tmpdir(), "cluster-scripts-"));
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

const scenario = parseScenario({ dataplane: "ebpf", adminCidr: "203.0.113.7/32", sshPublicKey: PLACEHOLDERS.sshPublicKey });
const nodes: ExpectedNode[] = [
  { role: "master", addresses: ["198.18.1.10", "2001:2:0:20::10"] },
  { role: "worker", addresses: ["198.18.1.11", "2001:0002:0:20:0::11"] },
];

const SCRIPTS: Record<string, string> = {
  "node-prep (master)": nodePrepScript(scenario, "master"),
  "node-prep (worker)": nodePrepScript(scenario, "worker"),
  "wait for node": waitForNodeScript("1.32.9"),
  "kubeadm init (ebpf)": kubeadmInitScript({ configPath: "/opt/testbed/kubeadm/init.yaml", configHash: "0".repeat(64), kubeProxy: false }),
  "kubeadm init (kube-proxy)": kubeadmInitScript({ configPath: "/opt/testbed/kubeadm/init.yaml", configHash: "0".repeat(64), kubeProxy: true }),
  "node reset": resetNodeScript(),
  "join key": joinKeyScript(),
  "join authorize": joinAuthorizeScript({ user: "ubuntu", publicKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIx testbed-join" }),
  "kubeadm join": kubeadmJoinScript({ configPath: "/opt/testbed/kubeadm/join.yaml", user: "ubuntu", master: "198.19.0.13", trust: { hostKey: "ssh-ed25519 AAAAC3Nza", caCertHash: `sha256:${"a".repeat(64)}` } }),
  "cilium install": ciliumInstallScript({ version: "1.17.18", valuesPath: "/opt/testbed/helm/cilium-values.yaml", valuesHash: "0".repeat(64), chartRepo: "https://helm.cilium.io/", cluster: "c1" }),
  "cilium uninstall": ciliumUninstallScript(),
  "nodes ready (ebpf)": nodesReadyScript({ dataplane: "ebpf", nodes }),
  "nodes ready (iptables)": nodesReadyScript({ dataplane: "iptables", nodes }),
  "nodes ready (nftables)": nodesReadyScript({ dataplane: "nftables", nodes }),
};

describe("shellcheck", () => {
  it.each(Object.entries(SCRIPTS))("%s passes", (name, script) => {
    const file = path.join(work, `${name.replace(/\W+/g, "-")}.sh`);
    fs.writeFileSync(file, script.startsWith("#!") ? script : `#!/usr/bin/env bash\n${script}\n`);
    const r = spawnSync("shellcheck", ["--shell=bash", "--severity=style", file], { encoding: "utf8" });
    expect(r.error).toBeUndefined();
    expect(r.stdout).toBe("");
    expect(r.status).toBe(0);
  });

  it("is the real shellcheck, which flags an unquoted expansion", () => {
    const file = path.join(work, "bad.sh");
    fs.writeFileSync(file, '#!/usr/bin/env bash\nrm -rf $1/x\n');
    const r = spawnSync("shellcheck", ["--shell=bash", file], { encoding: "utf8" });
    expect(r.status).not.toBe(0);
    expect(r.stdout).toMatch(/SC2086/);
  });
});

describe("quoting", () => {
  it("shellQuote survives sh for any text", () => {
    for (const text of ["plain", "it's", `"$HOME" \`id\` $(id) \\ '' \n newline`, ""]) {
      expect(execFileSync("sh", ["-c", `printf %s ${shellQuote(text)}`], { encoding: "utf8" })).toBe(text);
    }
  });

  it("asRootCommand hands bash the script unchanged", () => {
    const script = "set -euo pipefail\nx='a b'\nprintf '%s|' \"$x\" \"$(echo \"it's\")\"";
    // The same command line with `sudo` replaced by `env`: the script text bash receives is what ran.
    const line = asRootCommand(script, { limitS: 60, waitingFor: "nothing" }).replace(/^sudo /, "env ");
    expect(execFileSync("sh", ["-c", line], { encoding: "utf8" })).toBe("a b|it's|");
    expect(scriptOfRootCommand(asRootCommand(script, { limitS: 60, waitingFor: "nothing" }))).toBe(script);
  });

  it("asRootCommand ends a script at its limit and says what it waited for; the status stays the script's", () => {
    const run = (script: string, limitS: number) =>
      spawnSync("sh", ["-c", `${asRootCommand(script, { limitS, waitingFor: "the thing to appear" }).replace(/^sudo /, "env ")} || echo "status $?"`], { encoding: "utf8" });
    const hung = run("sleep 30", 1);
    expect(hung.stderr).toBe("gave up after 1 s (the script's own limit) waiting for the thing to appear\n");
    expect(hung.stdout).toBe("status 124\n");
    const failed = run("echo no >&2; exit 3", 5);
    expect(failed.stderr).toBe("no\n");
    expect(failed.stdout).toBe("status 3\n");
    expect(() => asRootCommand("true", { limitS: 0, waitingFor: "x" })).toThrow(/time limit 0: accepted: a whole number of seconds >= 1/);
  });

  it("refuses a variable name a shell would not take", () => {
    expect(() => shellAssignments({ "bad-name": "x" })).toThrow(/bad-name/);
  });
});

/** A directory of stand-in commands, each a bash script, first on PATH. */
function stubs(name: string, commands: Record<string, string>): string {
  const dir = path.join(work, `bin-${name}`);
  fs.mkdirSync(dir, { recursive: true });
  for (const [cmd, body] of Object.entries(commands)) {
    fs.writeFileSync(path.join(dir, cmd), `#!/usr/bin/env bash\n${body}\n`, { mode: 0o755 });
  }
  return dir;
}

function runBash(script: string, bin: string, env: Record<string, string> = {}, input = "") {
  return spawnSync("bash", ["-c", script], { encoding: "utf8", input, env: { ...process.env, ...env, PATH: `${bin}:${process.env.PATH}` } });
}

describe("waiting for a node", () => {
  const bin = stubs("wait", {});
  const marker = path.join(work, "node-prep.done");

  it("prints the marker of a node prepared for the scenario's version", () => {
    fs.writeFileSync(marker, "kubernetes=1.32.9-1.1\ncontainerd=1.7.24-0ubuntu1~20.04.2\n");
    const r = runBash(waitForNodeScript("1.32.9", { marker }), bin);
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    expect(parseNodePrepMarker(r.stdout)).toEqual({ kubernetes: "1.32.9-1.1", containerd: "1.7.24-0ubuntu1~20.04.2" });
  });

  it("refuses a node prepared for another Kubernetes version", () => {
    fs.writeFileSync(marker, "kubernetes=1.32.8-1.1\n");
    const r = runBash(waitForNodeScript("1.32.9", { marker }), bin);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/prepared with Kubernetes 1\.32\.8-1\.1, the scenario asks for 1\.32\.9/);
  });

  it("fails when node preparation never finished", () => {
    const r = runBash(waitForNodeScript("1.32.9", { marker: path.join(work, "absent") }), bin);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/node preparation did not finish/);
  });
});

describe("nodes Ready", () => {
  const table = "testbed-master\tv1.32.9\tcontainerd://1.7.24\t198.18.1.10 2001:2:0:20::10 \ntestbed-worker\tv1.32.9\tcontainerd://1.7.24\t198.18.1.11 2001:2:0:20::11 ";
  const bin = stubs("kubectl", {
    kubectl: `
case "$*" in
  "wait "*) exit 0 ;;
  *"rollout status daemonset/cilium"*) exit 0 ;;
  *"rollout status daemonset/kube-proxy"*) exit "\${KUBE_PROXY_ROLLOUT:-0}" ;;
  *"get daemonset kube-proxy"*) exit "\${KUBE_PROXY_PRESENT:-1}" ;;
  *"get configmap kube-proxy"*) printf '%s' "\${KUBE_PROXY_CONF:-}" ;;
  *"get pods -l k8s-app=kube-proxy -o name"*) printf 'pod/kube-proxy-a\\npod/kube-proxy-b\\n' ;;
  *"-- nft list table ip kube-proxy"*) exit "\${NFT_TABLE_MISSING:-0}" ;;
  # As long as a real table of thousands of Services: a reader that stops at the first match leaves the
  # writer a SIGPIPE, which pipefail must never turn into a pass.
  *"-- iptables-save -t nat"*) printf '*nat\\n%s\\n' "\${NAT_CHAINS:-:POSTROUTING ACCEPT [0:0]}"; yes ':KUBE-SVC-FILLER - [0:0]' | head -n 200000; printf 'COMMIT\\n' ;;
  *"get pods -l k8s-app=cilium -o name"*) printf 'pod/cilium-a\\npod/cilium-b\\n' ;;
  *"cilium-dbg status"*) printf 'KVStore:   Disabled\\nKubeProxyReplacement:    %s   [ens4 198.18.1.10]\\nRouting:                 Network: %s   Host: Legacy\\n' "\${KPR:-True}" "\${ROUTING:-Tunnel [vxlan]}"; yes 'Host Routing:  Legacy' | head -n 100000 ;;
  *"get nodes -o jsonpath"*) printf '%s' "$NODE_TABLE" ;;
  *) echo "unexpected kubectl $*" >&2; exit 99 ;;
esac`,
  });
  const ebpf = nodesReadyScript({ dataplane: "ebpf", nodes });
  const iptables = nodesReadyScript({ dataplane: "iptables", nodes });

  it("ebpf: passes with no kube-proxy and KubeProxyReplacement True on every agent; prints the node table", () => {
    const r = runBash(ebpf, bin, { NODE_TABLE: table });
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    const parsed = parseNodeTable(r.stdout, nodes);
    expect(parsed).toEqual([
      { role: "master", name: "testbed-master", kubeletVersion: "v1.32.9", containerRuntime: "containerd://1.7.24", addresses: { ipv4: "198.18.1.10", ipv6: "2001:2:0:20::10" } },
      { role: "worker", name: "testbed-worker", kubeletVersion: "v1.32.9", containerRuntime: "containerd://1.7.24", addresses: { ipv4: "198.18.1.11", ipv6: "2001:2:0:20::11" } },
    ]);
  });

  it("ebpf: fails when kube-proxy is deployed", () => {
    const r = runBash(ebpf, bin, { NODE_TABLE: table, KUBE_PROXY_PRESENT: "0" });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/kube-proxy is deployed, but dataplane ebpf replaces it/);
  });

  it("ebpf: fails when an agent runs without the kube-proxy replacement", () => {
    const r = runBash(ebpf, bin, { NODE_TABLE: table, KPR: "False" });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/pod\/cilium-a does not report KubeProxyReplacement True/);
  });

  it("fails when an agent routes pods between the nodes otherwise than the stack asks", () => {
    const tunnelled = runBash(ebpf, bin, { NODE_TABLE: table });
    expect(tunnelled.status).toBe(0);
    const native = nodesReadyScript({ dataplane: "ebpf", podRouting: "native", nodes });
    const r = runBash(native, bin, { NODE_TABLE: table });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/pod\/cilium-a does not route pods between the nodes as the stack asks \(Network: Native\): Routing: +Network: Tunnel \[vxlan\]/);
    expect(runBash(native, bin, { NODE_TABLE: table, ROUTING: "Native" }).status).toBe(0);
  });

  it("iptables: passes with kube-proxy in iptables mode and no replacement", () => {
    const r = runBash(iptables, bin, { NODE_TABLE: table, KPR: "False", KUBE_PROXY_CONF: "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nmode: iptables\n" });
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
  });

  const nftables = nodesReadyScript({ dataplane: "nftables", nodes });
  const nftConf = "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nmode: nftables\n";

  it("nftables: passes with kube-proxy in nftables mode, its table on every node and no KUBE-SERVICES chain", () => {
    const r = runBash(nftables, bin, { NODE_TABLE: table, KPR: "False", KUBE_PROXY_CONF: nftConf });
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
  });

  it("nftables: fails when a node lacks kube-proxy's table, or has iptables mode's chains", () => {
    const noTable = runBash(nftables, bin, { NODE_TABLE: table, KPR: "False", KUBE_PROXY_CONF: nftConf, NFT_TABLE_MISSING: "1" });
    expect(noTable.status).toBe(1);
    expect(noTable.stderr).toMatch(/pod\/kube-proxy-a: no nftables table 'ip kube-proxy' on its node/);
    const iptablesChains = runBash(nftables, bin, { NODE_TABLE: table, KPR: "False", KUBE_PROXY_CONF: nftConf, NAT_CHAINS: ":KUBE-SERVICES - [0:0]" });
    expect(iptablesChains.status).toBe(1);
    expect(iptablesChains.stderr).toMatch(/has a KUBE-SERVICES iptables chain: kube-proxy's iptables mode ran there/);
    const wrongMode = runBash(nftables, bin, { NODE_TABLE: table, KPR: "False", KUBE_PROXY_CONF: "mode: iptables\n" });
    expect(wrongMode.stderr).toMatch(/kube-proxy runs in mode 'iptables', dataplane nftables needs nftables/);
  });

  it("iptables: fails on another kube-proxy mode", () => {
    const r = runBash(iptables, bin, { NODE_TABLE: table, KPR: "False", KUBE_PROXY_CONF: "mode: ipvs\n" });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/kube-proxy runs in mode 'ipvs', dataplane iptables needs iptables/);
  });

  it("fails when a node's InternalIPs are not its data-center addresses (kubelet --node-ip)", () => {
    const wrong = table.replace("198.18.1.11 2001:2:0:20::11", "198.19.0.11 2001:2:0:20::11");
    const r = runBash(ebpf, bin, { NODE_TABLE: wrong });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/no node has exactly the InternalIPs 198\.18\.1\.11,2001:2:0:20::11/);
  });

  it("fails when a node is missing", () => {
    const r = runBash(ebpf, bin, { NODE_TABLE: table.split("\n")[0]! });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/the cluster has 1 nodes, expected 2/);
  });

  it("parseNodeTable names the role it cannot find", () => {
    expect(() => parseNodeTable(table.split("\n")[0]!, nodes)).toThrow(/no node in the table has the worker's addresses 198\.18\.1\.11,2001:2:0:20::11/);
  });
});

describe("kubeconfig", () => {
  const admin = `apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: Q0E=
    server: https://198.19.0.10:6443
  name: kubernetes
contexts: []
kind: Config
users:
- name: kubernetes-admin
  user:
    client-certificate-data: Q0VSVA==
    client-key-data: S0VZ
`;

  it("points every cluster at the reachable server and keeps the credentials", () => {
    const out = parseYaml(kubeconfigWithServer(admin, apiServerUrl("2001:2:0:30::10", 6443)));
    expect(out.clusters[0].cluster).toEqual({ "certificate-authority-data": "Q0E=", server: "https://[2001:2:0:30::10]:6443" });
    expect(out.users[0].user["client-key-data"]).toBe("S0VZ");
  });

  it("refuses text that is no kubeconfig without echoing it", () => {
    const err = (() => {
      try {
        kubeconfigWithServer("client-key-data: SECRETSTUFF\n", "https://x:6443");
      } catch (e) {
        return (e as Error).message;
      }
      return "";
    })();
    expect(err).toMatch(/admin\.conf is not a kubeconfig/);
    expect(err).not.toMatch(/SECRETSTUFF/);
  });
});

describe("the API endpoint the Pulumi host uses", () => {
  it("parses HOST:PORT and [IPv6]:PORT", () => {
    expect(parseEndpoint("127.0.0.1:6443")).toEqual({ host: "127.0.0.1", port: 6443 });
    expect(parseEndpoint("[::1]:16443")).toEqual({ host: "::1", port: 16443 });
    expect(parseEndpoint("api.lab.example:443")).toEqual({ host: "api.lab.example", port: 443 });
  });

  it("names the key and what it accepts on a bad endpoint", () => {
    expect(() => parseEndpoint("127.0.0.1:70000")).toThrow(/testbed:kubernetes\.apiEndpoint "127\.0\.0\.1:70000": accepted: HOST:PORT/);
    expect(() => parseEndpoint("::1:6443")).toThrow(/apiEndpoint/);
    expect(() => parseScenario({ dataplane: "ebpf", adminCidr: "203.0.113.7/32", sshPublicKey: PLACEHOLDERS.sshPublicKey, kubernetes: { apiEndpoint: "6443" } })).toThrow(
      /testbed:kubernetes\.apiEndpoint: "6443" is not accepted; accepted: HOST:PORT or \[IPv6\]:PORT/,
    );
  });

  it("a loopback endpoint is an SSH forward through the bastion", () => {
    expect(isLoopback("127.0.0.1")).toBe(true);
    expect(isLoopback("::1")).toBe(true);
    expect(isLoopback("198.19.0.10")).toBe(false);
    expect(apiTunnelCommand({ local: { host: "127.0.0.1", port: 6443 }, apiServer: "2001:2:0:30::10", apiPort: 6443, user: "ubuntu", bastion: "203.0.113.10" })).toBe(
      "ssh -N -L 127.0.0.1:6443:[2001:2:0:30::10]:6443 ubuntu@203.0.113.10",
    );
  });
});

// ---- Scripts that change the node: root only, inside private namespaces.
const canSandbox = process.platform === "linux" && process.getuid?.() === 0 && spawnSync("unshare", ["--version"]).status === 0;

/**
 * Runs a script as root in a new mount and network namespace: iptables, links and tc see an empty
 * network stack, and the directories the node reset clears are private tmpfs mounts.
 */
function runSandboxed(script: string, bin: string, env: Record<string, string> = {}, input = "", prelude = "") {
  const setup = `set -e
mount --make-rprivate /
for d in /etc/cni /var/lib/cni /var/run/cilium /sys/fs/bpf; do
  if [ -d "$d" ]; then mount -t tmpfs testbed-sandbox "$d"; fi
done
ip link set lo up
${prelude}
set +e
bash -c "$1"`;
  return spawnSync("unshare", ["--mount", "--net", "--fork", "bash", "-c", setup, "sandbox", script], {
    encoding: "utf8",
    input,
    env: { ...process.env, ...env, PATH: `${bin}:${process.env.PATH}` },
  });
}

describe.skipIf(!canSandbox)("scripts that change the node (root, private namespaces)", () => {
  const TOKEN = "abcdef.0123456789abcdef";
  const paths = (name: string): NodePaths => {
    const root = path.join(work, name);
    for (const d of ["scratch", "kubernetes/pki", "kubernetes/manifests", "bin"]) fs.mkdirSync(path.join(root, d), { recursive: true, mode: 0o700 });
    return {
      adminConf: path.join(root, "kubernetes/admin.conf"),
      logDir: path.join(root, "log"),
      scratchDir: path.join(root, "scratch"),
      kubernetesDir: path.join(root, "kubernetes"),
      sshHostKey: path.join(root, "ssh_host_ed25519_key.pub"),
      kubeadm: path.join(root, "bin/kubeadm"),
    };
  };
  /** A cluster CA, as kubeadm writes it, and the hash `kubeadm token create --print-join-command` prints. */
  const makeCa = (p: NodePaths): string => {
    const ca = path.join(p.kubernetesDir, "pki/ca.crt");
    execFileSync("openssl", ["req", "-x509", "-newkey", "ed25519", "-nodes", "-keyout", path.join(p.kubernetesDir, "pki/ca.key"), "-out", ca, "-subj", "/CN=kubernetes", "-days", "2"], { stdio: "ignore" });
    const der = execFileSync("sh", ["-c", `openssl x509 -pubkey -noout -in '${ca}' | openssl pkey -pubin -outform der | sha256sum`], { encoding: "utf8" });
    return `sha256:${der.split(" ")[0]}`;
  };
  // kubeadm stand-in: records its calls, keeps the configuration it was given, prints what kubeadm prints.
  const bin = stubs("kubeadm", {
    kubeadm: `
echo "$*" >>"$KUBEADM_CALLS"
case "$1" in
  reset) exit 0 ;;
  token) echo "kubeadm join 198.19.0.13:6443 --token ${TOKEN} --discovery-token-ca-cert-hash $CA_HASH_SEEN " ;;
  init|join)
    if [ "$1 $2" = "init phase" ]; then exit "\${KUBEADM_FAIL:-0}"; fi
    cp "$3" "$KUBEADM_SEEN"
    stat -c %a "$3" >"$KUBEADM_SEEN.mode"
    if [ "$1" = init ]; then printf 'kind: Config\\nclusters: []\\n' >"$ADMIN_CONF_PATH"; fi
    echo "[preflight] Running pre-flight checks"
    echo "Then you can join any number of worker nodes by running the following on each as root:"
    echo "kubeadm join 198.19.0.10:6443 --token ${TOKEN} \\\\"
    echo "        --discovery-token-ca-cert-hash $CA_HASH_SEEN"
    exit "\${KUBEADM_FAIL:-0}" ;;
esac`,
    kubectl: 'echo "kubectl $*" >>"$KUBEADM_CALLS"',
  });
  const envFor = (name: string, p: NodePaths, extra: Record<string, string> = {}) => ({
    KUBEADM_CALLS: path.join(work, `${name}.calls`),
    KUBEADM_SEEN: path.join(work, `${name}.seen`),
    ADMIN_CONF_PATH: p.adminConf,
    CA_HASH_SEEN: `sha256:${"a1".repeat(32)}`,
    ...extra,
  });
  const calls = (env: { KUBEADM_CALLS: string }) => (fs.existsSync(env.KUBEADM_CALLS) ? fs.readFileSync(env.KUBEADM_CALLS, "utf8").trim().split("\n") : []);
  const initConfig = path.join(work, "init.yaml");
  fs.writeFileSync(initConfig, "kind: InitConfiguration\n");
  const initHash = createHash("sha256").update(fs.readFileSync(initConfig)).digest("hex");

  it("init prints admin.conf and nothing else; kubeadm's output (with a token) stays in a root-only log", () => {
    const p = paths("init-ok");
    const env = envFor("init-ok", p);
    const r = runSandboxed(kubeadmInitScript({ configPath: initConfig, configHash: initHash, kubeProxy: true }, p), bin, env);
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    expect(r.stdout).toBe("kind: Config\nclusters: []\n");
    expect(calls(env)).toEqual(["reset --force", `init --config ${initConfig}`]);
    expect(fs.readFileSync(path.join(p.logDir, "kubeadm-init.log"), "utf8")).toContain(TOKEN);
    expect((fs.statSync(p.logDir).mode & 0o777).toString(8)).toBe("700");
  });

  it("on a running control plane, init re-applies the configuration in place: no reset, no new cluster", () => {
    const p = paths("init-again");
    fs.writeFileSync(p.adminConf, "kind: Config\nclusters: [running]\n");
    fs.writeFileSync(path.join(p.kubernetesDir, "manifests/kube-apiserver.yaml"), "kind: Pod\n");
    const env = envFor("init-again", p);
    const r = runSandboxed(kubeadmInitScript({ configPath: initConfig, configHash: initHash, kubeProxy: true }, p), bin, env);
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    expect(r.stdout).toBe("kind: Config\nclusters: [running]\n");
    expect(calls(env)).toEqual([
      `init phase control-plane all --config ${initConfig}`,
      `init phase upload-config kubeadm --config ${initConfig} --kubeconfig ${p.adminConf}`,
      `init phase addon kube-proxy --config ${initConfig} --kubeconfig ${p.adminConf}`,
      `kubectl --kubeconfig ${p.adminConf} -n kube-system rollout restart daemonset/kube-proxy`,
    ]);
    // Without kube-proxy (the ebpf dataplane) the addon phase is not run.
    const env2 = envFor("init-again-ebpf", p);
    expect(runSandboxed(kubeadmInitScript({ configPath: initConfig, configHash: initHash, kubeProxy: false }, p), bin, env2).status).toBe(0);
    expect(calls(env2).some((c) => c.includes("kube-proxy"))).toBe(false);
    // A configuration other than the one uploaded for this step is refused before anything runs.
    const env3 = envFor("init-again-stale", p);
    const stale = runSandboxed(kubeadmInitScript({ configPath: initConfig, configHash: "0".repeat(64), kubeProxy: true }, p), bin, env3);
    expect(stale.status).not.toBe(0);
    expect(stale.stderr).toMatch(/is not the configuration this step uploaded/);
    expect(calls(env3)).toEqual([]);
  });

  it("a failed init shows the end of kubeadm's log with every credential masked", () => {
    const p = paths("init-fail");
    const env = envFor("init-fail", p, { KUBEADM_FAIL: "1" });
    const r = runSandboxed(kubeadmInitScript({ configPath: initConfig, configHash: initHash, kubeProxy: false }, p), bin, env);
    expect(r.status).toBe(1);
    expect(r.stdout).toBe("");
    expect(r.stderr).toMatch(/kubeadm init failed/);
    expect(r.stderr).toMatch(/--token \[redacted\]/);
    expect(r.stderr).toMatch(/--discovery-token-ca-cert-hash \[redacted\]/);
    expect(r.stderr).not.toContain(TOKEN.split(".")[1]);
    expect(r.stderr).not.toContain(env.CA_HASH_SEEN);
  });

  describe("join, with a token the worker mints through a real sshd for each attempt", () => {
    // In one sandbox: an sshd on the loopback of the private network namespace is the master's, the
    // namespace's root is the worker. The master's login (root, its home a tmpfs), kubeadm (the
    // stand-in) and CA are the test's own.
    const joinConfig = path.join(work, "join.yaml");
    fs.writeFileSync(
      joinConfig,
      renderKubeadmJoin(scenario, {
        masterManagement: { ipv4: "127.0.0.1", ipv6: "::1" },
        masterDatacenter: { ipv4: "198.18.1.13", ipv6: "2001:2:0:20::13" },
        workerDatacenter: { ipv4: "198.18.1.14", ipv6: "2001:2:0:20::14" },
      }),
    );

    interface JoinRun {
      readonly p: NodePaths;
      readonly env: ReturnType<typeof envFor>;
      readonly trust: JoinTrust;
      readonly workerKey: string;
      readonly r: ReturnType<typeof runSandboxed>;
    }

    /**
     * The master authorizes the worker's key (its output is checked against the trust computed
     * here), then the worker joins with `trust` (changed by `tamper`); `before` runs after sshd has
     * started, `after` after the join.
     */
    function runJoin(name: string, opts: { tamper?: (t: JoinTrust) => JoinTrust; before?: string; after?: string } = {}): JoinRun {
      const p = paths(name);
      const caCertHash = makeCa(p);
      const env = envFor(name, p, { CA_HASH_SEEN: caCertHash });
      // The master's kubeadm, run by the forced command through sudo (which clears the environment).
      fs.writeFileSync(
        p.kubeadm,
        `#!/usr/bin/env bash\necho "$*" >>${shellQuote(env.KUBEADM_CALLS)}\necho "kubeadm join 198.19.0.13:6443 --token ${TOKEN} --discovery-token-ca-cert-hash ${caCertHash} "\n`,
        { mode: 0o755 },
      );
      const workerKey = path.join(p.scratchDir, ".ssh/testbed-join");
      fs.mkdirSync(path.dirname(workerKey), { recursive: true, mode: 0o700 });
      execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "testbed-join", "-f", workerKey]);
      const hostKey = path.join(work, `${name}-hostkey`);
      execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", hostKey]);
      fs.copyFileSync(`${hostKey}.pub`, p.sshHostKey);
      const sshdConfig = path.join(work, `${name}-sshd_config`);
      fs.writeFileSync(sshdConfig, [`HostKey ${hostKey}`, "ListenAddress 127.0.0.1", "PermitRootLogin prohibit-password", "UsePAM no", `PidFile ${work}/${name}-sshd.pid`, ""].join("\n"));
      const trust: JoinTrust = { hostKey: fs.readFileSync(`${hostKey}.pub`, "utf8").split(" ").slice(0, 2).join(" "), caCertHash };
      const join = kubeadmJoinScript({ configPath: joinConfig, user: "root", master: "127.0.0.1", trust: opts.tamper ? opts.tamper(trust) : trust }, p);
      const flow = `mount -t tmpfs -o mode=0700 testbed-sandbox /root
mkdir -p /run/sshd
/usr/sbin/sshd -D -f ${shellQuote(sshdConfig)} &
sshd_pid=$!
trap 'kill "$sshd_pid"; wait "$sshd_pid" 2>/dev/null' EXIT
for _ in $(seq 50); do [ -s ${shellQuote(`${work}/${name}-sshd.pid`)} ] && break; sleep 0.1; done
${opts.before ?? ""}
bash -c ${shellQuote(joinKeyScript(p))} >/dev/null
bash -c ${shellQuote(joinAuthorizeScript({ user: "root", publicKey: fs.readFileSync(`${workerKey}.pub`, "utf8") }, p))} || exit 10
echo "--- join"
bash -c ${shellQuote(join)}
status=$?
${opts.after ?? ""}
exit $status`;
      return { p, env, trust, workerKey, r: runSandboxed(flow, bin, env) };
    }

    it("the master lets the key mint a token and nothing else; the worker pins its host key and CA", () => {
      const key = path.join(work, "join-ok/scratch/.ssh/testbed-join");
      const { p, env, trust, workerKey, r } = runJoin("join-ok", {
        // Whatever the key asks the master for, the master runs the forced command.
        after: `echo "--- asked for id"; ssh -T -i ${shellQuote(key)} -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR root@127.0.0.1 id
echo "--- authorized_keys"; cat /root/.ssh/authorized_keys`,
      });
      expect(r.stderr).toBe("");
      expect(r.status).toBe(0);
      const [authorized, joined, asked, keys] = r.stdout.split(/--- (?:join|asked for id|authorized_keys)\n/);
      expect(parseJoinTrust(authorized!)).toEqual(trust);
      expect(joined).toBe("joined\n");
      expect(asked).toMatch(new RegExp(`^kubeadm join 198\\.19\\.0\\.13:6443 --token ${TOKEN.replace(".", "\\.")} `));
      expect(asked).not.toMatch(/uid=/);
      expect(keys!.trim()).toBe(`restrict,command="${joinForcedCommand(p)}" ${fs.readFileSync(`${workerKey}.pub`, "utf8").trim()}`);
      const forced = `token create --kubeconfig ${p.adminConf} --ttl 15m --description testbed-worker-join --print-join-command`;
      expect(calls(env)).toEqual([forced, "reset --force", expect.stringMatching(/^join --config .*\/kubeadm-join\./), forced]);
      const seen = parseYaml(fs.readFileSync(env.KUBEADM_SEEN, "utf8"));
      expect(seen.discovery.bootstrapToken).toEqual({ apiServerEndpoint: "127.0.0.1:6443", token: TOKEN, caCertHashes: [trust.caCertHash] });
      expect(fs.readFileSync(`${env.KUBEADM_SEEN}.mode`, "utf8").trim()).toBe("600");
      expect(fs.readdirSync(p.scratchDir).filter((f) => !f.startsWith("."))).toEqual([]);
      expect(fs.readFileSync(joinConfig, "utf8")).toContain("@JOIN_TOKEN@");
    });

    it("a second authorization replaces the worker's earlier key and keeps every other key", () => {
      const { r } = runJoin("join-reauthorize", {
        before: `install -d -m 0700 /root/.ssh && printf 'ssh-ed25519 AAAAother admin@laptop\\nrestrict,command="old" ssh-ed25519 AAAAold testbed-join\\n' >/root/.ssh/authorized_keys`,
        after: `echo "--- authorized_keys"; cat /root/.ssh/authorized_keys`,
      });
      expect(r.status).toBe(0);
      const keys = r.stdout.split("--- authorized_keys\n")[1]!.trim().split("\n");
      expect(keys).toHaveLength(2);
      expect(keys[0]).toBe("ssh-ed25519 AAAAother admin@laptop");
      expect(keys[1]).toMatch(/^restrict,command="sudo -n .* testbed-join$/);
    });

    it("refuses a master whose CA is not the one it was told, before touching the node", () => {
      const { r, env } = runJoin("join-wrong-ca", { tamper: (t) => ({ ...t, caCertHash: `sha256:${"b2".repeat(32)}` }) });
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(/the master answered no join command for the cluster whose CA hash is sha256:b2b2/);
      expect(calls(env).some((c) => c.startsWith("reset") || c.startsWith("join"))).toBe(false);
    });

    it("refuses a master whose host key is not the pinned one, before touching the node", () => {
      const other = path.join(work, "join-wrong-host-other");
      execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", other]);
      const { r, env } = runJoin("join-wrong-host", { tamper: (t) => ({ ...t, hostKey: fs.readFileSync(`${other}.pub`, "utf8").split(" ").slice(0, 2).join(" ") }) });
      expect(r.status).not.toBe(0);
      expect(r.stderr).toMatch(/REMOTE HOST IDENTIFICATION HAS CHANGED|Host key verification failed/);
      expect(calls(env).some((c) => c.startsWith("reset") || c.startsWith("join") || c.startsWith("token"))).toBe(false);
    });
  });

  it("each worker's authorization replaces its own earlier line and keeps every other worker's", () => {
    const p = paths("join-two-workers");
    makeCa(p);
    execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", p.sshHostKey.replace(/\.pub$/, "")]);
    const authorize = (publicKey: string, comment?: string) => shellQuote(joinAuthorizeScript({ user: "root", publicKey, ...(comment ? { comment } : {}) }, p));
    const flow = `mount -t tmpfs -o mode=0700 testbed-sandbox /root
install -d -m 0700 /root/.ssh
printf 'restrict,command="old" ssh-ed25519 AAAAold1 testbed-join\\nrestrict,command="old" ssh-ed25519 AAAAold2 testbed-join-worker-2\\n' >/root/.ssh/authorized_keys
bash -c ${authorize("ssh-ed25519 AAAAnew1 testbed-join")} >/dev/null || exit 10
bash -c ${authorize("ssh-ed25519 AAAAnew2 testbed-join-worker-2", joinKeyComment("worker-2"))} >/dev/null || exit 11
bash -c ${authorize("ssh-ed25519 AAAAnew3 testbed-join-worker-3", joinKeyComment("worker-3"))} >/dev/null || exit 12
cat /root/.ssh/authorized_keys`;
    const r = runSandboxed(flow, bin, {});
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    expect(r.stdout.trim().split("\n").map((l) => l.split(" ").slice(-2).join(" "))).toEqual(["AAAAnew1 testbed-join", "AAAAnew2 testbed-join-worker-2", "AAAAnew3 testbed-join-worker-3"]);
    expect(joinKeyComment("worker")).toBe("testbed-join");
    expect(() => joinAuthorizeScript({ user: "root", publicKey: "ssh-ed25519 AAAA x", comment: "a b" })).toThrow(/join key comment "a b"/);
  });

  it("the join key is made once, root-only, and printed", () => {
    const p = paths("join-key");
    const first = runSandboxed(joinKeyScript(p), bin, {});
    expect(first.status).toBe(0);
    expect(first.stdout).toMatch(/^ssh-ed25519 \S+ testbed-join\n$/);
    expect((fs.statSync(path.join(p.scratchDir, ".ssh/testbed-join")).mode & 0o777).toString(8)).toBe("600");
    expect(runSandboxed(joinKeyScript(p), bin, {}).stdout).toBe(first.stdout);
  });

  it("a worker already joined to this cluster is left as it is (the join run again as an update)", () => {
    const p = paths("join-already");
    fs.writeFileSync(path.join(p.kubernetesDir, "kubelet.conf"), "kind: Config\n");
    const ca = makeCa(p);
    const env = envFor("join-already", p);
    const script = kubeadmJoinScript({ configPath: path.join(work, "join.yaml"), user: "root", master: "127.0.0.1", trust: { hostKey: "ssh-ed25519 AAAA", caCertHash: ca } }, p);
    const r = runSandboxed(script, bin, env);
    expect(r.stderr).toBe("");
    expect(r.stdout).toBe("joined\n");
    expect(calls(env)).toEqual([]);
  });

  it("the node reset removes kube-proxy's and Cilium's chains and devices and keeps everything else", () => {
    const prelude = `
iptables -t nat -N KUBE-SERVICES
iptables -t nat -A PREROUTING -j KUBE-SERVICES
iptables -t nat -N CILIUM_PRE_nat
iptables -t filter -N TESTBED-KEEP
iptables -t filter -A INPUT -j TESTBED-KEEP
ip link add cilium_host type veth peer name cilium_net
ip link add keep0 type veth peer name keep1`;
    const check = `${resetNodeScript()}
echo "--- state"
iptables-save | grep -E '^(:|-A)' | sort
ip -o link show | awk -F': ' '{ print $2 }' | sort`;
    const r = runSandboxed(check, stubs("none", {}), {}, "", prelude);
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    const state = r.stdout.split("--- state\n")[1]!;
    expect(state).not.toMatch(/KUBE|CILIUM|cilium_/);
    expect(state).toMatch(/:TESTBED-KEEP/);
    expect(state).toMatch(/-A INPUT -j TESTBED-KEEP/);
    expect(state).toMatch(/^keep0@keep1$/m);
  });
});
