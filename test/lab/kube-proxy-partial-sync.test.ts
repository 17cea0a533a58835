// kube-proxy's iptables partial syncs (MinimizeIPTablesRestore) against kube-proxy's own expectations:
// TestSyncProxyRulesRepeated of pkg/proxy/iptables/proxier_test.go (aojea/kubernetes at
// 4e7ccb27627e47cd5ddc447fbf22a41ea44ff5ba), replayed sync by sync on one proxier. Upstream compares
// the iptables-restore input of each sync, sorted by sortIPTablesRules, with its expected text; here
// the generated input, sorted by the port of that sort, equals the expected text byte for byte.
// Also TestSyncProxyRulesLargeClusterMode's rules for stale chains and comments above 1000 endpoints.
import { describe, expect, it } from "vitest";
import {
  KubeProxyIptables,
  countRestoreRules,
  parseRestore,
  sortLikeKubeProxyTests,
  type KubeProxyNode,
  type ServiceEndpoints,
} from "../../lab/dataplanes/iptables/rules.js";
import type { ServiceSpec } from "../../workloads/service-model.js";

// NewFakeProxier of that version: mark written "0x4000", no --random-fully, nfacct counters present,
// detector 10.0.0.0/8, NodePorts on every local address (localhost NodePorts on).
const NODE: KubeProxyNode = { family: "ipv4", masqueradeMark: "0x4000", randomFully: false, nfacct: true, clusterCIDR: "10.0.0.0/8" };

const clusterIp = (ns: string, name: string, ip: string, port: number, portName: string): ServiceSpec => ({
  namespace: ns,
  name,
  type: "ClusterIP",
  clusterIPs: { ipv4: ip },
  selector: {},
  ports: [{ name: portName, protocol: "TCP", port, targetPort: port }],
});
const remote = (...ips: string[]) => ips.map((ip) => ({ ip, local: false }));

// The filter table every sync of the test writes, verbatim.
const FILTER = `*filter
:KUBE-NODEPORTS - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-EXTERNAL-SERVICES - [0:0]
:KUBE-FIREWALL - [0:0]
:KUBE-FORWARD - [0:0]
:KUBE-PROXY-FIREWALL - [0:0]
-A KUBE-FIREWALL -m comment --comment "block incoming localnet connections" -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP
-A KUBE-FORWARD -m conntrack --ctstate INVALID -m nfacct --nfacct-name ct_state_invalid_dropped_pkts -j DROP
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
COMMIT
`;
const NAT_STATIC = `-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE`;
const NAT_HEAD = `*nat
:KUBE-NODEPORTS - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-POSTROUTING - [0:0]`;
const LAST = `-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS`;
const CLUSTER_IP = {
  svc1: `-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j KUBE-SVC-XPGD46QRK7WJZT7O`,
  svc2: `-A KUBE-SERVICES -m comment --comment "ns2/svc2:p8080 cluster IP" -m tcp -p tcp -d 172.30.0.42 --dport 8080 -j KUBE-SVC-2VJB64SDSIJUP5T6`,
  svc3: `-A KUBE-SERVICES -m comment --comment "ns3/svc3:p80 cluster IP" -m tcp -p tcp -d 172.30.0.43 --dport 80 -j KUBE-SVC-X27LE4BHSL4DOUIK`,
  svc4: `-A KUBE-SERVICES -m comment --comment "ns4/svc4:p80 cluster IP" -m tcp -p tcp -d 172.30.0.44 --dport 80 -j KUBE-SVC-4SW47YFZTEDKD3PK`,
};
/** A restore input of the test: the filter table, then the nat table's chain lines, rules and deletions. */
const restore = (chains: string[], rules: string[], deleted: string[] = [], filter = FILTER) =>
  `${filter}${[NAT_HEAD, ...chains.map((c) => `:${c} - [0:0]`), ...rules, ...deleted.map((c) => `-X ${c}`), "COMMIT", ""].join("\n")}`;

describe("KubeProxyIptables replays TestSyncProxyRulesRepeated", () => {
  const proxier = new KubeProxyIptables(NODE);
  const svc1 = clusterIp("ns1", "svc1", "172.30.0.41", 80, "p80");
  const svc2 = clusterIp("ns2", "svc2", "172.30.0.42", 8080, "p8080");
  const svc3 = clusterIp("ns3", "svc3", "172.30.0.43", 80, "p80");
  const svc4 = clusterIp("ns4", "svc4", "172.30.0.44", 80, "p80");
  let services: ServiceEndpoints[] = [];
  const set = (service: ServiceSpec, endpoints: ServiceEndpoints["endpoints"]) => {
    services = [...services.filter((s) => s.service.name !== service.name), { service, endpoints }];
  };
  const sync = () => proxier.sync(services);
  const sorted = (text: string) => sortLikeKubeProxyTests(text);

  it("writes every chain on the first sync, and ensures the jumps", () => {
    set(svc1, remote("10.0.1.1"));
    set(svc2, remote("10.0.2.1"));
    const result = sync();
    expect(result.full).toBe(true);
    expect(result.jumps.length).toBeGreaterThan(0);
    expect(sorted(result.restore)).toBe(
      restore(
        ["KUBE-SEP-SNQ3ZNILQDEJNDQO", "KUBE-SEP-UHEGFW77JX3KXTOV", "KUBE-SVC-2VJB64SDSIJUP5T6", "KUBE-SVC-XPGD46QRK7WJZT7O"],
        [
          CLUSTER_IP.svc1,
          CLUSTER_IP.svc2,
          LAST,
          NAT_STATIC,
          `-A KUBE-SEP-SNQ3ZNILQDEJNDQO -m comment --comment ns1/svc1:p80 -s 10.0.1.1 -j KUBE-MARK-MASQ
-A KUBE-SEP-SNQ3ZNILQDEJNDQO -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination 10.0.1.1:80
-A KUBE-SEP-UHEGFW77JX3KXTOV -m comment --comment ns2/svc2:p8080 -s 10.0.2.1 -j KUBE-MARK-MASQ
-A KUBE-SEP-UHEGFW77JX3KXTOV -m comment --comment ns2/svc2:p8080 -m tcp -p tcp -j DNAT --to-destination 10.0.2.1:8080
-A KUBE-SVC-2VJB64SDSIJUP5T6 -m comment --comment "ns2/svc2:p8080 cluster IP" -m tcp -p tcp -d 172.30.0.42 --dport 8080 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
-A KUBE-SVC-2VJB64SDSIJUP5T6 -m comment --comment "ns2/svc2:p8080 -> 10.0.2.1:8080" -j KUBE-SEP-UHEGFW77JX3KXTOV
-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.0.1.1:80" -j KUBE-SEP-SNQ3ZNILQDEJNDQO`,
        ],
      ),
    );
  });

  it("writes only the new Service's chains when one is added", () => {
    set(svc3, remote("10.0.3.1"));
    const result = sync();
    expect(result.full).toBe(false);
    expect(result.jumps).toEqual([]);
    expect(sorted(result.restore)).toBe(
      restore(
        ["KUBE-SEP-BSWRHOQ77KEXZLNL", "KUBE-SVC-X27LE4BHSL4DOUIK"],
        [
          CLUSTER_IP.svc1,
          CLUSTER_IP.svc2,
          CLUSTER_IP.svc3,
          LAST,
          NAT_STATIC,
          `-A KUBE-SEP-BSWRHOQ77KEXZLNL -m comment --comment ns3/svc3:p80 -s 10.0.3.1 -j KUBE-MARK-MASQ
-A KUBE-SEP-BSWRHOQ77KEXZLNL -m comment --comment ns3/svc3:p80 -m tcp -p tcp -j DNAT --to-destination 10.0.3.1:80
-A KUBE-SVC-X27LE4BHSL4DOUIK -m comment --comment "ns3/svc3:p80 cluster IP" -m tcp -p tcp -d 172.30.0.43 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
-A KUBE-SVC-X27LE4BHSL4DOUIK -m comment --comment "ns3/svc3:p80 -> 10.0.3.1:80" -j KUBE-SEP-BSWRHOQ77KEXZLNL`,
        ],
      ),
    );
    // 1 KUBE-SERVICES rule, 2 KUBE-SVC and 2 KUBE-SEP rules more than the first sync's 7 + 2 + 2.
    expect(result.ruleCounts.nat).toBe(countRestoreRules(result.restore).nat);
  });

  it("deletes a deleted Service's chains", () => {
    services = services.filter((s) => s.service.name !== "svc2");
    const result = sync();
    expect(sorted(result.restore)).toBe(
      restore(["KUBE-SEP-UHEGFW77JX3KXTOV", "KUBE-SVC-2VJB64SDSIJUP5T6"], [CLUSTER_IP.svc1, CLUSTER_IP.svc3, LAST, NAT_STATIC], [
        "KUBE-SEP-UHEGFW77JX3KXTOV",
        "KUBE-SVC-2VJB64SDSIJUP5T6",
      ]),
    );
    expect(result.deletedChains).toHaveLength(2);
  });

  it("adds a Service without endpoints as a filter REJECT only, then its chains with its endpoints", () => {
    set(svc4, []);
    expect(sorted(sync().restore)).toBe(
      restore([], [CLUSTER_IP.svc1, CLUSTER_IP.svc3, LAST, NAT_STATIC], [], FILTER.replace(
        ":KUBE-PROXY-FIREWALL - [0:0]\n",
        `:KUBE-PROXY-FIREWALL - [0:0]\n-A KUBE-SERVICES -m comment --comment "ns4/svc4:p80 has no endpoints" -m tcp -p tcp -d 172.30.0.44 --dport 80 -j REJECT\n`,
      )),
    );
    set(svc4, remote("10.0.4.1"));
    expect(sorted(sync().restore)).toBe(
      restore(
        ["KUBE-SEP-AYCN5HPXMIRJNJXU", "KUBE-SVC-4SW47YFZTEDKD3PK"],
        [
          CLUSTER_IP.svc1,
          CLUSTER_IP.svc3,
          CLUSTER_IP.svc4,
          LAST,
          NAT_STATIC,
          `-A KUBE-SEP-AYCN5HPXMIRJNJXU -m comment --comment ns4/svc4:p80 -s 10.0.4.1 -j KUBE-MARK-MASQ
-A KUBE-SEP-AYCN5HPXMIRJNJXU -m comment --comment ns4/svc4:p80 -m tcp -p tcp -j DNAT --to-destination 10.0.4.1:80
-A KUBE-SVC-4SW47YFZTEDKD3PK -m comment --comment "ns4/svc4:p80 cluster IP" -m tcp -p tcp -d 172.30.0.44 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
-A KUBE-SVC-4SW47YFZTEDKD3PK -m comment --comment "ns4/svc4:p80 -> 10.0.4.1:80" -j KUBE-SEP-AYCN5HPXMIRJNJXU`,
        ],
      ),
    );
  });

  it("rewrites a Service's SVC and SEP chains when an endpoint changes, deleting the old SEP chain", () => {
    set(svc3, remote("10.0.3.2"));
    expect(sorted(sync().restore)).toBe(
      restore(
        ["KUBE-SEP-BSWRHOQ77KEXZLNL", "KUBE-SEP-DKCFIS26GWF2WLWC", "KUBE-SVC-X27LE4BHSL4DOUIK"],
        [
          CLUSTER_IP.svc1,
          CLUSTER_IP.svc3,
          CLUSTER_IP.svc4,
          LAST,
          NAT_STATIC,
          `-A KUBE-SEP-DKCFIS26GWF2WLWC -m comment --comment ns3/svc3:p80 -s 10.0.3.2 -j KUBE-MARK-MASQ
-A KUBE-SEP-DKCFIS26GWF2WLWC -m comment --comment ns3/svc3:p80 -m tcp -p tcp -j DNAT --to-destination 10.0.3.2:80
-A KUBE-SVC-X27LE4BHSL4DOUIK -m comment --comment "ns3/svc3:p80 cluster IP" -m tcp -p tcp -d 172.30.0.43 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
-A KUBE-SVC-X27LE4BHSL4DOUIK -m comment --comment "ns3/svc3:p80 -> 10.0.3.2:80" -j KUBE-SEP-DKCFIS26GWF2WLWC`,
        ],
        ["KUBE-SEP-BSWRHOQ77KEXZLNL"],
      ),
    );
  });

  const SVC3_TWO = `-A KUBE-SEP-DKCFIS26GWF2WLWC -m comment --comment ns3/svc3:p80 -s 10.0.3.2 -j KUBE-MARK-MASQ
-A KUBE-SEP-DKCFIS26GWF2WLWC -m comment --comment ns3/svc3:p80 -m tcp -p tcp -j DNAT --to-destination 10.0.3.2:80
-A KUBE-SEP-JVVZVJ7BSEPPRNBS -m comment --comment ns3/svc3:p80 -s 10.0.3.3 -j KUBE-MARK-MASQ
-A KUBE-SEP-JVVZVJ7BSEPPRNBS -m comment --comment ns3/svc3:p80 -m tcp -p tcp -j DNAT --to-destination 10.0.3.3:80`;
  const SVC3_TWO_SVC = `-A KUBE-SVC-X27LE4BHSL4DOUIK -m comment --comment "ns3/svc3:p80 cluster IP" -m tcp -p tcp -d 172.30.0.43 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
-A KUBE-SVC-X27LE4BHSL4DOUIK -m comment --comment "ns3/svc3:p80 -> 10.0.3.2:80" -m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-DKCFIS26GWF2WLWC
-A KUBE-SVC-X27LE4BHSL4DOUIK -m comment --comment "ns3/svc3:p80 -> 10.0.3.3:80" -j KUBE-SEP-JVVZVJ7BSEPPRNBS`;

  it("rewrites the SVC and SEP chains when an endpoint is added", () => {
    set(svc3, remote("10.0.3.2", "10.0.3.3"));
    expect(sorted(sync().restore)).toBe(
      restore(
        ["KUBE-SEP-DKCFIS26GWF2WLWC", "KUBE-SEP-JVVZVJ7BSEPPRNBS", "KUBE-SVC-X27LE4BHSL4DOUIK"],
        [CLUSTER_IP.svc1, CLUSTER_IP.svc3, CLUSTER_IP.svc4, LAST, NAT_STATIC, SVC3_TWO, SVC3_TWO_SVC],
      ),
    );
  });

  it("writes only the top-level chains when nothing changed", () => {
    expect(sorted(sync().restore)).toBe(restore([], [CLUSTER_IP.svc1, CLUSTER_IP.svc3, CLUSTER_IP.svc4, LAST, NAT_STATIC]));
  });

  it("recovers from a failed partial restore with a full sync that deletes what the failed one would have", () => {
    services = services.filter((s) => s.service.name !== "svc4");
    sync();
    proxier.restoreFailed();
    const result = sync();
    expect(result.full).toBe(true);
    expect(sorted(result.restore)).toBe(
      restore(
        [
          "KUBE-SEP-AYCN5HPXMIRJNJXU",
          "KUBE-SEP-DKCFIS26GWF2WLWC",
          "KUBE-SEP-JVVZVJ7BSEPPRNBS",
          "KUBE-SEP-SNQ3ZNILQDEJNDQO",
          "KUBE-SVC-4SW47YFZTEDKD3PK",
          "KUBE-SVC-X27LE4BHSL4DOUIK",
          "KUBE-SVC-XPGD46QRK7WJZT7O",
        ],
        [
          CLUSTER_IP.svc1,
          CLUSTER_IP.svc3,
          LAST,
          NAT_STATIC,
          SVC3_TWO,
          `-A KUBE-SEP-SNQ3ZNILQDEJNDQO -m comment --comment ns1/svc1:p80 -s 10.0.1.1 -j KUBE-MARK-MASQ
-A KUBE-SEP-SNQ3ZNILQDEJNDQO -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination 10.0.1.1:80`,
          SVC3_TWO_SVC,
          `-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.0.1.1:80" -j KUBE-SEP-SNQ3ZNILQDEJNDQO`,
        ],
        ["KUBE-SEP-AYCN5HPXMIRJNJXU", "KUBE-SVC-4SW47YFZTEDKD3PK"],
      ),
    );
  });
});

describe("KubeProxyIptables in large-cluster mode (TestSyncProxyRulesLargeClusterMode's rules)", () => {
  // 1001 endpoints: svc1 with 1000, svc2 with 1.
  const many = Array.from({ length: 1000 }, (_, i) => ({ ip: `10.0.${i % 256}.${Math.floor(i / 256)}`, local: false }));
  const svc1 = clusterIp("ns1", "svc1", "172.30.0.41", 80, "p80");
  const svc2 = clusterIp("ns2", "svc2", "172.30.0.42", 8080, "p8080");
  const svc4 = clusterIp("ns4", "svc4", "172.30.0.44", 8082, "p8082");
  const base = [
    { service: svc1, endpoints: many },
    { service: svc2, endpoints: remote("10.1.0.1") },
  ];

  it("deletes the chains of a deleted Service only once per sync period, and drops endpoint comments", () => {
    const proxier = new KubeProxyIptables(NODE, { syncPeriodS: 30 });
    proxier.sync([...base, { service: svc4, endpoints: remote("10.4.0.1") }], { now: 0 });
    expect(proxier.holdsStaleChains).toBe(false);
    const svc4Gone = proxier.sync(base, { now: 10 });
    expect(svc4Gone.restore).not.toContain("-X ");
    expect(svc4Gone.deletedChains).toEqual([]);
    // What a later sync has to delete is known: the lab's settle() syncs only then.
    expect(proxier.holdsStaleChains).toBe(true);
    expect(proxier.sync(base, { now: 20 }).deletedChains).toEqual([]);
    expect(proxier.holdsStaleChains).toBe(true);
    const later = proxier.sync(base, { now: 31 });
    expect(later.restore).toContain("-X KUBE-SVC-EBDQOQU5SJFXRIL3");
    expect(later.restore).toContain("-X KUBE-SEP-SU5STNODRYEWJAUF");
    expect(proxier.holdsStaleChains).toBe(false);
    expect(later.largeClusterMode).toBe(true);
    const seps = parseRestore(proxier.sync(base, { now: 32, full: true }).restore)
      .find((t) => t.name === "nat")!
      .chains.filter((c) => c.name.startsWith("KUBE-SEP-"))
      .flatMap((c) => c.rules);
    expect(seps).toHaveLength(2 * 1001);
    expect(seps.some((r) => r.includes("--comment"))).toBe(false);
  });

  it("deletes stale chains at every sync below the threshold", () => {
    const proxier = new KubeProxyIptables(NODE);
    proxier.sync([{ service: svc2, endpoints: remote("10.1.0.1") }, { service: svc4, endpoints: remote("10.4.0.1") }], { now: 0 });
    expect([...proxier.sync([{ service: svc2, endpoints: remote("10.1.0.1") }], { now: 1 }).deletedChains].sort()).toEqual([
      "KUBE-SEP-SU5STNODRYEWJAUF",
      "KUBE-SVC-EBDQOQU5SJFXRIL3",
    ]);
    expect(proxier.holdsStaleChains).toBe(false);
  });

  it("holds stale chains again when a Service whose chains it deleted comes back and goes between cleanups", () => {
    const proxier = new KubeProxyIptables(NODE, { syncPeriodS: 30 });
    const withSvc4 = [...base, { service: svc4, endpoints: remote("10.4.0.1") }];
    proxier.sync(withSvc4, { now: 0 });
    proxier.sync(base, { now: 10 });
    // Back before the cleanup: its chains are the Service's again, nothing is stale.
    proxier.sync(withSvc4, { now: 20 });
    expect(proxier.holdsStaleChains).toBe(false);
    proxier.sync(base, { now: 25 });
    expect(proxier.holdsStaleChains).toBe(true);
    proxier.restoreFailed();
    expect(proxier.holdsStaleChains).toBe(true);
  });
});
