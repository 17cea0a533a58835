// kubeadm configuration files per stack: parsed back from the rendered YAML, document by document.
import { diffLines } from "diff";
import { describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import { PLACEHOLDERS, parseScenario, type ScenarioInput } from "../../scenario/schema.js";
import {
  CA_CERT_HASH_PLACEHOLDER,
  CONTROLLER_MANAGER_API_BURST,
  CONTROLLER_MANAGER_API_QPS,
  ENDPOINT_SLICE_SYNCS,
  JOIN_TOKEN_PLACEHOLDER,
  hostPort,
  renderKubeadmInit,
  renderKubeadmJoin,
  type ClusterAddresses,
} from "../../infra/cluster/kubeadm.js";

const addresses: ClusterAddresses = {
  masterManagement: { ipv4: "198.19.0.10", ipv6: "2001:2:0:30::10" },
  masterDatacenter: { ipv4: "198.18.1.10", ipv6: "2001:2:0:20::10" },
  workerDatacenter: { ipv4: "198.18.1.11", ipv6: "2001:2:0:20::11" },
  extraCertSans: ["203.0.113.5"],
};
const scenario = (extra: Partial<ScenarioInput> = {}) =>
  parseScenario({ adminCidr: "203.0.113.7/32", sshPublicKey: PLACEHOLDERS.sshPublicKey, dataplane: "ebpf", ...extra });

type Doc = Record<string, any>;
function documents(text: string): Doc[] {
  const docs = parseAllDocuments(text);
  for (const d of docs) expect(d.errors).toEqual([]);
  return docs.map((d) => d.toJS() as Doc);
}
const byKind = (docs: Doc[], kind: string) => docs.find((d) => d.kind === kind);

describe.each(["iptables", "ebpf"] as const)("kubeadm/init.yaml of the %s stack", (dataplane) => {
  const docs = documents(renderKubeadmInit(scenario({ dataplane }), addresses));
  const init = byKind(docs, "InitConfiguration")!;
  const cluster = byKind(docs, "ClusterConfiguration")!;
  const kubelet = byKind(docs, "KubeletConfiguration")!;

  it("is kubeadm v1beta4 with the Kubernetes version of the scenario", () => {
    for (const d of docs.filter((d) => d.apiVersion.startsWith("kubeadm"))) expect(d.apiVersion).toBe("kubeadm.k8s.io/v1beta4");
    expect(cluster.kubernetesVersion).toBe("v1.32.9");
  });

  it("advertises the API server on the master's management address", () => {
    expect(init.localAPIEndpoint).toEqual({ advertiseAddress: "198.19.0.10", bindPort: 6443 });
    expect(cluster.apiServer.certSANs).toEqual(["198.19.0.10", "2001:2:0:30::10", "203.0.113.5"]);
  });

  it("gives kubelet both data-center addresses as node IPs, and uses containerd", () => {
    expect(init.nodeRegistration.kubeletExtraArgs).toEqual([{ name: "node-ip", value: "198.18.1.10,2001:2:0:20::10" }]);
    expect(init.nodeRegistration.criSocket).toBe("unix:///var/run/containerd/containerd.sock");
  });

  it("makes pods and Services dual-stack from the scenario's subnets", () => {
    expect(cluster.networking).toEqual({ podSubnet: "10.244.0.0/16,fd00:10:244::/56", serviceSubnet: "10.96.0.0/16,fd00:10:96::/112" });
  });

  it("passes the scenario's NodePort range to the API server", () => {
    expect(cluster.apiServer.extraArgs).toEqual([{ name: "service-node-port-range", value: "30000-32767" }]);
  });

  it("raises kube-controller-manager's client rate, so 10000 Services' EndpointSlices take minutes", () => {
    expect(byKind(docs, "ClusterConfiguration")!.controllerManager).toEqual({
      extraArgs: [
        { name: "kube-api-qps", value: String(CONTROLLER_MANAGER_API_QPS) },
        { name: "kube-api-burst", value: String(CONTROLLER_MANAGER_API_BURST) },
        { name: "concurrent-service-endpoint-syncs", value: String(ENDPOINT_SLICE_SYNCS) },
      ],
    });
    expect(CONTROLLER_MANAGER_API_BURST).toBeGreaterThanOrEqual(CONTROLLER_MANAGER_API_QPS);
  });

  it("runs kubelet with the systemd cgroup driver and leaves failCgroupV1 to kubelet unless stated", () => {
    expect(kubelet).toEqual({ apiVersion: "kubelet.config.k8s.io/v1beta1", kind: "KubeletConfiguration", cgroupDriver: "systemd" });
  });
});

describe("the dataplane in kubeadm", () => {
  it("iptables: kube-proxy deployed, explicitly in iptables mode, with the pod CIDRs", () => {
    const docs = documents(renderKubeadmInit(scenario({ dataplane: "iptables" }), addresses));
    expect(docs.map((d) => d.kind)).toEqual(["InitConfiguration", "ClusterConfiguration", "KubeletConfiguration", "KubeProxyConfiguration"]);
    expect(byKind(docs, "KubeProxyConfiguration")).toEqual({
      apiVersion: "kubeproxy.config.k8s.io/v1alpha1",
      kind: "KubeProxyConfiguration",
      mode: "iptables",
      clusterCIDR: "10.244.0.0/16,fd00:10:244::/56",
    });
    expect(byKind(docs, "ClusterConfiguration")).not.toHaveProperty("proxy");
  });

  it("nftables: kube-proxy deployed in nftables mode, on the release the stack runs", () => {
    const s = scenario({ dataplane: "nftables", openstack: { image: "ubuntu-22.04", imageKernel: "5.15", imageCgroup: "v2" }, kubernetes: { version: "1.33.9" } });
    const docs = documents(renderKubeadmInit(s, addresses));
    expect(byKind(docs, "KubeProxyConfiguration")).toMatchObject({ kind: "KubeProxyConfiguration", mode: "nftables", clusterCIDR: "10.244.0.0/16,fd00:10:244::/56" });
    expect(byKind(docs, "ClusterConfiguration")!.kubernetesVersion).toBe("v1.33.9");
    expect(byKind(docs, "ClusterConfiguration")).not.toHaveProperty("proxy");
  });

  it("ebpf: the kube-proxy addon disabled, no kube-proxy configuration", () => {
    const docs = documents(renderKubeadmInit(scenario({ dataplane: "ebpf" }), addresses));
    expect(docs.map((d) => d.kind)).toEqual(["InitConfiguration", "ClusterConfiguration", "KubeletConfiguration"]);
    expect(byKind(docs, "ClusterConfiguration")!.proxy).toEqual({ disabled: true });
  });

  it("the two stacks' files differ in the dataplane only", () => {
    const changes = diffLines(
      renderKubeadmInit(scenario({ dataplane: "iptables" }), addresses),
      renderKubeadmInit(scenario({ dataplane: "ebpf" }), addresses),
    );
    const lines = (kind: "added" | "removed") =>
      changes.filter((c) => c[kind]).flatMap((c) => c.value.split("\n").filter((l) => l !== ""));
    expect(lines("removed")).toEqual([
      "# kubeadm init --config for the master (dataplane: iptables).",
      "---",
      "apiVersion: kubeproxy.config.k8s.io/v1alpha1",
      "kind: KubeProxyConfiguration",
      "mode: iptables",
      "clusterCIDR: 10.244.0.0/16,fd00:10:244::/56",
    ]);
    expect(lines("added")).toEqual(["# kubeadm init --config for the master (dataplane: ebpf).", "proxy:", "  disabled: true"]);
  });
});

describe("cgroup v1 and newer kubelets", () => {
  it("carries failCgroupV1: false when the scenario states it (kubelet 1.35 on Ubuntu 20.04)", () => {
    const s = scenario({ kubernetes: { version: "1.35.0", failCgroupV1: false } });
    const kubelet = byKind(documents(renderKubeadmInit(s, addresses)), "KubeletConfiguration")!;
    expect(kubelet.failCgroupV1).toBe(false);
  });
});

describe("single-family clusters", () => {
  it("IPv6 only: advertise, node IPs and subnets of IPv6 alone", () => {
    const s = scenario({ families: ["ipv6"] });
    const docs = documents(renderKubeadmInit(s, addresses));
    expect(byKind(docs, "InitConfiguration")!.localAPIEndpoint.advertiseAddress).toBe("2001:2:0:30::10");
    expect(byKind(docs, "InitConfiguration")!.nodeRegistration.kubeletExtraArgs[0].value).toBe("2001:2:0:20::10");
    expect(byKind(docs, "ClusterConfiguration")!.networking).toEqual({ podSubnet: "fd00:10:244::/56", serviceSubnet: "fd00:10:96::/112" });
    const join = documents(renderKubeadmJoin(s, addresses))[0]!;
    expect(join.discovery.bootstrapToken.apiServerEndpoint).toBe("[2001:2:0:30::10]:6443");
  });

  it("names the host, network and family that lack an address", () => {
    const missing = { ...addresses, workerDatacenter: { ipv4: "198.18.1.11" } };
    expect(() => renderKubeadmJoin(scenario(), missing)).toThrow(
      "the worker on the data-center network has no ipv6 address, but testbed:families lists ipv6; accepted: an address of every listed family",
    );
  });
});

describe("kubeadm/join.yaml", () => {
  const docs = documents(renderKubeadmJoin(scenario(), addresses));

  it("joins through the management address with credentials left as placeholders", () => {
    expect(docs).toHaveLength(1);
    const join = docs[0]!;
    expect(join).toMatchObject({ apiVersion: "kubeadm.k8s.io/v1beta4", kind: "JoinConfiguration" });
    expect(join.discovery.bootstrapToken).toEqual({
      apiServerEndpoint: "198.19.0.10:6443",
      token: JOIN_TOKEN_PLACEHOLDER,
      caCertHashes: [CA_CERT_HASH_PLACEHOLDER],
    });
  });

  it("gives the worker's kubelet its data-center addresses", () => {
    expect(docs[0]!.nodeRegistration.kubeletExtraArgs).toEqual([{ name: "node-ip", value: "198.18.1.11,2001:2:0:20::11" }]);
  });

  it("is the same file in both stacks", () => {
    expect(renderKubeadmJoin(scenario({ dataplane: "iptables" }), addresses)).toBe(renderKubeadmJoin(scenario({ dataplane: "ebpf" }), addresses));
  });
});

describe("hostPort", () => {
  it("brackets IPv6", () => {
    expect(hostPort("198.19.0.10", 6443)).toBe("198.19.0.10:6443");
    expect(hostPort("2001:2::1", 6443)).toBe("[2001:2::1]:6443");
  });
});
