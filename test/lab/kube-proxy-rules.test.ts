import { describe, expect, it } from "vitest";
import { servicesWithBackend } from "./service-endpoints-fixture.js";
import {
  KUBE_PROXY_JUMPS,
  chainHash,
  countRestoreRules,
  kubeProxyRules,
  parseRestore,
  sortLikeKubeProxyTests,
  type KubeProxyNode,
  type ServiceEndpoints,
} from "../../lab/dataplanes/iptables/rules.js";
import type { ServiceSpec } from "../../workloads/service-model.js";
import { OVERALL_IPTABLES } from "./kube-proxy-iptables-fixture.js";

// NewFakeProxier's fixed settings in kube-proxy's proxier_test.go: mark written as "0x4000", no
// --random-fully, no nfacct counters, detector 10.0.0.0/8, node addresses of its fake interface.
const FAKE_NODE = {
  masqueradeMark: "0x4000",
  randomFully: false,
  nfacct: false,
  addresses: ["192.168.0.2", "192.168.1.2", "192.168.99.11", "2001:db8::1"],
} as const;

const svc1 = (clusterIP: Partial<Record<"ipv4" | "ipv6", string>>, nodePort: number): ServiceSpec => ({
  namespace: "ns1",
  name: "svc1",
  type: "NodePort",
  clusterIPs: clusterIP,
  externalTrafficPolicy: "Local",
  selector: { app: "svc1" },
  ports: [{ name: "p80", protocol: "TCP", port: 80, targetPort: 80, nodePort }],
});

// proxier_test.go TestOnlyLocalNodePorts (notes §2.5 a), verbatim.
const GOLDEN_A = `*filter
:KUBE-NODEPORTS - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-EXTERNAL-SERVICES - [0:0]
:KUBE-FORWARD - [0:0]
:KUBE-PROXY-FIREWALL - [0:0]
-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
COMMIT
*nat
:KUBE-NODEPORTS - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-EXT-XPGD46QRK7WJZT7O - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-SEP-SXIVWICOYRO3J4NJ - [0:0]
:KUBE-SEP-ZX7GRIZKSNUQ3LAJ - [0:0]
:KUBE-SVC-XPGD46QRK7WJZT7O - [0:0]
:KUBE-SVL-XPGD46QRK7WJZT7O - [0:0]
-A KUBE-NODEPORTS -m comment --comment ns1/svc1:p80 -m tcp -p tcp --dport 3001 -j KUBE-EXT-XPGD46QRK7WJZT7O
-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j KUBE-SVC-XPGD46QRK7WJZT7O
-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -d 192.168.0.2 -j KUBE-NODEPORTS
-A KUBE-EXT-XPGD46QRK7WJZT7O -m comment --comment "pod traffic for ns1/svc1:p80 external destinations" -s 10.0.0.0/8 -j KUBE-SVC-XPGD46QRK7WJZT7O
-A KUBE-EXT-XPGD46QRK7WJZT7O -m comment --comment "masquerade LOCAL traffic for ns1/svc1:p80 external destinations" -m addrtype --src-type LOCAL -j KUBE-MARK-MASQ
-A KUBE-EXT-XPGD46QRK7WJZT7O -m comment --comment "route LOCAL traffic for ns1/svc1:p80 external destinations" -m addrtype --src-type LOCAL -j KUBE-SVC-XPGD46QRK7WJZT7O
-A KUBE-EXT-XPGD46QRK7WJZT7O -j KUBE-SVL-XPGD46QRK7WJZT7O
-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE
-A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -s 10.180.0.1 -j KUBE-MARK-MASQ
-A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.1:80
-A KUBE-SEP-ZX7GRIZKSNUQ3LAJ -m comment --comment ns1/svc1:p80 -s 10.180.2.1 -j KUBE-MARK-MASQ
-A KUBE-SEP-ZX7GRIZKSNUQ3LAJ -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.2.1:80
-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80" -m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-SXIVWICOYRO3J4NJ
-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.2.1:80" -j KUBE-SEP-ZX7GRIZKSNUQ3LAJ
-A KUBE-SVL-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.2.1:80" -j KUBE-SEP-ZX7GRIZKSNUQ3LAJ
COMMIT
`;

// proxier_test.go TestDisableLocalhostNodePortsIPv6 (notes §2.5 b): its nat table, verbatim.
const GOLDEN_B_NAT = `*nat
:KUBE-NODEPORTS - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-EXT-XPGD46QRK7WJZT7O - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-SEP-LIGRYQQLSZN4UWQ5 - [0:0]
:KUBE-SEP-XJJ5QXWGJG344QDZ - [0:0]
:KUBE-SVC-XPGD46QRK7WJZT7O - [0:0]
:KUBE-SVL-XPGD46QRK7WJZT7O - [0:0]
-A KUBE-NODEPORTS -m comment --comment ns1/svc1:p80 -m tcp -p tcp --dport 30001 -j KUBE-EXT-XPGD46QRK7WJZT7O
-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d fd00:ab34::20 --dport 80 -j KUBE-SVC-XPGD46QRK7WJZT7O
-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL ! -d ::1/128 -j KUBE-NODEPORTS
-A KUBE-EXT-XPGD46QRK7WJZT7O -m comment --comment "masquerade LOCAL traffic for ns1/svc1:p80 external destinations" -m addrtype --src-type LOCAL -j KUBE-MARK-MASQ
-A KUBE-EXT-XPGD46QRK7WJZT7O -m comment --comment "route LOCAL traffic for ns1/svc1:p80 external destinations" -m addrtype --src-type LOCAL -j KUBE-SVC-XPGD46QRK7WJZT7O
-A KUBE-EXT-XPGD46QRK7WJZT7O -j KUBE-SVL-XPGD46QRK7WJZT7O
-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE
-A KUBE-SEP-LIGRYQQLSZN4UWQ5 -m comment --comment ns1/svc1:p80 -s ff06::c1 -j KUBE-MARK-MASQ
-A KUBE-SEP-LIGRYQQLSZN4UWQ5 -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination [ff06::c1]:80
-A KUBE-SEP-XJJ5QXWGJG344QDZ -m comment --comment ns1/svc1:p80 -s ff06::c2 -j KUBE-MARK-MASQ
-A KUBE-SEP-XJJ5QXWGJG344QDZ -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination [ff06::c2]:80
-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> [ff06::c1]:80" -m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-LIGRYQQLSZN4UWQ5
-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> [ff06::c2]:80" -j KUBE-SEP-XJJ5QXWGJG344QDZ
-A KUBE-SVL-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> [ff06::c2]:80" -j KUBE-SEP-XJJ5QXWGJG344QDZ
COMMIT
`;

// proxier_test.go TestInternalTrafficPolicyE2E, case "internalTrafficPolicy is cluster": an unnamed
// port, three endpoints, localhost NodePorts on (KUBE-FIREWALL), verbatim.
const GOLDEN_ITP_CLUSTER = `*filter
:KUBE-NODEPORTS - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-EXTERNAL-SERVICES - [0:0]
:KUBE-FIREWALL - [0:0]
:KUBE-FORWARD - [0:0]
:KUBE-PROXY-FIREWALL - [0:0]
-A KUBE-FIREWALL -m comment --comment "block incoming localnet connections" -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP
-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
COMMIT
*nat
:KUBE-NODEPORTS - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-SEP-3JOIVZTXZZRGORX4 - [0:0]
:KUBE-SEP-IO5XOSKPAXIFQXAJ - [0:0]
:KUBE-SEP-XGJFVO3L2O5SRFNT - [0:0]
:KUBE-SVC-AQI2S6QIMU7PVVRP - [0:0]
-A KUBE-SERVICES -m comment --comment "ns1/svc1 cluster IP" -m tcp -p tcp -d 172.30.1.1 --dport 80 -j KUBE-SVC-AQI2S6QIMU7PVVRP
-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE
-A KUBE-SEP-3JOIVZTXZZRGORX4 -m comment --comment ns1/svc1 -s 10.0.1.1 -j KUBE-MARK-MASQ
-A KUBE-SEP-3JOIVZTXZZRGORX4 -m comment --comment ns1/svc1 -m tcp -p tcp -j DNAT --to-destination 10.0.1.1:80
-A KUBE-SEP-IO5XOSKPAXIFQXAJ -m comment --comment ns1/svc1 -s 10.0.1.2 -j KUBE-MARK-MASQ
-A KUBE-SEP-IO5XOSKPAXIFQXAJ -m comment --comment ns1/svc1 -m tcp -p tcp -j DNAT --to-destination 10.0.1.2:80
-A KUBE-SEP-XGJFVO3L2O5SRFNT -m comment --comment ns1/svc1 -s 10.0.1.3 -j KUBE-MARK-MASQ
-A KUBE-SEP-XGJFVO3L2O5SRFNT -m comment --comment ns1/svc1 -m tcp -p tcp -j DNAT --to-destination 10.0.1.3:80
-A KUBE-SVC-AQI2S6QIMU7PVVRP -m comment --comment "ns1/svc1 cluster IP" -m tcp -p tcp -d 172.30.1.1 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
-A KUBE-SVC-AQI2S6QIMU7PVVRP -m comment --comment "ns1/svc1 -> 10.0.1.1:80" -m statistic --mode random --probability 0.3333333333 -j KUBE-SEP-3JOIVZTXZZRGORX4
-A KUBE-SVC-AQI2S6QIMU7PVVRP -m comment --comment "ns1/svc1 -> 10.0.1.2:80" -m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-IO5XOSKPAXIFQXAJ
-A KUBE-SVC-AQI2S6QIMU7PVVRP -m comment --comment "ns1/svc1 -> 10.0.1.3:80" -j KUBE-SEP-XGJFVO3L2O5SRFNT
COMMIT
`;

const filterOf = (text: string) => text.slice(0, text.indexOf("*nat"));
const natOf = (text: string) => text.slice(text.indexOf("*nat"));

describe("chain names", () => {
  it("hash like kube-proxy (sha256, base32, 16 characters)", () => {
    expect(chainHash("ns1/svc1:p80tcp")).toBe("XPGD46QRK7WJZT7O");
    expect(chainHash("ns2/svc2:p80tcp")).toBe("GNZBNJ2PO5MGZ6GT");
    expect(chainHash("ns1/svc1:p80tcp10.180.0.1:80")).toBe("SXIVWICOYRO3J4NJ");
    expect(chainHash("ns1/svc1:p80tcp10.180.2.1:80")).toBe("ZX7GRIZKSNUQ3LAJ");
    expect(chainHash("ns1/svc1:p80tcp[ff06::c2]:80")).toBe("XJJ5QXWGJG344QDZ");
    expect(chainHash("ns1/svc1:p80tcp[ff06::c1]:80")).toBe("LIGRYQQLSZN4UWQ5");
  });
});

describe("kubeProxyRules reproduces kube-proxy's golden dumps byte for byte", () => {
  it("(a) IPv4 NodePort, ETP=Local, one remote and one local endpoint, nodePortAddresses, no localhost NodePorts", () => {
    const services: ServiceEndpoints[] = [
      {
        service: svc1({ ipv4: "172.30.0.41" }, 3001),
        endpoints: [
          { ip: "10.180.0.1", local: false },
          { ip: "10.180.2.1", local: true },
        ],
      },
    ];
    const rules = kubeProxyRules(services, {
      ...FAKE_NODE,
      family: "ipv4",
      clusterCIDR: "10.0.0.0/8",
      nodePortAddresses: ["192.168.0.0/24", "2001:db8::/64"],
      localhostNodePorts: false,
    });
    expect(sortLikeKubeProxyTests(rules.restore)).toBe(GOLDEN_A);
  });

  it("(b) IPv6 NodePort, ETP=Local, no local-traffic detector", () => {
    const services: ServiceEndpoints[] = [
      {
        // A dual-stack Service: the IPv6 rules take only its IPv6 address and endpoints.
        service: svc1({ ipv4: "172.30.0.41", ipv6: "fd00:ab34::20" }, 30001),
        endpoints: [
          { ip: "ff06::c2", local: true },
          { ip: "ff06::c1", local: false },
          { ip: "10.180.2.1", local: true },
        ],
      },
    ];
    const rules = kubeProxyRules(services, { ...FAKE_NODE, family: "ipv6", localhostNodePorts: false });
    const sorted = sortLikeKubeProxyTests(rules.restore);
    expect(natOf(sorted)).toBe(GOLDEN_B_NAT);
    expect(filterOf(sorted)).toBe(filterOf(GOLDEN_A));
  });

  it("(c) ClusterIP Service, unnamed port, three endpoints with statistic probabilities", () => {
    const rules = kubeProxyRules(
      [
        {
          service: {
            namespace: "ns1",
            name: "svc1",
            type: "ClusterIP",
            clusterIPs: { ipv4: "172.30.1.1" },
            selector: { foo: "bar" },
            ports: [{ name: "", protocol: "TCP", port: 80, targetPort: 80 }],
          },
          endpoints: [
            { ip: "10.0.1.3", local: false },
            { ip: "10.0.1.1", local: true },
            { ip: "10.0.1.2", local: false },
          ],
        },
      ],
      { ...FAKE_NODE, family: "ipv4", clusterCIDR: "10.0.0.0/8" },
    );
    expect(sortLikeKubeProxyTests(rules.restore)).toBe(GOLDEN_ITP_CLUSTER);
  });
});

describe("kubeProxyRules reproduces TestOverallIPTablesRules for the Services of the testbed's paths", () => {
  const service = (ns: string, name: string, clusterIP: string, nodePort?: { port: number; policy: "Local" | "Cluster" }): ServiceSpec => ({
    namespace: ns,
    name,
    type: nodePort ? "NodePort" : "ClusterIP",
    clusterIPs: { ipv4: clusterIP },
    ...(nodePort ? { externalTrafficPolicy: nodePort.policy } : {}),
    selector: { app: name },
    ports: [{ name: "p80", protocol: "TCP", port: 80, targetPort: 80, ...(nodePort ? { nodePort: nodePort.port } : {}) }],
  });
  // NewFakeProxier of this test: nfacct counters present, the mark written as 0x4000, no --random-fully, detector 10.0.0.0/8.
  const node: KubeProxyNode = { family: "ipv4", clusterCIDR: "10.0.0.0/8", masqueradeMark: "0x4000", randomFully: false, nfacct: true };
  const services: ServiceEndpoints[] = [
    // clusterip's shape: the only endpoint on another node, reached from a pod through KUBE-SERVICES (PREROUTING, and OUTPUT for the node's own).
    { service: service("ns1", "svc1", "172.30.0.41"), endpoints: [{ ip: "10.180.0.1", local: false }] },
    { service: service("ns2", "svc2", "172.30.0.42", { port: 3001, policy: "Local" }), endpoints: [{ ip: "10.180.0.2", local: false }] },
    // nodeport-remote's shape: externalTrafficPolicy Cluster, the only endpoint on another node.
    { service: service("ns3", "svc3", "172.30.0.43", { port: 3003, policy: "Cluster" }), endpoints: [{ ip: "10.180.0.3", local: false }] },
    { service: service("ns6", "svc6", "172.30.0.46"), endpoints: [] },
  ];

  it("byte for byte, the lines of what the testbed does not model left out", () => {
    // Left out: svc2's LoadBalancer IP, external IP and health check NodePort, svc4 (external IP), svc5 (LoadBalancer,
    // source ranges, session affinity), by their names and the hashes of their chains.
    const notModelled = ["ns4/svc4", "ns5/svc5", "4SW47YFZTEDKD3PK", "NUKIZ6OKUXPJNT4C", "C6EBXVWJJZMIWKLZ", "I77PXRDZVX7PMWMN", "UKSFD7AGPMPPLUHC", "192.168.99.22", "1.2.3.4 ", "health check node port"];
    const lines = OVERALL_IPTABLES.split("\n");
    const kept = lines.filter((l) => !notModelled.some((s) => l.includes(s)));
    expect(lines.length - kept.length).toBe(38);
    expect(sortLikeKubeProxyTests(kubeProxyRules(services, node).restore)).toBe(kept.join("\n"));
  });

  it("masquerades external traffic to the remote endpoint (KUBE-EXT -> KUBE-MARK-MASQ -> MASQUERADE in KUBE-POSTROUTING), and a pod's ClusterIP traffic not", () => {
    const restore = kubeProxyRules(services, node).restore;
    const h = chainHash("ns3/svc3:p80tcp");
    expect(restore).toContain(`-A KUBE-NODEPORTS -m comment --comment ns3/svc3:p80 -m tcp -p tcp --dport 3003 -j KUBE-EXT-${h}\n`);
    expect(restore).toContain(`-A KUBE-EXT-${h} -m comment --comment "masquerade traffic for ns3/svc3:p80 external destinations" -j KUBE-MARK-MASQ\n-A KUBE-EXT-${h} -j KUBE-SVC-${h}\n`);
    expect(restore).toContain('-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE\n');
    // A ClusterIP's traffic is marked only when it does not come from the cluster CIDR (the pods): a pod keeps its address.
    const c = chainHash("ns1/svc1:p80tcp");
    expect(restore).toContain(`-A KUBE-SVC-${c} -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ\n`);
    // ETP=Local keeps the client's address: no unconditional mark in its external chain.
    const l = chainHash("ns2/svc2:p80tcp");
    expect(restore).not.toContain(`-A KUBE-EXT-${l} -m comment --comment "masquerade traffic for`);
    // The KUBE-SERVICES jumps from PREROUTING (a pod's packets, forwarded) and OUTPUT (the node's own).
    expect(KUBE_PROXY_JUMPS.filter((j) => j.table === "nat" && j.target === "KUBE-SERVICES").map((j) => j.chain).sort()).toEqual(["OUTPUT", "PREROUTING"]);
  });
});

describe("kubeProxyRules", () => {
  const node: KubeProxyNode = { family: "ipv4", clusterCIDR: "10.244.0.0/16", nfacct: true };

  it("writes what real kube-proxy writes by default: %#08x mark, --random-fully, localhost NodePort rules", () => {
    const rules = kubeProxyRules([{ service: svc1({ ipv4: "10.96.0.3" }, 30001), endpoints: [{ ip: "10.244.1.5", local: true }] }], node);
    expect(rules.restore).toContain("-A KUBE-MARK-MASQ -j MARK --or-mark 0x00004000\n");
    expect(rules.restore).toContain('-j MASQUERADE --random-fully\n');
    expect(rules.restore).toContain(
      "-A KUBE-NODEPORTS -m comment --comment ns1/svc1:p80 -m tcp -p tcp -d 127.0.0.0/8 --dport 30001 -m nfacct --nfacct-name localhost_nps_accepted_pkts -j KUBE-EXT-XPGD46QRK7WJZT7O\n",
    );
    expect(rules.restore).toContain("-A KUBE-FORWARD -m conntrack --ctstate INVALID -m nfacct --nfacct-name ct_state_invalid_dropped_pkts -j DROP\n");
    expect(rules.restore).toContain("--dst-type LOCAL -j KUBE-NODEPORTS\n");
    expect(rules.nfacctCounters).toEqual(["ct_state_invalid_dropped_pkts", "localhost_nps_accepted_pkts"]);
    expect(rules.restore.startsWith("*filter\n:KUBE-SERVICES - [0:0]\n:KUBE-EXTERNAL-SERVICES - [0:0]\n")).toBe(true);
  });

  it("gives Services without endpoints only a filter REJECT, and ETP=Local Services without a local endpoint a DROP", () => {
    const none = kubeProxyRules([{ service: svc1({ ipv4: "10.96.0.3" }, 30001), endpoints: [] }], node);
    expect(none.restore).not.toMatch(/KUBE-(SVC|SVL|EXT|SEP)-/);
    expect(none.restore).toContain('-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 has no endpoints" -m tcp -p tcp -d 10.96.0.3 --dport 80 -j REJECT');
    expect(none.restore).toContain('-A KUBE-EXTERNAL-SERVICES -m comment --comment "ns1/svc1:p80 has no endpoints" -m addrtype --dst-type LOCAL -m tcp -p tcp --dport 30001 -j REJECT');
    const remote = kubeProxyRules([{ service: svc1({ ipv4: "10.96.0.3" }, 30001), endpoints: [{ ip: "10.244.2.5", local: false }] }], node);
    expect(remote.restore).not.toContain("KUBE-SVL-");
    expect(remote.restore).not.toMatch(/-A KUBE-EXT-\S+ -j /);
    expect(remote.restore).toContain('"ns1/svc1:p80 has no local endpoints" -m addrtype --dst-type LOCAL -m tcp -p tcp --dport 30001 -j DROP');
  });

  it("uses --masquerade-all, ETP=Cluster and UDP as kube-proxy does", () => {
    const svc: ServiceSpec = { ...svc1({ ipv4: "10.96.0.3" }, 30001), externalTrafficPolicy: undefined, ports: [{ name: "d", protocol: "UDP", port: 53, targetPort: 5353, nodePort: 30001 }] };
    const rules = kubeProxyRules([{ service: svc, endpoints: [{ ip: "10.244.1.5", local: true }] }], { family: "ipv4", masqueradeAll: true });
    const h = chainHash("ns1/svc1:dudp");
    expect(rules.restore).toContain(`-A KUBE-SVC-${h} -m comment --comment "ns1/svc1:d cluster IP" -m udp -p udp -d 10.96.0.3 --dport 53 -j KUBE-MARK-MASQ`);
    expect(rules.restore).toContain(`-A KUBE-EXT-${h} -m comment --comment "masquerade traffic for ns1/svc1:d external destinations" -j KUBE-MARK-MASQ\n-A KUBE-EXT-${h} -j KUBE-SVC-${h}\n`);
    expect(rules.restore).toContain("-m udp -p udp -j DNAT --to-destination 10.244.1.5:5353");
    expect(rules.restore).not.toContain("KUBE-SVL-");
  });

  it("drops endpoint comments above 1000 endpoints (largeClusterMode)", () => {
    const many = (n: number): ServiceEndpoints[] =>
      Array.from({ length: n }, (_, i) => ({
        service: { ...svc1({ ipv4: `10.96.${i >> 8}.${i & 255}` }, 30000 + i), name: `s${i}` },
        endpoints: [{ ip: "10.244.1.5", local: true }],
      }));
    const small = kubeProxyRules(many(1000), node);
    const large = kubeProxyRules(many(1001), node);
    expect(small.largeClusterMode).toBe(false);
    expect(large.largeClusterMode).toBe(true);
    const sep = (r: string) => r.split("\n").filter((l) => l.startsWith("-A KUBE-SEP-") || /^-A KUBE-SV[CL]-\S+ .*-j KUBE-SEP-/.test(l));
    expect(sep(small.restore).every((l) => l.includes("--comment"))).toBe(true);
    expect(sep(large.restore).some((l) => l.includes("--comment"))).toBe(false);
    expect(large.restore).toContain("-A KUBE-SEP-");
    // Everything else keeps its comments.
    expect(large.restore).toContain('--comment "ns1/s1000:p80 cluster IP"');
  });

  it("refuses bad node parameters with the key, the value and what is accepted", () => {
    expect(() => kubeProxyRules([], { family: "ipv4", clusterCIDR: "fd00::/64" })).toThrow(
      'clusterCIDR "fd00::/64" is not accepted; accepted: a CIDR of the ipv4 family',
    );
    expect(() => kubeProxyRules([], { family: "ipv4", nodePortAddresses: ["nope"] })).toThrow(/nodePortAddresses "nope"/);
  });

  it("installs kube-proxy's jump rules, comment before target, kubelet's KUBE-FIREWALL jumps last", () => {
    expect(KUBE_PROXY_JUMPS[0]).toEqual({
      table: "filter",
      chain: "INPUT",
      target: "KUBE-EXTERNAL-SERVICES",
      args: ["-m", "conntrack", "--ctstate", "NEW", "-m", "comment", "--comment", "kubernetes externally-visible service portals", "-j", "KUBE-EXTERNAL-SERVICES"],
    });
    expect(KUBE_PROXY_JUMPS).toHaveLength(14);
    expect(KUBE_PROXY_JUMPS.slice(-2).map((j) => [j.chain, j.args.join(" ")])).toEqual([
      ["INPUT", "-j KUBE-FIREWALL"],
      ["OUTPUT", "-j KUBE-FIREWALL"],
    ]);
  });
});

describe("rule count as a function of N (notes §2.7)", () => {

  // kube-proxy's arithmetic, independent of the generator: static rules, then per Service port.
  const expectedNat = (nodePortPorts: number, clusterIpPorts: number, o: { localhostRule: boolean; detector: boolean }) => {
    const d = o.detector ? 1 : 0;
    const perNodePort = 1 /* SERVICES */ + 1 + (o.localhostRule ? 1 : 0) /* NODEPORTS */ + 3 + d /* EXT */ + 1 + d /* SVC */ + 1 /* SVL */ + 2; /* SEP */
    const perClusterIp = 1 + 1 + d + 2;
    return 4 /* POSTROUTING, MARK-MASQ */ + 1 /* jump to KUBE-NODEPORTS */ + perNodePort * nodePortPorts + perClusterIp * clusterIpPorts;
  };

  for (const n of [1, 1000, 2764, 3000, 10000]) {
    it(`N = ${n}: 12 nat rules per NodePort Service (IPv4, localhost NodePorts, detector), 11 in IPv6, 5 per ClusterIP Service`, () => {
      const nodePort = Math.min(n, 2764) + 6; // the receiver's six ports (three per ITGRecv) are NodePorts too
      const clusterIp = n - Math.min(n, 2764);
      const v4 = kubeProxyRules(servicesWithBackend(n), { family: "ipv4", clusterCIDR: "10.244.0.0/16", nfacct: true });
      const v6 = kubeProxyRules(servicesWithBackend(n), { family: "ipv6", clusterCIDR: "fd00:10:244::/56" });
      expect(v4.ruleCounts.nat).toBe(expectedNat(nodePort, clusterIp, { localhostRule: true, detector: true }));
      expect(v6.ruleCounts.nat).toBe(expectedNat(nodePort, clusterIp, { localhostRule: false, detector: true }));
      expect(countRestoreRules(v4.restore)).toEqual({ filter: v4.ruleCounts.filter, nat: v4.ruleCounts.nat });
      if (n >= 1000) expect(v4.ruleCounts.nat).toBeGreaterThan(12 * Math.min(n, 2764));
      // Chains: 4 static, then EXT, SVC, SVL, SEP per NodePort port and SVC, SEP per ClusterIP port.
      const natChains = parseRestore(v4.restore).find((t) => t.name === "nat")!.chains.length;
      expect(natChains).toBe(4 + 4 * nodePort + 2 * clusterIp);
      // Without the nfacct counters kube-proxy writes no localhost NodePort rule.
      const noAcct = kubeProxyRules(servicesWithBackend(n), { family: "ipv4", clusterCIDR: "10.244.0.0/16" });
      expect(noAcct.ruleCounts.nat).toBe(expectedNat(nodePort, clusterIp, { localhostRule: false, detector: true }));
    });
  }
});
