// Node preparation: the cloud-init fragment against cloud-init's own schema validator, the
// containerd configuration through a TOML parser, and the script's file edits run for real.
import { execFileSync, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parse as parseToml } from "smol-toml";
import { afterAll, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { PLACEHOLDERS, parseScenario, type ScenarioInput } from "../../scenario/schema.js";
import { labPlan } from "../../infra/openstack/address-plan.js";
import { renderUserData } from "../../infra/openstack/cloud-init.js";
import { TEST_MACS } from "../fixtures/scenario.js";
import {
  CONTAINERD_CONFIG,
  NODE_PREP_SCRIPT,
  containerdConfig,
  kubernetesRepoUrl,
  nodePrepScript,
  renderNodePrep,
} from "../../infra/cluster/node-prep.js";

const work = fs.mkdtempSync(path.join(os.tmpdir(), "node-prep-"));
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

const scenario = (extra: Partial<ScenarioInput> = {}) =>
  parseScenario({ adminCidr: "203.0.113.7/32", sshPublicKey: PLACEHOLDERS.sshPublicKey, dataplane: "ebpf", ...extra });

function cloudInitSchema(text: string): { status: number | null; output: string } {
  const file = path.join(work, `user-data-${Math.random().toString(36).slice(2)}.yaml`);
  fs.writeFileSync(file, text);
  const r = spawnSync("cloud-init", ["schema", "--config-file", file], { encoding: "utf8" });
  if (r.error) throw r.error;
  return { status: r.status, output: `${r.stdout}${r.stderr}` };
}

describe("the cloud-init fragment", () => {
  it.each(["master", "worker"] as const)("merged into a minimal #cloud-config, passes cloud-init's schema (%s)", (role) => {
    const part = renderNodePrep(scenario(), role);
    const r = cloudInitSchema(`#cloud-config\n${stringify({ ...part }, { lineWidth: 0 })}`);
    expect(r.output).toMatch(/Valid cloud-config/);
    expect(r.status).toBe(0);
  });

  it.each(["master", "worker"] as const)("merged by the OpenStack layer into the %s's user data, passes cloud-init's schema", (role) => {
    const s = scenario();
    const userData = renderUserData(s, labPlan(s), role, TEST_MACS, [renderNodePrep(s, role)]);
    expect(userData).toContain(NODE_PREP_SCRIPT);
    const r = cloudInitSchema(userData);
    expect(r.output).toMatch(/Valid cloud-config/);
    expect(r.status).toBe(0);
  });

  it("the validator is real: it refuses a malformed fragment", () => {
    const r = cloudInitSchema(`#cloud-config\n${stringify({ write_files: [{ content: "x" }], runcmd: 5 })}`);
    expect(r.status).not.toBe(0);
    expect(r.output).toMatch(/runcmd: 5 is not of type 'array'/);
    expect(r.output).toMatch(/'path' is a required property/);
  });

  it("writes modules, sysctls for both families, containerd's configuration and the script, and runs the script", () => {
    const part = renderNodePrep(scenario(), "worker");
    const files = new Map(part.write_files!.map((f) => [f.path, f]));
    expect(files.get("/etc/modules-load.d/kubernetes.conf")!.content).toBe("overlay\nbr_netfilter\n");
    expect(files.get("/etc/sysctl.d/90-kubernetes.conf")!.content.split("\n").filter(Boolean)).toEqual([
      "net.ipv4.ip_forward = 1",
      "net.ipv6.conf.all.forwarding = 1",
      "net.bridge.bridge-nf-call-iptables = 1",
      "net.bridge.bridge-nf-call-ip6tables = 1",
    ]);
    expect(files.get(NODE_PREP_SCRIPT)!.permissions).toBe("0755");
    expect(part.runcmd).toEqual([[NODE_PREP_SCRIPT]]);
  });
});

describe("containerd", () => {
  it("uses the systemd cgroup driver for runc (TOML parsed)", () => {
    const config = parseToml(containerdConfig()) as any;
    expect(config.version).toBe(2);
    const cri = config.plugins["io.containerd.grpc.v1.cri"];
    expect(cri.containerd.runtimes.runc.runtime_type).toBe("io.containerd.runc.v2");
    expect(cri.containerd.runtimes.runc.options.SystemdCgroup).toBe(true);
  });

  it("the script's own edit sets the pause image kubeadm asks for", () => {
    const script = nodePrepScript(scenario(), "worker");
    const sedLine = script.split("\n").find((l) => l.includes("sandbox_image = "))!;
    const file = path.join(work, "config.toml");
    fs.writeFileSync(file, containerdConfig());
    execFileSync("bash", ["-c", `set -euo pipefail\npause_image=registry.k8s.io/pause:3.10.1\nCONTAINERD_CONFIG=${file}\n${sedLine}`]);
    const config = parseToml(fs.readFileSync(file, "utf8")) as any;
    expect(config.plugins["io.containerd.grpc.v1.cri"].sandbox_image).toBe("registry.k8s.io/pause:3.10.1");
    expect(config.plugins["io.containerd.grpc.v1.cri"].containerd.runtimes.runc.options.SystemdCgroup).toBe(true);
  });

  it("the fragment writes the configuration containerd reads", () => {
    const part = renderNodePrep(scenario(), "master");
    expect(part.write_files!.find((f) => f.path === CONTAINERD_CONFIG)!.content).toBe(containerdConfig());
  });
});

describe("the preparation script", () => {
  it("pins kubelet, kubeadm and kubectl to the scenario's version from its pkgs.k8s.io line, and holds them", () => {
    const script = nodePrepScript(scenario({ kubernetes: { version: "1.33.4" } }), "worker");
    expect(script).toContain("K8S_VERSION='1.33.4'");
    expect(script).toContain("K8S_REPO='https://pkgs.k8s.io/core:/stable:/v1.33/deb/'");
    expect(script).toContain("/etc/apt/keyrings/kubernetes-apt-keyring.gpg");
    expect(script).toMatch(/"kubelet=\$\{pkg_version\}" "kubeadm=\$\{pkg_version\}" "kubectl=\$\{pkg_version\}"/);
    expect(script).toMatch(/apt-mark hold kubelet kubeadm kubectl containerd/);
    expect(kubernetesRepoUrl("1.32.9")).toBe("https://pkgs.k8s.io/core:/stable:/v1.32/deb/");
  });

  it("picks the package revision of exactly the asked patch from apt-cache madison's output", () => {
    const script = nodePrepScript(scenario(), "worker");
    const awk = /awk -v want="\$\{K8S_VERSION\}-" '([^']+)'/.exec(script)![1]!;
    const madison = [
      "   kubeadm | 1.32.10-1.1 | https://pkgs.k8s.io/core:/stable:/v1.32/deb  Packages",
      "   kubeadm | 1.32.9-1.1 | https://pkgs.k8s.io/core:/stable:/v1.32/deb  Packages",
      "   kubeadm | 1.32.8-1.1 | https://pkgs.k8s.io/core:/stable:/v1.32/deb  Packages",
    ].join("\n");
    const pick = (v: string) => execFileSync("awk", ["-v", `want=${v}-`, awk], { input: madison, encoding: "utf8" }).trim();
    expect(pick("1.32.9")).toBe("1.32.9-1.1");
    expect(pick("1.32.1")).toBe("");
  });

  it("turns swap off now and at every boot", () => {
    const script = nodePrepScript(scenario(), "worker");
    expect(script).toMatch(/^swapoff -a$/m);
    const sedLine = script.split("\n").find((l) => l.includes("/etc/fstab"))!;
    const fstab = path.join(work, "fstab");
    fs.writeFileSync(fstab, "LABEL=root / ext4 defaults 0 1\n/swap.img\tnone\tswap\tsw\t0\t0\n#/old none swap sw 0 0\n");
    execFileSync("bash", ["-c", sedLine.replace("/etc/fstab", fstab)]);
    expect(fs.readFileSync(fstab, "utf8")).toBe("LABEL=root / ext4 defaults 0 1\n#/swap.img\tnone\tswap\tsw\t0\t0\n#/old none swap sw 0 0\n");
  });

  it("installs Helm on the master only, checked against its published digest", () => {
    expect(nodePrepScript(scenario(), "master")).toContain("ROLE='master'");
    expect(nodePrepScript(scenario(), "worker")).toContain("ROLE='worker'");
    expect(nodePrepScript(scenario(), "master")).toContain("HELM_VERSION='3.18.6'");
    expect(nodePrepScript(scenario(), "master")).toMatch(/sha256sum --check/);
  });
});
