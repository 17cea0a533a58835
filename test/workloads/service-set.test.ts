import { testScenario } from "../fixtures/scenario.js";
import { describe, expect, it } from "vitest";
import { cidrContains, nthAddress, parseCidr } from "../../scenario/cidr.js";
import { ScenarioError } from "../../scenario/schema.js";
import { buildServiceSet, receiverService, scaledNodePorts } from "../../workloads/service-set.js";

const scenario = testScenario;

describe("buildServiceSet", () => {
  it("uses NodePort while the default range lasts (2766 after the receiver's two), ClusterIP after", () => {
    const s = scenario();
    const set = buildServiceSet(s, 3000);
    expect(set.counts).toEqual({ nodePort: 2766, clusterIp: 234 });
    expect(set.scaled.filter((x) => x.type === "NodePort")).toHaveLength(2766);
    expect(set.scaled.slice(0, 2766).every((x) => x.type === "NodePort")).toBe(true);
    expect(set.scaled.slice(2766).every((x) => x.type === "ClusterIP" && x.ports[0]!.nodePort === undefined)).toBe(true);
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
    const ports = buildServiceSet(s, 2766).scaled.map((x) => x.ports[0]!.nodePort!);
    expect(new Set(ports).size).toBe(2766);
    expect(ports.every((p) => p >= 30000 && p <= 32767)).toBe(true);
    expect(ports).not.toContain(30900);
    expect(ports).not.toContain(31000);
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
    const steps = [1, 1000, 2766, 2767, 5000].map((n) => buildServiceSet(s, n).scaled);
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
      receiver: { signalingNodePort: 30000, dataPort: 30005 },
    });
    const set = buildServiceSet(s, 12);
    expect(set.counts).toEqual({ nodePort: 8, clusterIp: 4 });
    const ports = set.scaled.filter((x) => x.type === "NodePort").map((x) => x.ports[0]!.nodePort!);
    expect([...ports].sort((a, b) => a - b)).toEqual([30001, 30002, 30003, 30004, 30006, 30007, 30008, 30009]);
  });

  it("builds the receiver Service: data port = Service port = NodePort = target port for TCP and UDP", () => {
    const r = receiverService(scenario());
    expect(r.ports).toEqual([
      { name: "signaling", protocol: "TCP", port: 9000, targetPort: 9000, nodePort: 30900 },
      { name: "data-tcp", protocol: "TCP", port: 31000, targetPort: 31000, nodePort: 31000 },
      { name: "data-udp", protocol: "UDP", port: 31000, targetPort: 31000, nodePort: 31000 },
    ]);
  });

  it("defaults N to the scenario's services", () => {
    expect(buildServiceSet(scenario({ services: 5 })).scaled).toHaveLength(5);
    expect(buildServiceSet(scenario({ services: 0 })).scaled).toHaveLength(0);
  });
});
