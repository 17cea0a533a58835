import * as fs from "node:fs";
import { describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import {
  PAPER_SWEEP,
  PLACEHOLDERS,
  ScenarioError,
  parseScenario,
  placeholdersIn,
  podRouting,
  receiverNodePorts,
  scenarioSchema,
  serviceCapacity,
} from "../../scenario/schema.js";
import { readRawScenario } from "../../infra/config.js";

const valid = { dataplane: "ebpf", adminCidr: "203.0.113.7/32", sshPublicKey: PLACEHOLDERS.sshPublicKey };

function problems(raw: unknown): string[] {
  try {
    parseScenario(raw);
  } catch (err) {
    expect(err).toBeInstanceOf(ScenarioError);
    return (err as ScenarioError).problems;
  }
  throw new Error("configuration was accepted");
}

describe("defaults reproduce the paper", () => {
  const s = parseScenario(valid);

  it("sizes the hosts as the paper's VMs", () => {
    expect(s.hosts.client).toMatchObject({ vcpus: 1, ramMiB: 2048, diskGiB: 20, flavor: "m1.small" });
    expect(s.hosts.router).toMatchObject({ vcpus: 1, ramMiB: 2048, diskGiB: 20, flavor: "m1.small" });
    expect(s.hosts.master).toMatchObject({ vcpus: 2, ramMiB: 4096, diskGiB: 40, flavor: "m1.medium" });
    expect(s.hosts.worker).toMatchObject({ vcpus: 2, ramMiB: 4096, diskGiB: 40, flavor: "m1.medium" });
    expect(s.flavors.cpuCapMHz).toBe(1500);
  });

  it("uses Ubuntu 20.04, 500 Mbit/s links, both families", () => {
    expect(s.openstack.image).toBe("ubuntu-20.04");
    expect(s.openstack.imageKernel).toBe("5.4");
    expect(s.linkMbps).toBe(500);
    expect(s.families).toEqual(["ipv4", "ipv6"]);
  });

  it("sweeps 1, 1000 ... 10000 Services with 100 runs of 30 s", () => {
    expect(s.sweep.services).toEqual([1, 1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000, 9000, 10000]);
    expect(PAPER_SWEEP).toHaveLength(11);
    expect(s.sweep.runs).toBe(100);
    expect(s.sweep.flowSeconds).toBe(30);
  });

  it("keeps Cilium on the last line that supports kernel 5.4 and the default NodePort range", () => {
    expect(s.cilium.version).toMatch(/^1\.17\./);
    expect(s.kubernetes.nodePortRange).toBe("30000-32767");
  });

  it("puts every lab network in the benchmarking ranges", () => {
    for (const net of [s.network.client, s.network.datacenter, s.network.management]) {
      expect(net.ipv4).toMatch(/^198\.1[89]\./);
      expect(net.ipv6).toMatch(/^2001:2:0:/);
    }
  });

  it("measures the paper's path alone, on its one worker, with Cilium's tunnel where IPv4 is", () => {
    expect(s.paths).toEqual(["nodeport-local"]);
    expect(s.workers).toBe(1);
    expect(s.podRouting).toBeUndefined();
    expect(podRouting(s)).toBe("tunnel");
    expect(podRouting(parseScenario({ ...valid, families: ["ipv6"] }))).toBe("native");
    expect(receiverNodePorts(s)).toEqual([30900, 31000, 30902, 31002]);
  });

  it("gives the receivers of further paths their own NodePorts and ClusterIPs, out of the scaled Services' share", () => {
    const all = parseScenario({ ...valid, paths: ["nodeport-local", "nodeport-remote", "clusterip"], workers: 2 });
    expect(receiverNodePorts(all)).toEqual([30900, 31000, 30902, 31002, 30901, 31001, 30903, 31003]);
    expect(serviceCapacity(all)).toEqual({ nodePort: serviceCapacity(s).nodePort - 4, clusterIp: serviceCapacity(s).clusterIp - 2 });
    // The clusterip path's receiver has a ClusterIP and no NodePort; its ClusterIP is the second from
    // the top of the subnet whether or not nodeport-remote's holds the first.
    const clusterIpOnly = parseScenario({ ...valid, paths: ["clusterip"], workers: 2 });
    expect(serviceCapacity(clusterIpOnly)).toEqual({ nodePort: serviceCapacity(s).nodePort, clusterIp: serviceCapacity(s).clusterIp - 2 });
    const remoteOnly = parseScenario({ ...valid, paths: ["nodeport-remote"], workers: 2 });
    expect(serviceCapacity(remoteOnly)).toEqual({ nodePort: serviceCapacity(s).nodePort - 4, clusterIp: serviceCapacity(s).clusterIp - 1 });
  });

  it("holds the sweep: NodePort while the range lasts, ClusterIP after", () => {
    const cap = serviceCapacity(s);
    // 2768 ports in 30000-32767, less the receiver's signaling and data NodePorts, two for each of its ITGRecv.
    expect(cap.nodePort).toBe(2764);
    expect(cap.clusterIp).toBeGreaterThanOrEqual(10000);
  });
});

describe("bad configurations are refused with a message naming key, value and what is accepted", () => {
  const cases: Array<[string, Record<string, unknown>, RegExp]> = [
    ["negative Service count", { services: -1 }, /^testbed:services: -1 is not accepted; accepted: a number >= 0$/],
    ["non-integer Service count", { services: 2.5 }, /^testbed:services: 2\.5 is not a whole number; accepted: an integer$/],
    ["zero runs", { sweep: { runs: 0 } }, /^testbed:sweep\.runs: 0 is not accepted; accepted: a number >= 1$/],
    ["unknown dataplane", { dataplane: "ipvs" }, /^testbed:dataplane: "ipvs" is not accepted; accepted: "iptables" or "nftables" or "ebpf"$/],
    [
      "kube-proxy's nftables mode on the paper's kernel",
      { dataplane: "nftables" },
      /^testbed:openstack\.imageKernel: "5\.4" is older than 5\.13, which kube-proxy's nftables mode needs; accepted: .*imageKernel 5\.15/,
    ],
    ["missing admin CIDR", { adminCidr: undefined }, /^testbed:adminCidr: missing; set it with `pulumi config set testbed:adminCidr/],
    ["admin CIDR open to the Internet", { adminCidr: "0.0.0.0/0" }, /^testbed:adminCidr: "0\.0\.0\.0\/0" opens SSH to the whole Internet; accepted: a block with a prefix length above 0/],
    ["IPv6 admin CIDR open to the Internet", { adminCidr: "::/0" }, /^testbed:adminCidr: "::\/0" opens SSH to the whole Internet/],
    ["IPv6 admin CIDR for an IPv4 bastion", { adminCidr: "2001:db8::/64" }, /^testbed:adminCidr: "2001:db8::\/64" is an IPv6 block but the bastion's floating IP is IPv4; accepted: an IPv4 block/],
    ["admin CIDR that is not a CIDR", { adminCidr: "10.0.0.0/33" }, /^testbed:adminCidr: "10\.0\.0\.0\/33" is not a CIDR; accepted:/],
    [
      "overlapping CIDRs",
      { network: { datacenter: { ipv4: "198.18.0.128/25" } } },
      /^testbed:network\.datacenter\.ipv4: "198\.18\.0\.128\/25" overlaps testbed:network\.client\.ipv4 \(198\.18\.0\.0\/24\); accepted: a block disjoint/,
    ],
    [
      "sweep above the ClusterIP capacity",
      { sweep: { services: [1, 1000, 70000] } },
      /^testbed:sweep\.services: \[1,1000,70000\] asks for 70000 Services but the service subnets hold 65531 \(NodePort: 2764, the rest ClusterIP\); accepted: at most 65531/,
    ],
    [
      "Service count above the capacity of a small service subnet",
      { services: 300, kubernetes: { serviceSubnets: { ipv4: "10.96.0.0/24" } } },
      /^testbed:services: 300 asks for 300 Services but the service subnets hold 251/,
    ],
    ["reversed NodePort range", { kubernetes: { nodePortRange: "32767-30000" } }, /^testbed:kubernetes\.nodePortRange: "32767-30000" is not accepted; accepted: LOW-HIGH with 1 <= LOW <= HIGH <= 65535/],
    ["receiver port outside the NodePort range", { receiver: { dataPort: 8999 } }, /^testbed:receiver\.dataPort: 8999 is outside the NodePort range 30000-32767; accepted: a port inside it$/],
    ["Cilium 1.18 on kernel 5.4", { cilium: { version: "1.18.2" } }, /^testbed:cilium\.version: "1\.18\.2" needs kernel >= 5\.10 but the image has 5\.4; accepted: a 1\.17\.x version/],
    ["kubelet 1.35 on cgroup v1", { kubernetes: { version: "1.35.0" } }, /^testbed:kubernetes\.version: "1\.35\.0" kubelet 1\.35 and later refuses cgroup v1.*accepted: a version up to 1\.34\.x/],
    ["negative link rate", { linkMbps: -5 }, /^testbed:linkMbps: -5 is not accepted; accepted: a number >= 0$/],
    ["no family", { families: [] }, /^testbed:families: \[\] is not accepted; accepted: a list with at least 1 entry$/],
    ["created flavors without the host clock", { flavors: { create: true } }, /^testbed:flavors\.hostCpuMHz: missing; with flavors\.create the 1500 MHz cap becomes a CPU quota/],
    ["sweep not increasing", { sweep: { services: [1000, 1] } }, /^testbed:sweep\.services: \[1000,1\] must be strictly increasing$/],
    ["public key that is not one", { sshPublicKey: "hello" }, /^testbed:sshPublicKey: "hello" is not an OpenSSH public key; accepted: one line such as/],
    ["unknown path", { paths: ["nodeport"] }, /^testbed:paths\.0: "nodeport" is not accepted; accepted: "nodeport-local" or "nodeport-remote" or "clusterip"$/],
    ["paths as plain text", { paths: "clusterip" }, /^testbed:paths: "clusterip" is not accepted; accepted: a list; paths is a list, written as JSON: --config 'paths=\["clusterip"\]'/],
    ["a path listed twice", { paths: ["clusterip", "clusterip"], workers: 2 }, /^testbed:paths: \["clusterip","clusterip"\] lists a path twice$/],
    ["no path", { paths: [] }, /^testbed:paths: \[\] is not accepted; accepted: a list with at least 1 entry$/],
    [
      "a remote path on the paper's one worker",
      { paths: ["nodeport-local", "nodeport-remote"] },
      /^testbed:workers: 1 is too few for "nodeport-remote" in testbed:paths \(external client -> NodePort of worker 1 \(externalTrafficPolicy Cluster\) -> endpoint on worker 2\); accepted: 2 or more workers, or testbed:paths without "nodeport-remote"$/,
    ],
    ["the clusterip path on one worker", { paths: ["clusterip"] }, /^testbed:workers: 1 is too few for "clusterip" in testbed:paths .*accepted: 2 or more workers/],
    ["more workers than the address plan numbers", { workers: 10 }, /^testbed:workers: 10 is not accepted; accepted: a number <= 9$/],
    ["no worker", { workers: 0 }, /^testbed:workers: 0 is not accepted; accepted: a number >= 1$/],
    ["a tunnel on an IPv6-only cluster", { families: ["ipv6"], podRouting: "tunnel" }, /^testbed:podRouting: "tunnel" needs IPv4 between the nodes .*; accepted: "native", or add ipv4 to testbed:families$/],
    ["an unknown pod routing", { podRouting: "vxlan" }, /^testbed:podRouting: "vxlan" is not accepted; accepted: "tunnel" or "native"$/],
    [
      "the remote receiver on the paper's data port",
      { paths: ["nodeport-remote"], workers: 2, receiver: { remoteDataPort: 31000 } },
      /^testbed:receiver\.remoteDataPort: 31000 equals receiver\.dataPort; accepted: a NodePort no other receiver port holds$/,
    ],
    [
      "the remote receiver outside a narrowed NodePort range",
      { paths: ["nodeport-remote"], workers: 2, kubernetes: { nodePortRange: "30000-31000" } },
      /^testbed:receiver\.remoteDataPort: 31001 is outside the NodePort range 30000-31000, and testbed:paths lists "nodeport-remote", whose receiver it serves; accepted: a port inside it$/,
    ],
    [
      "the alternate ITGRecv outside a narrowed NodePort range",
      { kubernetes: { nodePortRange: "30000-31000" } },
      /^testbed:receiver\.alternate\.dataPort: 31002 is outside the NodePort range 30000-31000; accepted: a port inside it$/,
    ],
    [
      "the alternate ITGRecv on the first one's signaling NodePort",
      { receiver: { alternate: { signalingNodePort: 30900 } } },
      /^testbed:receiver\.alternate\.signalingNodePort: 30900 equals receiver\.signalingNodePort; accepted: a NodePort no other receiver port holds$/,
    ],
    [
      "the alternate remote receiver on the remote receiver's data port",
      { paths: ["nodeport-remote"], workers: 2, receiver: { alternate: { remoteDataPort: 31001 } } },
      /^testbed:receiver\.alternate\.remoteDataPort: 31001 equals receiver\.remoteDataPort; accepted: a NodePort no other receiver port holds$/,
    ],
    [
      "both ITGRecv of a pod on one signaling port",
      { receiver: { alternate: { signalingPort: 9000 } } },
      /^testbed:receiver\.alternate\.signalingPort: 9000 equals receiver\.signalingPort; accepted: another port \(both ITGRecv of a receiver pod listen in it\)$/,
    ],
    [
      "a data port on the alternate's signaling port",
      { kubernetes: { nodePortRange: "9000-32767" }, receiver: { alternate: { signalingPort: 31000 } } },
      /^testbed:receiver\.dataPort: 31000 equals receiver\.alternate\.signalingPort; accepted: a port no ITGRecv listens on for signaling$/,
    ],
  ];

  it.each(cases)("%s", (_label, change, message) => {
    const found = problems({ ...valid, ...change });
    expect(found.some((p) => message.test(p)), `problems were:\n${found.join("\n")}`).toBe(true);
  });

  it("has at least ten distinct refusals", () => {
    expect(new Set(cases.map((c) => c[2].source)).size).toBeGreaterThanOrEqual(10);
  });
});

describe("valid configurations are accepted", () => {
  it.each([
    ["the defaults", {}],
    ["IPv6 only", { families: ["ipv6"] }],
    ["Cilium 1.18 with the HWE kernel stated", { cilium: { version: "1.18.2" }, openstack: { imageKernel: "5.15" } }],
    ["kubelet 1.35 with failCgroupV1 false", { kubernetes: { version: "1.35.0", failCgroupV1: false } }],
    ["kube-proxy's nftables mode on Ubuntu 22.04", { dataplane: "nftables", openstack: { image: "ubuntu-22.04", imageKernel: "5.15", imageCgroup: "v2" }, kubernetes: { version: "1.33.9" } }],
    ["a wide NodePort range for 10000 NodePort Services", { kubernetes: { nodePortRange: "20000-32767" } }],
    ["created flavors with the host clock", { flavors: { create: true, hostCpuMHz: 3000 } }],
    ["no link cap", { linkMbps: 0 }],
    ["the largest sweep that fits", { sweep: { services: [1, 65531] } }],
    ["every path on two workers", { paths: ["nodeport-local", "nodeport-remote", "clusterip"], workers: 2 }],
    ["native pod routing in both families", { podRouting: "native" }],
    ["a narrowed NodePort range while the remote path is not listed", { kubernetes: { nodePortRange: "30000-31000" }, receiver: { alternate: { dataPort: 30999 } } }],
    ["the most workers", { workers: 9 }],
  ])("%s", (_label, change) => {
    expect(() => parseScenario({ ...valid, ...change })).not.toThrow();
  });
});

describe("placeholders", () => {
  it("flags the committed documentation values and nothing else", () => {
    expect(placeholdersIn(parseScenario({ ...valid, ...PLACEHOLDERS }))).toEqual(["testbed:adminCidr", "testbed:sshPublicKey"]);
    expect(placeholdersIn(parseScenario({ ...valid, adminCidr: "198.51.100.0/24" }))).toContain("testbed:adminCidr");
    expect(placeholdersIn(parseScenario({ ...valid, adminCidr: "130.0.0.1/32", sshPublicKey: "ssh-ed25519 AAAAC3Nza me" }))).toEqual([]);
  });
});

describe("Pulumi config files", () => {
  const project = parseYaml(fs.readFileSync("Pulumi.yaml", "utf8")) as { config: Record<string, { value: unknown }>; main: string };
  const names = ["iptables", "nftables", "ebpf"] as const;
  const stacks = names.map((s) => parseYaml(fs.readFileSync(`Pulumi.${s}.yaml`, "utf8")) as { config: Record<string, unknown> });

  it("gives project-level values equal to the schema's defaults", () => {
    const defaults = scenarioSchema.parse(valid) as Record<string, unknown>;
    for (const [key, spec] of Object.entries(project.config)) {
      expect(key.startsWith("testbed:")).toBe(true);
      expect(spec.value).toEqual(defaults[key.slice("testbed:".length)]);
    }
    expect(project.main).toBe("infra/");
  });

  it("has stacks that differ in testbed:dataplane and in what that dataplane needs, nothing else", () => {
    const [iptables, nftables, ebpf] = stacks.map((s): Record<string, unknown> => ({ ...s.config, "testbed:dataplane": undefined }));
    expect(iptables).toEqual(ebpf);
    // nftables: kernel 5.13+ (Ubuntu 22.04, cgroup v2) and the release where the mode is GA.
    expect({ ...nftables, "testbed:openstack": undefined, "testbed:kubernetes": undefined }).toEqual(iptables);
    expect(nftables!["testbed:openstack"]).toEqual({ image: "ubuntu-22.04", imageKernel: "5.15", imageCgroup: "v2" });
    expect(nftables!["testbed:kubernetes"]).toEqual({ version: "1.33.9" });
    expect(stacks.map((s) => s.config["testbed:dataplane"])).toEqual([...names]);
  });

  it("parses as committed, through the same reader the program uses", () => {
    for (const stack of stacks) {
      const flat: Record<string, string> = {};
      for (const [k, spec] of Object.entries(project.config)) flat[k] = JSON.stringify(spec.value);
      for (const [k, v] of Object.entries(stack.config)) flat[k] = typeof v === "string" ? v : JSON.stringify(v);
      const raw = readRawScenario((k) => flat[`testbed:${k}`]);
      expect(() => parseScenario(raw)).not.toThrow();
    }
  });
});
