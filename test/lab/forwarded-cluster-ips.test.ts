// What each lab dataplane forwards, as read back from the kernel's own listings: kube-proxy's
// iptables-save, its nftables service-ips map, the eBPF service map; and the count of a step's
// Services that the lab's gate takes from them (the receiver's left out, only the service subnets').
import ipaddr from "ipaddr.js";
import { describe, expect, it } from "vitest";
import { heldServices } from "../../backends/lab.js";
import { decodeServiceEntry, encodeServiceKey, encodeServiceValue, forwardingFrontends } from "../../lab/dataplanes/ebpf/service-maps.js";
import { forwardedClusterIpsOfSave } from "../../lab/dataplanes/iptables/kernel.js";
import { forwardedClusterIpsOfMap } from "../../lab/dataplanes/nftables/kernel.js";
import { buildServiceSet } from "../../workloads/service-set.js";
import { testScenario } from "../fixtures/scenario.js";

describe("forwarded ClusterIPs, read from the dataplanes' listings", () => {
  it("iptables: the destinations KUBE-SERVICES sends to a Service chain, not the REJECTs or the NodePort jump", () => {
    const saved = [
      "*nat",
      ":KUBE-SERVICES - [0:0]",
      '-A KUBE-SERVICES -d 10.96.0.10/32 -p udp -m comment --comment "kube-system/kube-dns:dns cluster IP" -m udp --dport 53 -j KUBE-SVC-TCOU7JCQXEZGVUNU',
      "-A KUBE-SERVICES -d fd00:10:96::2/128 -p tcp -m tcp --dport 80 -j KUBE-SVC-AAAAAAAAAAAAAAAA",
      "-A KUBE-SERVICES -d 10.96.0.11/32 -p tcp -m tcp --dport 80 -j KUBE-EXT-BBBBBBBBBBBBBBBB",
      "-A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS",
      "-A KUBE-SVC-AAAAAAAAAAAAAAAA -d 10.96.0.12/32 -j KUBE-SEP-CCCCCCCCCCCCCCCC",
      "COMMIT",
    ].join("\n");
    expect(forwardedClusterIpsOfSave(saved)).toEqual(["10.96.0.10", "fd00:10:96::2"]);
  });

  it("nftables: the addresses of the service-ips map's elements", () => {
    const listed = JSON.stringify({
      nftables: [
        { metainfo: { version: "1.0.6" } },
        { map: { family: "ip", name: "service-ips", table: "kube-proxy", elem: [[{ concat: ["10.96.0.10", "tcp", 53] }, { goto: { target: "svc" } }], [{ concat: ["10.96.0.11", "udp", 53] }, { goto: { target: "svc2" } }]] } },
      ],
    });
    expect(forwardedClusterIpsOfMap(listed)).toEqual(["10.96.0.10", "10.96.0.11"]);
    expect(forwardedClusterIpsOfMap(JSON.stringify({ nftables: [{ map: { name: "service-ips" } }] }))).toEqual([]);
  });

  it("eBPF: service map entries decode back to what was encoded; only slot 0 with backends forwards", () => {
    const bytes = (b: Buffer) => [...b];
    const frontend = { address: "fd00:10:96::7", port: 8080, protocol: "UDP" as const, revNatIndex: 9, flags: 6, backendIds: [3, 4] };
    const slot0 = decodeServiceEntry("ipv6", bytes(encodeServiceKey(frontend, 0)), bytes(encodeServiceValue(frontend, 0)));
    expect(slot0).toEqual({ address: "fd00:10:96::7", port: 8080, protocol: "UDP", backendSlot: 0, scope: 0, count: 2, flags: 6, backendId: 0, revNatIndex: 9 });
    const slot2 = decodeServiceEntry("ipv6", bytes(encodeServiceKey(frontend, 2)), bytes(encodeServiceValue(frontend, 2)));
    expect(slot2).toMatchObject({ backendSlot: 2, count: 0, backendId: 4, revNatIndex: 9 });
    const empty = { ...frontend, address: "10.96.0.9", backendIds: [] };
    const none = decodeServiceEntry("ipv4", bytes(encodeServiceKey(empty, 0)), bytes(encodeServiceValue(empty, 0)));
    expect(forwardingFrontends([slot0, slot2, none]).map((e) => e.address)).toEqual(["fd00:10:96::7"]);
  });
});

describe("the Services a step's dataplane holds", () => {
  const scenario = testScenario();
  const set = buildServiceSet(scenario, 3);
  const ips = (family: "ipv4" | "ipv6") => set.scaled.map((s) => s.clusterIPs[family]!);
  const subnets = scenario.kubernetes.serviceSubnets;

  it("counts the scaled Services' ClusterIPs per family, without the receiver's or addresses outside the service subnets", () => {
    const forwarded = [...ips("ipv4"), ...ips("ipv6"), ...Object.values(set.receiver.clusterIPs), "198.18.1.21", "2001:2:0:20::21"];
    expect(heldServices(forwarded, set, subnets)).toEqual({ ipv4: 3, ipv6: 3 });
  });

  it("sees a larger step's leftovers and a missing Service, and reads every spelling of an address as one", () => {
    const bigger = buildServiceSet(scenario, 5);
    const leftovers = bigger.scaled.map((s) => s.clusterIPs.ipv4!);
    expect(heldServices(leftovers, set, subnets)).toEqual({ ipv4: 5, ipv6: 0 });
    const expanded = ips("ipv6").map((a) => ipaddr.parse(a).toNormalizedString());
    expect(expanded[0]).not.toBe(ips("ipv6")[0]);
    expect(heldServices([...ips("ipv6"), ...expanded.slice(0, 1)], set, subnets).ipv6).toBe(3);
  });
});
