// The cluster's remote scripts: real shellcheck on every one, and real bash runs against stand-ins
// for kubeadm/kubectl/cloud-init. Scripts that touch the node (init, join, reset) run as root in a
// private mount and network namespace, so iptables, links and files of this host stay untouched.
import { execFileSync, spawnSync } from "node:child_process";
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
  kubeadmJoinScript,
  mintJoinTokenScript,
  nodesReadyScript,
  parseNodePrepMarker,
  parseNodeTable,
  resetNodeScript,
  waitForNodeScript,
  type ExpectedNode,
  type NodePaths,
} from "../../infra/cluster/bootstrap.js";
import { renderKubeadmJoin } from "../../infra/cluster/kubeadm.js";
import { apiServerUrl, apiTunnelCommand, isLoopback, kubeconfigWithServer, parseEndpoint } from "../../infra/cluster/kubeconfig.js";
import { nodePrepScript } from "../../infra/cluster/node-prep.js";
import { asRootCommand, shellAssignments, shellQuote } from "../../infra/cluster/shell.js";

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
  "kubeadm init": kubeadmInitScript("/opt/testbed/kubeadm/init.yaml"),
  "node reset": resetNodeScript(),
  "join token": mintJoinTokenScript(),
  "kubeadm join": kubeadmJoinScript("/opt/testbed/kubeadm/join.yaml"),
  "cilium install": ciliumInstallScript({ version: "1.17.18", valuesPath: "/opt/testbed/helm/cilium-values.yaml", chartRepo: "https://helm.cilium.io/" }),
  "cilium uninstall": ciliumUninstallScript(),
  "nodes ready (ebpf)": nodesReadyScript({ dataplane: "ebpf", nodes }),
  "nodes ready (iptables)": nodesReadyScript({ dataplane: "iptables", nodes }),
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
    const line = asRootCommand(script).replace(/^sudo /, "env ");
    expect(execFileSync("sh", ["-c", line], { encoding: "utf8" })).toBe("a b|it's|");
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
  const bin = stubs("wait", { "cloud-init": 'exit "${CLOUD_INIT_STATUS:-0}"' });
  const marker = path.join(work, "node-prep.done");

  it("accepts cloud-init's 'degraded' exit code and prints the marker", () => {
    fs.writeFileSync(marker, "kubernetes=1.32.9-1.1\ncontainerd=1.7.24-0ubuntu1~20.04.2\n");
    const r = runBash(waitForNodeScript("1.32.9", marker), bin, { CLOUD_INIT_STATUS: "2" });
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    expect(parseNodePrepMarker(r.stdout)).toEqual({ kubernetes: "1.32.9-1.1", containerd: "1.7.24-0ubuntu1~20.04.2" });
  });

  it("fails when cloud-init failed", () => {
    expect(runBash(waitForNodeScript("1.32.9", marker), bin, { CLOUD_INIT_STATUS: "1" }).status).not.toBe(0);
  });

  it("refuses a node prepared for another Kubernetes version", () => {
    fs.writeFileSync(marker, "kubernetes=1.32.8-1.1\n");
    const r = runBash(waitForNodeScript("1.32.9", marker), bin);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/prepared with Kubernetes 1\.32\.8-1\.1, the scenario asks for 1\.32\.9/);
  });

  it("fails when node preparation never finished", () => {
    const r = runBash(waitForNodeScript("1.32.9", path.join(work, "absent")), bin);
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
  *"get pods -l k8s-app=cilium -o name"*) printf 'pod/cilium-a\\npod/cilium-b\\n' ;;
  *"cilium-dbg status"*) printf 'KVStore:   Disabled\\nKubeProxyReplacement:    %s   [ens4 198.18.1.10]\\nHost Routing:  Legacy\\n' "\${KPR:-True}" ;;
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

  it("iptables: passes with kube-proxy in iptables mode and no replacement", () => {
    const r = runBash(iptables, bin, { NODE_TABLE: table, KPR: "False", KUBE_PROXY_CONF: "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nmode: iptables\n" });
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
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
  const HASH = `sha256:${"a1".repeat(32)}`;
  const JOIN_LINE = `kubeadm join 198.19.0.10:6443 --token ${TOKEN} --discovery-token-ca-cert-hash ${HASH} \n`;
  const paths = (name: string): NodePaths => {
    const root = path.join(work, name);
    fs.mkdirSync(path.join(root, "scratch"), { recursive: true, mode: 0o700 });
    return { adminConf: path.join(root, "admin.conf"), logDir: path.join(root, "log"), scratchDir: path.join(root, "scratch") };
  };
  // kubeadm stand-in: records its calls, keeps the configuration it was given, prints what kubeadm prints.
  const bin = stubs("kubeadm", {
    kubeadm: `
echo "$1" >>"$KUBEADM_CALLS"
case "$1" in
  reset) exit 0 ;;
  init|join)
    cp "$3" "$KUBEADM_SEEN"
    stat -c %a "$3" >"$KUBEADM_SEEN.mode"
    if [ "$1" = init ]; then printf 'kind: Config\\nclusters: []\\n' >"$ADMIN_CONF_PATH"; fi
    echo "[preflight] Running pre-flight checks"
    echo "Then you can join any number of worker nodes by running the following on each as root:"
    echo "kubeadm join 198.19.0.10:6443 --token ${TOKEN} \\\\"
    echo "        --discovery-token-ca-cert-hash ${HASH}"
    exit "\${KUBEADM_FAIL:-0}" ;;
esac`,
  });
  const envFor = (name: string, p: NodePaths, extra: Record<string, string> = {}) => ({
    KUBEADM_CALLS: path.join(work, `${name}.calls`),
    KUBEADM_SEEN: path.join(work, `${name}.seen`),
    ADMIN_CONF_PATH: p.adminConf,
    ...extra,
  });

  it("init prints admin.conf and nothing else; kubeadm's output (with a token) stays in a root-only log", () => {
    const p = paths("init-ok");
    const config = path.join(work, "init.yaml");
    fs.writeFileSync(config, "kind: InitConfiguration\n");
    const env = envFor("init-ok", p);
    const r = runSandboxed(kubeadmInitScript(config, p), bin, env);
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    expect(r.stdout).toBe("kind: Config\nclusters: []\n");
    expect(fs.readFileSync(env.KUBEADM_CALLS, "utf8").split("\n")).toEqual(["reset", "init", ""]);
    expect(fs.readFileSync(path.join(p.logDir, "kubeadm-init.log"), "utf8")).toContain(TOKEN);
    expect((fs.statSync(p.logDir).mode & 0o777).toString(8)).toBe("700");
  });

  it("a failed init shows the end of kubeadm's log with every credential masked", () => {
    const p = paths("init-fail");
    const config = path.join(work, "init.yaml");
    fs.writeFileSync(config, "kind: InitConfiguration\n");
    const r = runSandboxed(kubeadmInitScript(config, p), bin, envFor("init-fail", p, { KUBEADM_FAIL: "1" }));
    expect(r.status).toBe(1);
    expect(r.stdout).toBe("");
    expect(r.stderr).toMatch(/kubeadm init failed/);
    expect(r.stderr).toMatch(/--token \[redacted\]/);
    expect(r.stderr).toMatch(/--discovery-token-ca-cert-hash \[redacted\]/);
    expect(r.stderr).not.toContain(TOKEN.split(".")[1]);
    expect(r.stderr).not.toContain(HASH);
  });

  it("join fills the token from standard input into a private copy (0600), removed afterwards", () => {
    const p = paths("join-ok");
    const config = path.join(work, "join.yaml");
    const addresses = {
      masterManagement: { ipv4: "198.19.0.10", ipv6: "2001:2:0:30::10" },
      masterDatacenter: { ipv4: "198.18.1.10", ipv6: "2001:2:0:20::10" },
      workerDatacenter: { ipv4: "198.18.1.11", ipv6: "2001:2:0:20::11" },
    };
    fs.writeFileSync(config, renderKubeadmJoin(scenario, addresses));
    const env = envFor("join-ok", p);
    const r = runSandboxed(kubeadmJoinScript(config, p), bin, env, JOIN_LINE);
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    expect(r.stdout).toBe("joined\n");
    const joined = parseYaml(fs.readFileSync(env.KUBEADM_SEEN, "utf8"));
    expect(joined.discovery.bootstrapToken).toEqual({ apiServerEndpoint: "198.19.0.10:6443", token: TOKEN, caCertHashes: [HASH] });
    expect(fs.readFileSync(`${env.KUBEADM_SEEN}.mode`, "utf8").trim()).toBe("600");
    expect(fs.readdirSync(p.scratchDir)).toEqual([]);
    // The uploaded file keeps its placeholders.
    expect(fs.readFileSync(config, "utf8")).toContain("@JOIN_TOKEN@");
  });

  it("join refuses standard input without a token, before touching the node", () => {
    const p = paths("join-bad");
    const env = envFor("join-bad", p);
    const r = runSandboxed(kubeadmJoinScript(path.join(work, "join.yaml"), p), bin, env, "no join command here\n");
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/standard input holds no join command/);
    expect(fs.existsSync(env.KUBEADM_CALLS)).toBe(false);
  });

  it("a failed join masks the credentials", () => {
    const p = paths("join-fail");
    const r = runSandboxed(kubeadmJoinScript(path.join(work, "join.yaml"), p), bin, envFor("join-fail", p, { KUBEADM_FAIL: "1" }), JOIN_LINE);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/kubeadm join failed/);
    expect(r.stderr).not.toContain(TOKEN.split(".")[1]);
    expect(fs.readdirSync(p.scratchDir)).toEqual([]);
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
