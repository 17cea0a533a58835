import { endianness } from "node:os";
import { describe, expect, it } from "vitest";
import { bpftoolBatch, LbMapAgent } from "../../lab/dataplanes/ebpf/lb-agent.js";
import {
  encodeBackend,
  encodeReverseNat,
  encodeServiceKey,
  encodeServiceValue,
  planServiceMaps,
  SVC_FLAG,
  type LbEndpoints,
} from "../../lab/dataplanes/ebpf/service-maps.js";
import type { ServiceSet } from "../../workloads/service-model.js";
import { fixtureServiceSet } from "./ebpf-fixtures.js";

const endpoints = {
  node: { ipv4: "198.18.1.2", ipv6: "2001:2:0:20::2" },
  pod: { ipv4: "198.18.2.2", ipv6: "2001:2:0:40::2" },
};

function planError(set: ServiceSet, lbMapMax?: number, ep: LbEndpoints = endpoints): string {
  try {
    planServiceMaps(set, ep, lbMapMax);
  } catch (error) {
    return (error as Error).message;
  }
  throw new Error("input was accepted");
}

describe("service map plan", () => {
  it("gives every Service port a ClusterIP frontend and every NodePort port a node frontend, per family", () => {
    const plan = planServiceMaps(fixtureServiceSet({ nodePort: 3, clusterIp: 4, protocols: ["TCP", "UDP"] }), endpoints);
    // Receiver: 3 ports, 2 frontends each. Scaled: 3 NodePort Services x 2 ports x 2 frontends, 4 ClusterIP x 2 ports x 1.
    const frontendsPerFamily = 3 * 2 + 3 * 2 * 2 + 4 * 2;
    expect(plan.frontends).toHaveLength(2 * frontendsPerFamily);
    // Slot 0 plus one backend slot per frontend.
    expect(plan.serviceEntries).toEqual({ ipv4: 2 * frontendsPerFamily, ipv6: 2 * frontendsPerFamily });
    const svc1 = plan.frontends.filter((f) => f.servicePort === "scale/svc-1:tcp" && f.family === "ipv4");
    expect(svc1.map((f) => [f.kind, f.address, f.port, f.protocol])).toEqual([
      ["ClusterIP", "198.19.128.3", 80, "TCP"],
      ["NodePort", "198.18.1.2", 20001, "TCP"],
    ]);
    expect(svc1[0]!.flags).toBe(0);
    expect(svc1[1]!.flags).toBe(SVC_FLAG.NODEPORT | SVC_FLAG.ROUTABLE | SVC_FLAG.LOCAL_SCOPE);
    const backend = plan.backends.find((b) => b.id === svc1[1]!.backendIds[0]);
    expect(backend).toMatchObject({ address: "198.18.2.2", port: 8001, protocol: "TCP" });
  });

  it("numbers service ids from 1 without reuse and shares a backend among frontends of the same target", () => {
    const plan = planServiceMaps(fixtureServiceSet({ nodePort: 2, clusterIp: 1 }), endpoints);
    expect(plan.frontends.map((f) => f.revNatIndex)).toEqual(plan.frontends.map((_, i) => i + 1));
    // ClusterIP and NodePort frontends of one port point at one backend; ids are unique across families.
    const ids = new Set(plan.frontends.map((f) => f.backendIds[0]));
    expect(plan.backends.map((b) => b.id).sort((a, b) => a - b)).toEqual([...ids].sort((a, b) => a - b));
    expect(plan.backends).toHaveLength(2 * (3 + 3)); // receiver: 9000/TCP, 31000/TCP, 31000/UDP; 3 scaled targets
  });

  it("plans the paths' receivers after the set, each to its own backend, and names them in errors", () => {
    const set = fixtureServiceSet({ nodePort: 1, clusterIp: 1 });
    const remote = { ...fixtureServiceSet({ nodePort: 0, clusterIp: 3 }).scaled[2]!, namespace: "ditg", name: "ditg-receiver-clusterip" };
    const pod2 = { ipv4: "198.18.22.2", ipv6: "2001:2:0:42::2" };
    const plan = planServiceMaps(set, { ...endpoints, backendOf: (s) => (s.name === remote.name ? pod2 : undefined) }, undefined, [remote]);
    const last = plan.frontends.filter((f) => f.family === "ipv4").at(-1)!;
    expect([last.servicePort, last.kind, last.address, last.port]).toEqual(["ditg/ditg-receiver-clusterip:tcp", "ClusterIP", "198.19.128.4", 80]);
    expect(plan.backends.find((b) => b.id === last.backendIds[0])).toMatchObject({ address: "198.18.22.2", port: 8002 });
    // Its ClusterIP taken by a Service of the set: refused, naming the path's receiver.
    const clash = { ...remote, clusterIPs: set.scaled[1]!.clusterIPs };
    expect(() => planServiceMaps(set, endpoints, undefined, [clash])).toThrow(/^paths\[0\]\(ditg\/ditg-receiver-clusterip\)\.ports\[0\]: frontend 198\.19\.128\.3:80\/TCP is already used by scale\/svc-1:tcp/);
  });

  it("serves only the families that have both a node and a pod address", () => {
    const plan = planServiceMaps(fixtureServiceSet({ nodePort: 1, clusterIp: 1 }), {
      node: { ipv4: endpoints.node.ipv4 },
      pod: { ipv4: endpoints.pod.ipv4, ipv6: endpoints.pod.ipv6 },
    });
    expect(plan.families).toEqual(["ipv4"]);
    expect(plan.serviceEntries.ipv6).toBe(0);
  });

  it("rejects input the maps cannot hold, naming the Service and key", () => {
    const set = fixtureServiceSet({ nodePort: 2, clusterIp: 0 });
    const clash: ServiceSet = {
      ...set,
      scaled: [set.scaled[0]!, { ...set.scaled[1]!, ports: [{ ...set.scaled[1]!.ports[0]!, nodePort: 20000 }] }],
    };
    expect(planError(clash)).toMatch(
      /^scaled\[1\]\(scale\/svc-1\)\.ports\[0\]: frontend 198\.18\.1\.2:20000\/TCP is already used by scale\/svc-0:tcp/,
    );
    const badPort: ServiceSet = { ...set, scaled: [{ ...set.scaled[0]!, ports: [{ ...set.scaled[0]!.ports[0]!, nodePort: 70000 }] }] };
    expect(planError(badPort)).toMatch(/^scaled\[0\]\(scale\/svc-0\)\.ports\[0\]\.nodePort: 70000 is not a port; accepted: an integer 1-65535/);
    const badProto: ServiceSet = { ...set, scaled: [{ ...set.scaled[0]!, ports: [{ ...set.scaled[0]!.ports[0]!, protocol: "SCTP" as never }] }] };
    expect(planError(badProto)).toMatch(/\.ports\[0\]\.protocol: "SCTP" is not accepted; accepted: TCP, UDP/);
    expect(planError(set, 10)).toMatch(/^lbMapMax: 10 is too small; the ipv4 service map needs 20 entries; accepted: at least 20/);
    expect(planError(set, 0)).toMatch(/^lbMapMax: 0 is not accepted/);
    expect(planError(set, undefined, { ...endpoints, node: { ipv4: "2001:2::1" } })).toMatch(/^node\.ipv4: "2001:2::1" is not an IPv4 address/);
  });
});

describe.skipIf(endianness() !== "LE")("map encoding (little-endian host)", () => {
  const frontend = { address: "198.18.1.2", port: 20001, protocol: "TCP" as const, revNatIndex: 258, flags: 0x46, backendIds: [7] };

  it("lays out lb4_key: address and port in network order, slot in host order, proto, scope, pad", () => {
    expect(encodeServiceKey(frontend, 0).toString("hex")).toBe("c6120102" + "4e21" + "0000" + "06" + "00" + "0000");
    expect(encodeServiceKey(frontend, 1).toString("hex")).toBe("c6120102" + "4e21" + "0100" + "06" + "00" + "0000");
    expect(encodeServiceKey({ ...frontend, address: "2001:2:0:20::2", protocol: "UDP" }, 0)).toHaveLength(24);
  });

  it("lays out lb_service: slot 0 holds the count, slot n the backend id", () => {
    expect(encodeServiceValue(frontend, 0).toString("hex")).toBe("00000000" + "0100" + "0201" + "46" + "00" + "0000");
    expect(encodeServiceValue(frontend, 1).toString("hex")).toBe("07000000" + "0000" + "0201" + "46" + "00" + "0000");
  });

  it("lays out lb4_backend and the packed reverse-NAT value", () => {
    const backend = { id: 7, family: "ipv4" as const, address: "198.18.2.2", port: 8001, protocol: "UDP" as const };
    expect(encodeBackend(backend).toString("hex")).toBe("c6120202" + "1f41" + "11" + "00" + "0000" + "00" + "00");
    expect(encodeReverseNat(frontend).toString("hex")).toBe("c6120102" + "4e21");
    expect(encodeReverseNat({ address: "2001:2:0:20::2", port: 20001 })).toHaveLength(18);
  });
});

describe("bpftool batch", () => {
  it("fills the maps with one line per entry, a backend before the slots that name it, each frontend's master entry last", () => {
    const plan = planServiceMaps(fixtureServiceSet({ nodePort: 1, clusterIp: 1 }), endpoints);
    const lines = bpftoolBatch(new LbMapAgent().upsert(plan, plan.families), (name) => `/pins/${name}`).trim().split("\n");
    const entries = plan.serviceEntries.ipv4 + plan.serviceEntries.ipv6;
    expect(lines).toHaveLength(plan.backends.length + plan.frontends.length + entries);
    for (const line of lines) expect(line).toMatch(/^map update pinned \/pins\/lb[46]_\w+ key hex( [0-9a-f]{2})+ value hex( [0-9a-f]{2})+$/);
    expect(lines[0]).toContain("_backends ");
    // Slot 1, reverse NAT, master: per frontend, in that order.
    const kinds = lines.map((l) => (l.includes("_backends ") ? "b" : l.includes("_reverse_nat ") ? "r" : "s"));
    expect(kinds.join("").replace(/^b/, "").replace(/b/g, "")).toMatch(/^(srs)+$/);
    expect(lines.filter((l) => l.includes("/pins/lb6_services"))).toHaveLength(plan.serviceEntries.ipv6);
  });
});
