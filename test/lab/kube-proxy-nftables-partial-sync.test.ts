// kube-proxy's nftables partial syncs against kube-proxy's own expectations: TestSyncProxyRulesRepeated
// and TestSyncProxyRulesStartup of pkg/proxy/nftables/proxier_test.go (aojea/kubernetes at
// 492140aedb62cb751e20c9ad71831642b8635c69), replayed sync by sync on one proxier and the transaction
// model (knftables' Fake). Each expected table is upstream's text, verbatim, cut into its Service
// blocks; like upstream, the table after each sync is dumped and both sides sorted
// (sortNFTablesTransaction), and the sync's own transaction is counted (NumOperations).
import { describe, expect, it } from "vitest";
import { BASE_RULES, FAKE_NODE_V4 } from "./kube-proxy-nftables-fixture.js";
import type { ServiceEndpoints } from "../../lab/dataplanes/kube-proxy-inputs.js";
import {
  applyNftablesTransaction,
  COLD_START_MAX_OPERATIONS,
  kubeProxyNftablesColdStartSplit,
  kubeProxyNftablesRules,
  KubeProxyNftables,
  NftablesModel,
  nftablesDump,
  sortLikeKubeProxyNftablesTests,
} from "../../lab/dataplanes/nftables/rules.js";
import type { ServiceSpec } from "../../workloads/service-model.js";
import { servicesWithBackend } from "./service-endpoints-fixture.js";

const clusterIp = (ns: string, name: string, ip: string, port: number, portName = "p80"): ServiceSpec => ({
  namespace: ns,
  name,
  type: "ClusterIP",
  clusterIPs: { ipv4: ip },
  selector: {},
  ports: [{ name: portName, protocol: "TCP", port, targetPort: port }],
});
const remote = (...ips: string[]) => ips.map((ip) => ({ ip, local: false }));

const svc1 = clusterIp("ns1", "svc1", "172.30.0.41", 80);
const svc2 = clusterIp("ns2", "svc2", "172.30.0.42", 8080, "p8080");
const svc3 = clusterIp("ns3", "svc3", "172.30.0.43", 80);
const svc4 = clusterIp("ns4", "svc4", "172.30.0.44", 80);

// The Service blocks of upstream's expected tables, verbatim.
const SVC1 = `
add chain ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80
add rule ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80 ip daddr 172.30.0.41 tcp dport 80 ip saddr != 10.0.0.0/8 jump mark-for-masquerade
add rule ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80 numgen random mod 1 vmap { 0 : goto endpoint-5TPGNJF2-ns1/svc1/tcp/p80__10.0.1.1/80 }
add chain ip kube-proxy endpoint-5TPGNJF2-ns1/svc1/tcp/p80__10.0.1.1/80
add rule ip kube-proxy endpoint-5TPGNJF2-ns1/svc1/tcp/p80__10.0.1.1/80 ip saddr 10.0.1.1 jump mark-for-masquerade
add rule ip kube-proxy endpoint-5TPGNJF2-ns1/svc1/tcp/p80__10.0.1.1/80 meta l4proto tcp dnat to 10.0.1.1:80
`;
const SVC2 = `
add chain ip kube-proxy service-MHHHYRWA-ns2/svc2/tcp/p8080
add rule ip kube-proxy service-MHHHYRWA-ns2/svc2/tcp/p8080 ip daddr 172.30.0.42 tcp dport 8080 ip saddr != 10.0.0.0/8 jump mark-for-masquerade
add rule ip kube-proxy service-MHHHYRWA-ns2/svc2/tcp/p8080 numgen random mod 1 vmap { 0 : goto endpoint-7RVP4LUQ-ns2/svc2/tcp/p8080__10.0.2.1/8080 }
add chain ip kube-proxy endpoint-7RVP4LUQ-ns2/svc2/tcp/p8080__10.0.2.1/8080
add rule ip kube-proxy endpoint-7RVP4LUQ-ns2/svc2/tcp/p8080__10.0.2.1/8080 ip saddr 10.0.2.1 jump mark-for-masquerade
add rule ip kube-proxy endpoint-7RVP4LUQ-ns2/svc2/tcp/p8080__10.0.2.1/8080 meta l4proto tcp dnat to 10.0.2.1:8080
`;
const SVC2_FLUSHED = `
add chain ip kube-proxy service-MHHHYRWA-ns2/svc2/tcp/p8080
add chain ip kube-proxy endpoint-7RVP4LUQ-ns2/svc2/tcp/p8080__10.0.2.1/8080
`;
const SVC3_ONE = `
add chain ip kube-proxy service-4AT6LBPK-ns3/svc3/tcp/p80
add rule ip kube-proxy service-4AT6LBPK-ns3/svc3/tcp/p80 ip daddr 172.30.0.43 tcp dport 80 ip saddr != 10.0.0.0/8 jump mark-for-masquerade
add rule ip kube-proxy service-4AT6LBPK-ns3/svc3/tcp/p80 numgen random mod 1 vmap { 0 : goto endpoint-2OCDJSZQ-ns3/svc3/tcp/p80__10.0.3.1/80 }
add chain ip kube-proxy endpoint-2OCDJSZQ-ns3/svc3/tcp/p80__10.0.3.1/80
add rule ip kube-proxy endpoint-2OCDJSZQ-ns3/svc3/tcp/p80__10.0.3.1/80 ip saddr 10.0.3.1 jump mark-for-masquerade
add rule ip kube-proxy endpoint-2OCDJSZQ-ns3/svc3/tcp/p80__10.0.3.1/80 meta l4proto tcp dnat to 10.0.3.1:80
`;
const SVC3_MOVED = `
add chain ip kube-proxy service-4AT6LBPK-ns3/svc3/tcp/p80
add rule ip kube-proxy service-4AT6LBPK-ns3/svc3/tcp/p80 ip daddr 172.30.0.43 tcp dport 80 ip saddr != 10.0.0.0/8 jump mark-for-masquerade
add rule ip kube-proxy service-4AT6LBPK-ns3/svc3/tcp/p80 numgen random mod 1 vmap { 0 : goto endpoint-SWWHDC7X-ns3/svc3/tcp/p80__10.0.3.2/80 }
add chain ip kube-proxy endpoint-2OCDJSZQ-ns3/svc3/tcp/p80__10.0.3.1/80
add chain ip kube-proxy endpoint-SWWHDC7X-ns3/svc3/tcp/p80__10.0.3.2/80
add rule ip kube-proxy endpoint-SWWHDC7X-ns3/svc3/tcp/p80__10.0.3.2/80 ip saddr 10.0.3.2 jump mark-for-masquerade
add rule ip kube-proxy endpoint-SWWHDC7X-ns3/svc3/tcp/p80__10.0.3.2/80 meta l4proto tcp dnat to 10.0.3.2:80
`;
const SVC3_TWO = `
add chain ip kube-proxy service-4AT6LBPK-ns3/svc3/tcp/p80
add rule ip kube-proxy service-4AT6LBPK-ns3/svc3/tcp/p80 ip daddr 172.30.0.43 tcp dport 80 ip saddr != 10.0.0.0/8 jump mark-for-masquerade
add rule ip kube-proxy service-4AT6LBPK-ns3/svc3/tcp/p80 numgen random mod 2 vmap { 0 : goto endpoint-SWWHDC7X-ns3/svc3/tcp/p80__10.0.3.2/80 , 1 : goto endpoint-TQ2QKHCZ-ns3/svc3/tcp/p80__10.0.3.3/80 }
add chain ip kube-proxy endpoint-SWWHDC7X-ns3/svc3/tcp/p80__10.0.3.2/80
add rule ip kube-proxy endpoint-SWWHDC7X-ns3/svc3/tcp/p80__10.0.3.2/80 ip saddr 10.0.3.2 jump mark-for-masquerade
add rule ip kube-proxy endpoint-SWWHDC7X-ns3/svc3/tcp/p80__10.0.3.2/80 meta l4proto tcp dnat to 10.0.3.2:80
add chain ip kube-proxy endpoint-TQ2QKHCZ-ns3/svc3/tcp/p80__10.0.3.3/80
add rule ip kube-proxy endpoint-TQ2QKHCZ-ns3/svc3/tcp/p80__10.0.3.3/80 ip saddr 10.0.3.3 jump mark-for-masquerade
add rule ip kube-proxy endpoint-TQ2QKHCZ-ns3/svc3/tcp/p80__10.0.3.3/80 meta l4proto tcp dnat to 10.0.3.3:80
`;
const SVC3_EMPTIED = `
add chain ip kube-proxy service-4AT6LBPK-ns3/svc3/tcp/p80
add chain ip kube-proxy endpoint-SWWHDC7X-ns3/svc3/tcp/p80__10.0.3.2/80
add chain ip kube-proxy endpoint-TQ2QKHCZ-ns3/svc3/tcp/p80__10.0.3.3/80
`;
const SVC4 = `
add chain ip kube-proxy service-LAUZTJTB-ns4/svc4/tcp/p80
add rule ip kube-proxy service-LAUZTJTB-ns4/svc4/tcp/p80 ip daddr 172.30.0.44 tcp dport 80 ip saddr != 10.0.0.0/8 jump mark-for-masquerade
add rule ip kube-proxy service-LAUZTJTB-ns4/svc4/tcp/p80 numgen random mod 1 vmap { 0 : goto endpoint-WAHRBT2B-ns4/svc4/tcp/p80__10.0.4.1/80 }
add chain ip kube-proxy endpoint-WAHRBT2B-ns4/svc4/tcp/p80__10.0.4.1/80
add rule ip kube-proxy endpoint-WAHRBT2B-ns4/svc4/tcp/p80__10.0.4.1/80 ip saddr 10.0.4.1 jump mark-for-masquerade
add rule ip kube-proxy endpoint-WAHRBT2B-ns4/svc4/tcp/p80__10.0.4.1/80 meta l4proto tcp dnat to 10.0.4.1:80
`;

const elements = (...lines: string[]) => lines.map((l) => `add element ip kube-proxy ${l}`).join("\n");
const clusterIps = (...ips: string[]) => elements(...ips.map((ip) => `cluster-ips { ${ip} }`));
const SERVICE_IPS = {
  svc1: "service-ips { 172.30.0.41 . tcp . 80 : goto service-ULMVA6XW-ns1/svc1/tcp/p80 }",
  svc2: "service-ips { 172.30.0.42 . tcp . 8080 : goto service-MHHHYRWA-ns2/svc2/tcp/p8080 }",
  svc3: "service-ips { 172.30.0.43 . tcp . 80 : goto service-4AT6LBPK-ns3/svc3/tcp/p80 }",
  svc4: "service-ips { 172.30.0.44 . tcp . 80 : goto service-LAUZTJTB-ns4/svc4/tcp/p80 }",
};

const expected = (...parts: string[]) => sortLikeKubeProxyNftablesTests(BASE_RULES + parts.join("\n"));
const dumped = (model: NftablesModel) => sortLikeKubeProxyNftablesTests(nftablesDump(model.table!));

describe("KubeProxyNftables replays TestSyncProxyRulesRepeated", () => {
  const model = new NftablesModel();
  const proxier = new KubeProxyNftables(FAKE_NODE_V4);
  let now = 1000;
  /** ageStaleChains(): every stale chain is now more than a second old. */
  const ageStaleChains = () => (now += 2);
  let services: ServiceEndpoints[] = [];
  const sync = () => proxier.sync(services, model, { now });
  const set = (name: string, endpoints: ServiceEndpoints["endpoints"], spec?: ServiceSpec) => {
    const at = services.findIndex((s) => s.service.name === name);
    const next = { service: spec ?? services[at]!.service, endpoints };
    services = at === -1 ? [...services, next] : services.map((s, i) => (i === at ? next : s));
  };
  const TWO_ENDPOINTS = [clusterIps("172.30.0.41", "172.30.0.43", "172.30.0.44"), elements(SERVICE_IPS.svc1, SERVICE_IPS.svc3, SERVICE_IPS.svc4), SVC1, SVC3_TWO, SVC4];

  it("writes the initial state in a full sync", () => {
    set("svc1", remote("10.0.1.1"), svc1);
    set("svc2", remote("10.0.2.1"), svc2);
    expect(sync().full).toBe(true);
    expect(dumped(model)).toBe(expected(clusterIps("172.30.0.41", "172.30.0.42"), elements(SERVICE_IPS.svc1, SERVICE_IPS.svc2), SVC1, SVC2));
  });

  it("adds a Service and its endpoints in 10 operations", () => {
    set("svc3", remote("10.0.3.1"), svc3);
    const result = sync();
    expect(result.full).toBe(false);
    expect(dumped(model)).toBe(expected(clusterIps("172.30.0.41", "172.30.0.42", "172.30.0.43"), elements(SERVICE_IPS.svc1, SERVICE_IPS.svc2, SERVICE_IPS.svc3), SVC1, SVC2, SVC3_ONE));
    expect(result.operations).toBe(10);
  });

  it("flushes a deleted Service's chains in 4 operations and deletes them in a transaction of their own once they are stale", () => {
    services = services.filter((s) => s.service.name !== "svc2");
    const deleted = sync();
    expect(dumped(model)).toBe(expected(clusterIps("172.30.0.41", "172.30.0.43"), elements(SERVICE_IPS.svc1, SERVICE_IPS.svc3), SVC1, SVC2_FLUSHED, SVC3_ONE));
    expect(deleted.operations).toBe(4);
    ageStaleChains();
    const aged = sync();
    expect(dumped(model)).toBe(expected(clusterIps("172.30.0.41", "172.30.0.43"), elements(SERVICE_IPS.svc1, SERVICE_IPS.svc3), SVC1, SVC3_ONE));
    expect(aged.operations).toBe(0);
    // In the order of a Go map: any.
    expect(aged.transactions[0]!.trimEnd().split("\n").sort()).toEqual([
      "delete chain ip kube-proxy endpoint-7RVP4LUQ-ns2/svc2/tcp/p8080__10.0.2.1/8080",
      "delete chain ip kube-proxy service-MHHHYRWA-ns2/svc2/tcp/p8080",
    ]);
  });

  it("adds a Service without endpoints in 2 operations, then its endpoints in 10", () => {
    set("svc4", [], svc4);
    const noEndpoints = sync();
    expect(dumped(model)).toBe(
      expected(
        clusterIps("172.30.0.41", "172.30.0.43", "172.30.0.44"),
        elements(SERVICE_IPS.svc1, SERVICE_IPS.svc3),
        SVC1,
        SVC3_ONE,
        elements('no-endpoint-services { 172.30.0.44 . tcp . 80 comment "ns4/svc4:p80" : goto reject-chain }'),
      ),
    );
    expect(noEndpoints.operations).toBe(2);
    set("svc4", remote("10.0.4.1"));
    const withEndpoints = sync();
    expect(dumped(model)).toBe(
      expected(clusterIps("172.30.0.41", "172.30.0.43", "172.30.0.44"), elements(SERVICE_IPS.svc1, SERVICE_IPS.svc3, SERVICE_IPS.svc4), SVC1, SVC3_ONE, SVC4),
    );
    expect(withEndpoints.operations).toBe(10);
  });

  it("changes an endpoint in 9 operations, keeping the old endpoint chain flushed", () => {
    set("svc3", remote("10.0.3.2"));
    const result = sync();
    expect(dumped(model)).toBe(
      expected(clusterIps("172.30.0.41", "172.30.0.43", "172.30.0.44"), elements(SERVICE_IPS.svc1, SERVICE_IPS.svc3, SERVICE_IPS.svc4), SVC1, SVC3_MOVED, SVC4),
    );
    expect(result.operations).toBe(9);
  });

  it("adds an endpoint in 12 operations after the stale chain is deleted", () => {
    ageStaleChains();
    set("svc3", remote("10.0.3.2", "10.0.3.3"));
    const result = sync();
    expect(dumped(model)).toBe(expected(...TWO_ENDPOINTS));
    expect(result.operations).toBe(12);
  });

  it("empties a Service's endpoints in 5 operations; its three chains go stale", () => {
    set("svc3", []);
    const result = sync();
    expect(dumped(model)).toBe(
      expected(
        clusterIps("172.30.0.41", "172.30.0.43", "172.30.0.44"),
        elements(SERVICE_IPS.svc1, 'no-endpoint-services { 172.30.0.43 . tcp . 80 comment "ns3/svc3:p80" : goto reject-chain }', SERVICE_IPS.svc4),
        SVC1,
        SVC3_EMPTIED,
        SVC4,
      ),
    );
    expect(result.operations).toBe(5);
    expect(new Set(proxier.stale.keys())).toEqual(
      new Set(["service-4AT6LBPK-ns3/svc3/tcp/p80", "endpoint-SWWHDC7X-ns3/svc3/tcp/p80__10.0.3.2/80", "endpoint-TQ2QKHCZ-ns3/svc3/tcp/p80__10.0.3.3/80"]),
    );
  });

  it("restores the endpoints at once in 14 operations, and the chains are no longer stale", () => {
    set("svc3", remote("10.0.3.2", "10.0.3.3"));
    const result = sync();
    expect(dumped(model)).toBe(expected(...TWO_ENDPOINTS));
    expect(result.operations).toBe(14);
    expect(proxier.stale.size).toBe(0);
  });

  it("empties and restores after the chains aged: deleted first, then written again", () => {
    set("svc3", []);
    sync();
    ageStaleChains();
    set("svc3", remote("10.0.3.2", "10.0.3.3"));
    const result = sync();
    expect(result.transactions).toHaveLength(2);
    expect(dumped(model)).toBe(expected(...TWO_ENDPOINTS));
  });

  it("writes nothing when nothing changed", () => {
    const result = sync();
    expect(dumped(model)).toBe(expected(...TWO_ENDPOINTS));
    expect(result.operations).toBe(0);
  });

  it("makes a full sync again after FullSyncPeriod, rewriting every chain but no element", () => {
    now += 3601;
    const result = sync();
    expect(result.full).toBe(true);
    expect(dumped(model)).toBe(expected(...TWO_ENDPOINTS));
    expect(result.transactions.at(-1)!.split("\n").filter((l) => l.startsWith("add element ip kube-proxy service-ips"))).toEqual([]);
    expect(result.transactions.at(-1)).toContain("flush chain ip kube-proxy service-LAUZTJTB-ns4/svc4/tcp/p80\n");
  });
});

describe("KubeProxyNftables replays TestSyncProxyRulesStartup: a restarted kube-proxy keeps what it finds", () => {
  it("adds only what is missing: setupOps + 14 operations", () => {
    const setupOps = new KubeProxyNftables(FAKE_NODE_V4).sync([], new NftablesModel()).operations;
    // The state a previous kube-proxy left (upstream's ParseDump input, verbatim).
    const left = applyNftablesTransaction(
      BASE_RULES +
        `
add chain ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80
add chain ip kube-proxy endpoint-5TPGNJF2-ns1/svc1/tcp/p80__10.0.1.1/80
add chain ip kube-proxy service-MHHHYRWA-ns2/svc2/tcp/p8080
add chain ip kube-proxy endpoint-7RVP4LUQ-ns2/svc2/tcp/p8080__10.0.2.1/8080

add rule ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80 ip daddr 172.30.0.41 tcp dport 80 ip saddr != 10.0.0.0/8 jump mark-for-masquerade
add rule ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80 numgen random mod 1 vmap { 0 : goto endpoint-5TPGNJF2-ns1/svc1/tcp/p80__10.0.1.1/80 }
add rule ip kube-proxy endpoint-5TPGNJF2-ns1/svc1/tcp/p80__10.0.1.1/80 ip saddr 10.0.1.1 jump mark-for-masquerade
add rule ip kube-proxy endpoint-5TPGNJF2-ns1/svc1/tcp/p80__10.0.1.1/80 meta l4proto tcp dnat to 10.0.1.1:80

add rule ip kube-proxy service-MHHHYRWA-ns2/svc2/tcp/p8080 ip daddr 172.30.0.42 tcp dport 8080 ip saddr != 10.0.0.0/8 jump mark-for-masquerade
add rule ip kube-proxy service-MHHHYRWA-ns2/svc2/tcp/p8080 numgen random mod 1 vmap { 0 : goto endpoint-7RVP4LUQ-ns2/svc2/tcp/p8080__10.0.2.1/8080 }
add rule ip kube-proxy endpoint-7RVP4LUQ-ns2/svc2/tcp/p8080__10.0.2.1/8080 ip saddr 10.0.2.1 jump mark-for-masquerade
add rule ip kube-proxy endpoint-7RVP4LUQ-ns2/svc2/tcp/p8080__10.0.2.1/8080 meta l4proto tcp dnat to 10.0.2.1:8080

add element ip kube-proxy cluster-ips { 172.30.0.41 }
add element ip kube-proxy cluster-ips { 172.30.0.42 }
add element ip kube-proxy service-ips { 172.30.0.41 . tcp . 80 : goto service-ULMVA6XW-ns1/svc1/tcp/p80 }
add element ip kube-proxy service-ips { 172.30.0.42 . tcp . 8080 : goto service-MHHHYRWA-ns2/svc2/tcp/p8080 }
`,
    );
    const model = new NftablesModel(left);
    const services = [
      { service: svc1, endpoints: remote("10.0.1.1", "10.0.1.2") },
      { service: svc2, endpoints: remote("10.0.2.1") },
      { service: svc3, endpoints: [] },
    ];
    const result = new KubeProxyNftables(FAKE_NODE_V4).sync(services, model);
    // TestSyncProxyRulesStartup's expected table, verbatim.
    expect(dumped(model)).toBe(
      expected(`
add element ip kube-proxy cluster-ips { 172.30.0.41 }
add element ip kube-proxy cluster-ips { 172.30.0.42 }
add element ip kube-proxy cluster-ips { 172.30.0.43 }
add element ip kube-proxy service-ips { 172.30.0.41 . tcp . 80 : goto service-ULMVA6XW-ns1/svc1/tcp/p80 }
add element ip kube-proxy service-ips { 172.30.0.42 . tcp . 8080 : goto service-MHHHYRWA-ns2/svc2/tcp/p8080 }
add element ip kube-proxy no-endpoint-services { 172.30.0.43 . tcp . 80 comment "ns3/svc3:p80" : goto reject-chain }

add chain ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80
add rule ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80 ip daddr 172.30.0.41 tcp dport 80 ip saddr != 10.0.0.0/8 jump mark-for-masquerade
add rule ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80 numgen random mod 2 vmap { 0 : goto endpoint-5TPGNJF2-ns1/svc1/tcp/p80__10.0.1.1/80 , 1 : goto endpoint-ZCZBVNAZ-ns1/svc1/tcp/p80__10.0.1.2/80 }
add chain ip kube-proxy endpoint-5TPGNJF2-ns1/svc1/tcp/p80__10.0.1.1/80
add rule ip kube-proxy endpoint-5TPGNJF2-ns1/svc1/tcp/p80__10.0.1.1/80 ip saddr 10.0.1.1 jump mark-for-masquerade
add rule ip kube-proxy endpoint-5TPGNJF2-ns1/svc1/tcp/p80__10.0.1.1/80 meta l4proto tcp dnat to 10.0.1.1:80
add chain ip kube-proxy endpoint-ZCZBVNAZ-ns1/svc1/tcp/p80__10.0.1.2/80
add rule ip kube-proxy endpoint-ZCZBVNAZ-ns1/svc1/tcp/p80__10.0.1.2/80 ip saddr 10.0.1.2 jump mark-for-masquerade
add rule ip kube-proxy endpoint-ZCZBVNAZ-ns1/svc1/tcp/p80__10.0.1.2/80 meta l4proto tcp dnat to 10.0.1.2:80
`,
        SVC2,
      ),
    );
    expect(result.operations).toBe(setupOps + 14);
  });
});

describe("kubeProxyNftablesColdStartSplit (kubernetes issue #139328)", () => {
  const services = servicesWithBackend(1200);
  const node = { ...FAKE_NODE_V4, clusterCIDR: "10.244.0.0/16" };

  it("leaves the table the single transaction leaves, in bounded transactions, endpoint chains before Service chains", () => {
    const split = kubeProxyNftablesColdStartSplit(node, services);
    const model = new NftablesModel();
    for (const tx of split) model.run(tx);
    const single = applyNftablesTransaction(kubeProxyNftablesRules(node, services).ruleset);
    expect(nftablesDump(model.table!)).toBe(nftablesDump(single));
    const operations = split.map((tx) => tx.trimEnd().split("\n").length);
    expect(operations.slice(1).every((n) => n <= COLD_START_MAX_OPERATIONS)).toBe(true);
    const firstService = split.findIndex((tx) => /^add chain ip kube-proxy service-[A-Z2-7]{8}-/m.test(tx));
    const lastEndpoint = split.findLastIndex((tx) => tx.includes("add chain ip kube-proxy endpoint-"));
    expect(lastEndpoint).toBeGreaterThan(0);
    expect(firstService).toBeGreaterThan(lastEndpoint);
    expect(split.length).toBeGreaterThan(3);
  });

  it("refuses a bound that is not a positive integer", () => {
    expect(() => kubeProxyNftablesColdStartSplit(node, services, 0)).toThrow(/maxOperations: 0 is not accepted; accepted: a positive integer/);
  });
});
