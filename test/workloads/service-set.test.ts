import { testScenario } from "../fixtures/scenario.js";
import { describe, expect, it } from "vitest";
import { cidrContains, nthAddress, parseCidr } from "../../scenario/cidr.js";
import { ScenarioError, serviceCapacity } from "../../scenario/schema.js";
import { buildServiceSet, pathReceiverPorts, pathReceiverService, pathReceiverServices, receiverService, scaledNodePorts, withoutReserved } from "../../workloads/service-set.js";

const scenario = testScenario;

describe("buildServiceSet", () => {
  it("uses NodePort while the default range lasts (2764 after the receiver's four: two per ITGRecv), ClusterIP after", () => {
    const s = scenario();
    const set = buildServiceSet(s, 3000);
    expect(set.counts).toEqual({ nodePort: 2764, clusterIp: 236 });
    expect(set.scaled.filter((x) => x.type === "NodePort")).toHaveLength(2764);
    expect(set.scaled.slice(0, 2764).every((x) => x.type === "NodePort")).toBe(true);
    expect(set.scaled.slice(2764).every((x) => x.type === "ClusterIP" && x.ports[0]!.nodePort === undefined)).toBe(true);
  });

  it("gives every NodePort Service ETP=Local and none to ClusterIP Services", () => {
    const set = buildServiceSet(scenario(), 2800);
    for (const svc of set.scaled) {
      expect(svc.externalTrafficPolicy).toBe(svc.type === "NodePort" ? "Local" : undefined);
    }
    expect(set.receiver.externalTrafficPolicy).toBe("Local");
  });

  it("assigns unique NodePorts inside the range, never the receiver's, and uses the whole free range", () => {
    const s = scenario();
    const ports = buildServiceSet(s, 2764).scaled.map((x) => x.ports[0]!.nodePort!);
    expect(new Set(ports).size).toBe(2764);
    expect(ports.every((p) => p >= 30000 && p <= 32767)).toBe(true);
    for (const receiver of [30900, 31000, 30902, 31002]) expect(ports).not.toContain(receiver);
  });

  it("draws NodePorts at random, reproducibly from sweep.seed", () => {
    const a = scaledNodePorts(scenario());
    const again = scaledNodePorts(scenario());
    const other = scaledNodePorts(scenario({ sweep: { seed: 7 } }));
    expect(again).toEqual(a);
    expect(other).not.toEqual(a);
    // Not the ascending range: few ports sit at their sorted position.
    const sorted = [...a].sort((x, y) => x - y);
    expect(a.filter((p, i) => p === sorted[i]).length).toBeLessThan(20);
  });

  it("keeps each Service's name, NodePort and ClusterIPs as N grows (step k is a prefix of step k+1)", () => {
    const s = scenario();
    const steps = [1, 1000, 2764, 2765, 5000].map((n) => buildServiceSet(s, n).scaled);
    for (let k = 0; k + 1 < steps.length; k++) {
      expect(steps[k + 1]!.slice(0, steps[k]!.length)).toEqual(steps[k]);
    }
  });

  it("assigns explicit ClusterIPs per family, unique, inside the subnets, skipping the reserved addresses", () => {
    const s = scenario();
    const n = 3000;
    const set = buildServiceSet(s, n);
    for (const f of ["ipv4", "ipv6"] as const) {
      const subnet = parseCidr(s.kubernetes.serviceSubnets[f])!;
      const reserved = [0, 1, 2, 10].map((i) => nthAddress(subnet, i));
      const ips = set.scaled.map((x) => x.clusterIPs[f]!);
      expect(new Set(ips).size).toBe(n);
      expect(ips.every((ip) => cidrContains(subnet, ip))).toBe(true);
      for (const r of reserved) expect(ips).not.toContain(r);
      expect(set.receiver.clusterIPs[f]).toBe(nthAddress(subnet, 2));
    }
    expect(set.scaled[0]!.clusterIPs).toEqual({ ipv4: "10.96.0.3", ipv6: "fd00:10:96::3" });
    expect(set.scaled[7]!.clusterIPs.ipv4).toBe("10.96.0.11");
  });

  it("fills the subnet up to its last usable address and refuses one more, naming key, value and limit", () => {
    const s = scenario({
      kubernetes: { serviceSubnets: { ipv4: "10.96.0.0/24", ipv6: "fd00:10:96::/120" } },
      sweep: { services: [1, 100, 251] },
    });
    const full = buildServiceSet(s, 251);
    const last = full.scaled.map((x) => x.clusterIPs.ipv4!);
    expect(last.at(-1)).toBe("10.96.0.254");
    expect(new Set(last).size).toBe(251);
    expect(() => buildServiceSet(s, 252)).toThrow(ScenarioError);
    expect(() => buildServiceSet(s, 252)).toThrow(/testbed:sweep\.services: 252 Services do not fit.*accepted: an integer from 0 to 251/);
    expect(() => buildServiceSet(s, -1)).toThrow(/testbed:sweep\.services: -1 is not accepted; accepted: an integer >= 0/);
  });

  it("uses only the enabled families", () => {
    const set = buildServiceSet(scenario({ families: ["ipv6"] }), 2);
    expect(set.scaled.map((x) => x.clusterIPs)).toEqual([{ ipv6: "fd00:10:96::3" }, { ipv6: "fd00:10:96::4" }]);
  });

  it("follows a custom NodePort range and receiver ports", () => {
    const s = scenario({
      kubernetes: { nodePortRange: "30000-30009" },
      receiver: { signalingNodePort: 30000, dataPort: 30005, alternate: { signalingNodePort: 30001, dataPort: 30006 } },
    });
    const set = buildServiceSet(s, 12);
    expect(set.counts).toEqual({ nodePort: 6, clusterIp: 6 });
    const ports = set.scaled.filter((x) => x.type === "NodePort").map((x) => x.ports[0]!.nodePort!);
    expect([...ports].sort((a, b) => a - b)).toEqual([30002, 30003, 30004, 30007, 30008, 30009]);
  });

  it("builds the receiver Service for the pod's two ITGRecv: data port = Service port = NodePort = target port for TCP and UDP", () => {
    const r = receiverService(scenario());
    expect(r.ports).toEqual([
      { name: "signaling", protocol: "TCP", port: 9000, targetPort: 9000, nodePort: 30900 },
      { name: "data-tcp", protocol: "TCP", port: 31000, targetPort: 31000, nodePort: 31000 },
      { name: "data-udp", protocol: "UDP", port: 31000, targetPort: 31000, nodePort: 31000 },
      { name: "signaling-2", protocol: "TCP", port: 9001, targetPort: 9001, nodePort: 30902 },
      { name: "data-tcp-2", protocol: "TCP", port: 31002, targetPort: 31002, nodePort: 31002 },
      { name: "data-udp-2", protocol: "UDP", port: 31002, targetPort: 31002, nodePort: 31002 },
    ]);
    expect([0, 1].map((i) => pathReceiverPorts(scenario(), "nodeport-local", i as 0 | 1))).toEqual([
      { signalingPort: 9000, signalingNodePort: 30900, dataPort: 31000 },
      { signalingPort: 9001, signalingNodePort: 30902, dataPort: 31002 },
    ]);
  });

  it("defaults N to the scenario's services", () => {
    expect(buildServiceSet(scenario({ services: 5 })).scaled).toHaveLength(5);
    expect(buildServiceSet(scenario({ services: 0 })).scaled).toHaveLength(0);
  });
});

describe("the receivers of the further paths", () => {
  const all = () => scenario({ paths: ["nodeport-local", "nodeport-remote", "clusterip"], workers: 2 });

  it("takes the remote receiver's NodePorts out of the order without moving any other Service's NodePort", () => {
    const paper = scaledNodePorts(scenario());
    const remote = scaledNodePorts(scenario({ paths: ["nodeport-remote"], workers: 2 }));
    expect(remote).toHaveLength(paper.length - 4);
    for (const reserved of [30901, 31001, 30903, 31003]) expect(remote).not.toContain(reserved);
    expect(new Set(remote).size).toBe(remote.length);
    // Every slot keeps its port but the four that held a reserved one, and at most the two the
    // paper's order filled for the alternate ITGRecv's ports (from the end of the shuffle, which the
    // remote path's reservations shorten).
    const moved = remote.map((p, i) => [i, p, paper[i]] as const).filter(([, p, before]) => p !== before);
    expect(moved.map(([i]) => paper[i])).toEqual(expect.arrayContaining([30901, 31001, 30903, 31003]));
    expect(moved.length).toBeLessThanOrEqual(6);
    // What moved in comes from the end of the order, which only the largest steps reach, or was itself moved in by the paper's order.
    const filledByPaper = new Set(moved.map(([i]) => paper[i]));
    for (const [, p] of moved) expect(paper.indexOf(p) >= paper.length - 8 || filledByPaper.has(p), String(p)).toBe(true);
  });

  it("takes the alternate ITGRecv's NodePorts out of the order the same way: the first receiver's alone shape the shuffle", () => {
    const paper = scaledNodePorts(scenario());
    const elsewhere = scaledNodePorts(scenario({ receiver: { alternate: { signalingNodePort: 32000, dataPort: 32001 } } }));
    expect(paper).not.toContain(30902);
    expect(paper).not.toContain(31002);
    const moved = elsewhere.map((p, i) => [p, paper[i]] as const).filter(([p, before]) => p !== before);
    expect(moved.length).toBeLessThanOrEqual(4);
    expect(elsewhere).not.toContain(32000);
    expect(elsewhere).not.toContain(32001);
  });

  it("withoutReserved keeps each free slot, fills a reserved one from the end, and ends sooner", () => {
    const reserved = new Set([3, 9, 8]);
    expect(withoutReserved([1, 3, 5, 7, 9, 2, 8], reserved)).toEqual([1, 2, 5, 7]);
    expect(withoutReserved([3, 9, 8], reserved)).toEqual([]);
    expect(withoutReserved([1, 2, 9], reserved)).toEqual([1, 2]);
    expect(withoutReserved([1, 2], new Set())).toEqual([1, 2]);
  });

  it("gives the remote receiver a NodePort Service with externalTrafficPolicy Cluster on its own ports", () => {
    const s = all();
    const remote = pathReceiverService(s, "nodeport-remote");
    expect(remote).toMatchObject({ name: "ditg-receiver-remote", namespace: "ditg", type: "NodePort", externalTrafficPolicy: "Cluster", selector: { "app.kubernetes.io/name": "ditg-receiver-remote" } });
    expect(remote.ports.map((p) => [p.name, p.protocol, p.port, p.targetPort, p.nodePort])).toEqual([
      ["signaling", "TCP", 9000, 9000, 30901],
      ["data-tcp", "TCP", 31001, 31001, 31001],
      ["data-udp", "UDP", 31001, 31001, 31001],
      ["signaling-2", "TCP", 9001, 9001, 30903],
      ["data-tcp-2", "TCP", 31003, 31003, 31003],
      ["data-udp-2", "UDP", 31003, 31003, 31003],
    ]);
  });

  it("gives the clusterip path's receiver a ClusterIP Service on the pod's ports, no NodePort", () => {
    const cip = pathReceiverService(all(), "clusterip");
    expect(cip).toMatchObject({ name: "ditg-receiver-clusterip", type: "ClusterIP" });
    expect(cip.externalTrafficPolicy).toBeUndefined();
    expect(cip.ports.map((p) => [p.name, p.port, p.targetPort, p.nodePort])).toEqual([
      ["signaling", 9000, 9000, undefined],
      ["data-tcp", 31000, 31000, undefined],
      ["data-udp", 31000, 31000, undefined],
      ["signaling-2", 9001, 9001, undefined],
      ["data-tcp-2", 31002, 31002, undefined],
      ["data-udp-2", 31002, 31002, undefined],
    ]);
  });

  it("puts their ClusterIPs at the top of the subnets, where no scaled Service reaches even at capacity", () => {
    const s = all();
    expect(pathReceiverService(s, "nodeport-remote").clusterIPs).toEqual({ ipv4: "10.96.255.254", ipv6: "fd00:10:96::fffe" });
    expect(pathReceiverService(s, "clusterip").clusterIPs).toEqual({ ipv4: "10.96.255.253", ipv6: "fd00:10:96::fffd" });
    const small = scenario({ paths: ["nodeport-local", "clusterip"], workers: 2, sweep: { services: [1] }, kubernetes: { serviceSubnets: { ipv4: "10.96.0.0/24", ipv6: "fd00:10:96::/120" } } });
    const full = buildServiceSet(small, serviceCapacity(small).clusterIp);
    const receivers = pathReceiverServices(small);
    expect(receivers.map((r) => r.name)).toEqual(["ditg-receiver", "ditg-receiver-clusterip"]);
    const taken = [...full.scaled, ...receivers].flatMap((x) => Object.values(x.clusterIPs));
    expect(new Set(taken).size).toBe(taken.length);
    expect(() => buildServiceSet(small, serviceCapacity(small).clusterIp + 1)).toThrow(ScenarioError);
  });

  it("leaves the paper's set as it was when only the paper's path is listed", () => {
    expect(pathReceiverServices(scenario())).toEqual([receiverService(scenario())]);
    expect(buildServiceSet(scenario({ paths: ["nodeport-local", "clusterip"], workers: 2 }), 100).scaled).toEqual(buildServiceSet(scenario(), 100).scaled);
  });
});
