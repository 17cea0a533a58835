// kube-proxy's nftables-mode ruleset against kube-proxy's own expected outputs.
//
// Golden texts: kubernetes pkg/proxy/nftables/proxier_test.go as it stands in aojea/kubernetes at
// 492140aedb62cb751e20c9ad71831642b8635c69, kubernetes master shortly after v1.33.0 (it already has
// pkg/proxy/runner, kubernetes PR #131615) and before kubernetes PR #132456 moved the filter chains to
// priority 0 for 1.34. Its rules are those 1.31 to 1.33 write (filter chains at priority -110 plus
// filter-output-post-dnat, cluster-ips-check, nodeport-ips); an older copy of the test
// (danwinship/kubernetes@ef85e1223bdc6b1c637397935c76afde2d5d4db5) expects the same lines for these
// Services. Copied verbatim, as dedent.Dedent leaves them. Upstream compares nft.Dump() with them after
// sortNFTablesTransaction (helpers_test.go); here the generated transaction is applied to a table the
// same way and compared after a port of that sort.
import { describe, expect, it } from "vitest";
import { servicesWithBackend } from "./service-endpoints-fixture.js";
import {
  applyNftablesTransaction,
  endpointChainBase,
  kubeProxyNftablesRules,
  nftablesDump,
  serviceChainBase,
  sortLikeKubeProxyNftablesTests,
  type KubeProxyNftablesNode,
} from "../../lab/dataplanes/nftables/rules.js";
import type { ServiceEndpoints } from "../../lab/dataplanes/kube-proxy-inputs.js";
import { BASE_RULES, FAKE_NODE_V4 } from "./kube-proxy-nftables-fixture.js";
import type { ServiceSpec } from "../../workloads/service-model.js";


// TestOverallNFTablesRules: expected, after baseRules.
const OVERALL = `
# svc1
add chain ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80
add rule ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80 ip daddr 172.30.0.41 tcp dport 80 ip saddr != 10.0.0.0/8 jump mark-for-masquerade
add rule ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80 numgen random mod 1 vmap { 0 : goto endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80 }

add chain ip kube-proxy endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80
add rule ip kube-proxy endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80 ip saddr 10.180.0.1 jump mark-for-masquerade
add rule ip kube-proxy endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80 meta l4proto tcp dnat to 10.180.0.1:80

add element ip kube-proxy cluster-ips { 172.30.0.41 }
add element ip kube-proxy service-ips { 172.30.0.41 . tcp . 80 : goto service-ULMVA6XW-ns1/svc1/tcp/p80 }

# svc2
add chain ip kube-proxy service-42NFTM6N-ns2/svc2/tcp/p80
add rule ip kube-proxy service-42NFTM6N-ns2/svc2/tcp/p80 ip daddr 172.30.0.42 tcp dport 80 ip saddr != 10.0.0.0/8 jump mark-for-masquerade
add rule ip kube-proxy service-42NFTM6N-ns2/svc2/tcp/p80 numgen random mod 1 vmap { 0 : goto endpoint-SGOXE6O3-ns2/svc2/tcp/p80__10.180.0.2/80 }
add chain ip kube-proxy external-42NFTM6N-ns2/svc2/tcp/p80
add rule ip kube-proxy external-42NFTM6N-ns2/svc2/tcp/p80 ip saddr 10.0.0.0/8 goto service-42NFTM6N-ns2/svc2/tcp/p80 comment "short-circuit pod traffic"
add rule ip kube-proxy external-42NFTM6N-ns2/svc2/tcp/p80 fib saddr type local jump mark-for-masquerade comment "masquerade local traffic"
add rule ip kube-proxy external-42NFTM6N-ns2/svc2/tcp/p80 fib saddr type local goto service-42NFTM6N-ns2/svc2/tcp/p80 comment "short-circuit local traffic"
add chain ip kube-proxy endpoint-SGOXE6O3-ns2/svc2/tcp/p80__10.180.0.2/80
add rule ip kube-proxy endpoint-SGOXE6O3-ns2/svc2/tcp/p80__10.180.0.2/80 ip saddr 10.180.0.2 jump mark-for-masquerade
add rule ip kube-proxy endpoint-SGOXE6O3-ns2/svc2/tcp/p80__10.180.0.2/80 meta l4proto tcp dnat to 10.180.0.2:80

add element ip kube-proxy cluster-ips { 172.30.0.42 }
add element ip kube-proxy service-ips { 172.30.0.42 . tcp . 80 : goto service-42NFTM6N-ns2/svc2/tcp/p80 }
add element ip kube-proxy service-ips { 192.168.99.22 . tcp . 80 : goto external-42NFTM6N-ns2/svc2/tcp/p80 }
add element ip kube-proxy service-ips { 1.2.3.4 . tcp . 80 : goto external-42NFTM6N-ns2/svc2/tcp/p80 }
add element ip kube-proxy service-nodeports { tcp . 3001 : goto external-42NFTM6N-ns2/svc2/tcp/p80 }

add element ip kube-proxy no-endpoint-nodeports { tcp . 3001 comment "ns2/svc2:p80" : drop }
add element ip kube-proxy no-endpoint-services { 1.2.3.4 . tcp . 80 comment "ns2/svc2:p80" : drop }
add element ip kube-proxy no-endpoint-services { 192.168.99.22 . tcp . 80 comment "ns2/svc2:p80" : drop }

# svc3
add chain ip kube-proxy service-4AT6LBPK-ns3/svc3/tcp/p80
add rule ip kube-proxy service-4AT6LBPK-ns3/svc3/tcp/p80 ip daddr 172.30.0.43 tcp dport 80 ip saddr != 10.0.0.0/8 jump mark-for-masquerade
add rule ip kube-proxy service-4AT6LBPK-ns3/svc3/tcp/p80 numgen random mod 1 vmap { 0 : goto endpoint-UEIP74TE-ns3/svc3/tcp/p80__10.180.0.3/80 }
add chain ip kube-proxy external-4AT6LBPK-ns3/svc3/tcp/p80
add rule ip kube-proxy external-4AT6LBPK-ns3/svc3/tcp/p80 jump mark-for-masquerade
add rule ip kube-proxy external-4AT6LBPK-ns3/svc3/tcp/p80 goto service-4AT6LBPK-ns3/svc3/tcp/p80
add chain ip kube-proxy endpoint-UEIP74TE-ns3/svc3/tcp/p80__10.180.0.3/80
add rule ip kube-proxy endpoint-UEIP74TE-ns3/svc3/tcp/p80__10.180.0.3/80 ip saddr 10.180.0.3 jump mark-for-masquerade
add rule ip kube-proxy endpoint-UEIP74TE-ns3/svc3/tcp/p80__10.180.0.3/80 meta l4proto tcp dnat to 10.180.0.3:80

add element ip kube-proxy cluster-ips { 172.30.0.43 }
add element ip kube-proxy service-ips { 172.30.0.43 . tcp . 80 : goto service-4AT6LBPK-ns3/svc3/tcp/p80 }
add element ip kube-proxy service-nodeports { tcp . 3003 : goto external-4AT6LBPK-ns3/svc3/tcp/p80 }

# svc4
add chain ip kube-proxy service-LAUZTJTB-ns4/svc4/tcp/p80
add rule ip kube-proxy service-LAUZTJTB-ns4/svc4/tcp/p80 ip daddr 172.30.0.44 tcp dport 80 ip saddr != 10.0.0.0/8 jump mark-for-masquerade
add rule ip kube-proxy service-LAUZTJTB-ns4/svc4/tcp/p80 numgen random mod 2 vmap { 0 : goto endpoint-UNZV3OEC-ns4/svc4/tcp/p80__10.180.0.4/80 , 1 : goto endpoint-5RFCDDV7-ns4/svc4/tcp/p80__10.180.0.5/80 }
add chain ip kube-proxy external-LAUZTJTB-ns4/svc4/tcp/p80
add rule ip kube-proxy external-LAUZTJTB-ns4/svc4/tcp/p80 jump mark-for-masquerade
add rule ip kube-proxy external-LAUZTJTB-ns4/svc4/tcp/p80 goto service-LAUZTJTB-ns4/svc4/tcp/p80
add chain ip kube-proxy endpoint-5RFCDDV7-ns4/svc4/tcp/p80__10.180.0.5/80
add rule ip kube-proxy endpoint-5RFCDDV7-ns4/svc4/tcp/p80__10.180.0.5/80 ip saddr 10.180.0.5 jump mark-for-masquerade
add rule ip kube-proxy endpoint-5RFCDDV7-ns4/svc4/tcp/p80__10.180.0.5/80 meta l4proto tcp dnat to 10.180.0.5:80
add chain ip kube-proxy endpoint-UNZV3OEC-ns4/svc4/tcp/p80__10.180.0.4/80
add rule ip kube-proxy endpoint-UNZV3OEC-ns4/svc4/tcp/p80__10.180.0.4/80 ip saddr 10.180.0.4 jump mark-for-masquerade
add rule ip kube-proxy endpoint-UNZV3OEC-ns4/svc4/tcp/p80__10.180.0.4/80 meta l4proto tcp dnat to 10.180.0.4:80

add element ip kube-proxy cluster-ips { 172.30.0.44 }
add element ip kube-proxy service-ips { 172.30.0.44 . tcp . 80 : goto service-LAUZTJTB-ns4/svc4/tcp/p80 }
add element ip kube-proxy service-ips { 192.168.99.33 . tcp . 80 : goto external-LAUZTJTB-ns4/svc4/tcp/p80 }

# svc5
add set ip kube-proxy affinity-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80 { type ipv4_addr ; flags dynamic,timeout ; timeout 10800s ; }
add chain ip kube-proxy service-HVFWP5L3-ns5/svc5/tcp/p80
add rule ip kube-proxy service-HVFWP5L3-ns5/svc5/tcp/p80 ip daddr 172.30.0.45 tcp dport 80 ip saddr != 10.0.0.0/8 jump mark-for-masquerade
add rule ip kube-proxy service-HVFWP5L3-ns5/svc5/tcp/p80 ip saddr @affinity-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80 goto endpoint-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80
add rule ip kube-proxy service-HVFWP5L3-ns5/svc5/tcp/p80 numgen random mod 1 vmap { 0 : goto endpoint-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80 }
add chain ip kube-proxy external-HVFWP5L3-ns5/svc5/tcp/p80
add rule ip kube-proxy external-HVFWP5L3-ns5/svc5/tcp/p80 jump mark-for-masquerade
add rule ip kube-proxy external-HVFWP5L3-ns5/svc5/tcp/p80 goto service-HVFWP5L3-ns5/svc5/tcp/p80

add chain ip kube-proxy endpoint-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80
add rule ip kube-proxy endpoint-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80 ip saddr 10.180.0.3 jump mark-for-masquerade
add rule ip kube-proxy endpoint-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80 update @affinity-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80 { ip saddr }
add rule ip kube-proxy endpoint-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80 meta l4proto tcp dnat to 10.180.0.3:80

add chain ip kube-proxy firewall-HVFWP5L3-ns5/svc5/tcp/p80
add rule ip kube-proxy firewall-HVFWP5L3-ns5/svc5/tcp/p80 ip saddr != { 203.0.113.0/25 } drop

add element ip kube-proxy cluster-ips { 172.30.0.45 }
add element ip kube-proxy service-ips { 172.30.0.45 . tcp . 80 : goto service-HVFWP5L3-ns5/svc5/tcp/p80 }
add element ip kube-proxy service-ips { 5.6.7.8 . tcp . 80 : goto external-HVFWP5L3-ns5/svc5/tcp/p80 }
add element ip kube-proxy service-nodeports { tcp . 3002 : goto external-HVFWP5L3-ns5/svc5/tcp/p80 }
add element ip kube-proxy firewall-ips { 5.6.7.8 . tcp . 80 : goto firewall-HVFWP5L3-ns5/svc5/tcp/p80 }

# svc6
add element ip kube-proxy cluster-ips { 172.30.0.46 }
add element ip kube-proxy no-endpoint-services { 172.30.0.46 . tcp . 80 comment "ns6/svc6:p80" : goto reject-chain }
`;

// TestSyncProxyRulesRepeated: the dumps that equal a full sync of their Services (the others hold
// flushed chains of deleted Services that a full sync from scratch would not have).
const REPEATED_INITIAL = `
add element ip kube-proxy cluster-ips { 172.30.0.41 }
add element ip kube-proxy cluster-ips { 172.30.0.42 }
add element ip kube-proxy service-ips { 172.30.0.41 . tcp . 80 : goto service-ULMVA6XW-ns1/svc1/tcp/p80 }
add element ip kube-proxy service-ips { 172.30.0.42 . tcp . 8080 : goto service-MHHHYRWA-ns2/svc2/tcp/p8080 }

add chain ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80
add rule ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80 ip daddr 172.30.0.41 tcp dport 80 ip saddr != 10.0.0.0/8 jump mark-for-masquerade
add rule ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80 numgen random mod 1 vmap { 0 : goto endpoint-5TPGNJF2-ns1/svc1/tcp/p80__10.0.1.1/80 }
add chain ip kube-proxy endpoint-5TPGNJF2-ns1/svc1/tcp/p80__10.0.1.1/80
add rule ip kube-proxy endpoint-5TPGNJF2-ns1/svc1/tcp/p80__10.0.1.1/80 ip saddr 10.0.1.1 jump mark-for-masquerade
add rule ip kube-proxy endpoint-5TPGNJF2-ns1/svc1/tcp/p80__10.0.1.1/80 meta l4proto tcp dnat to 10.0.1.1:80

add chain ip kube-proxy service-MHHHYRWA-ns2/svc2/tcp/p8080
add rule ip kube-proxy service-MHHHYRWA-ns2/svc2/tcp/p8080 ip daddr 172.30.0.42 tcp dport 8080 ip saddr != 10.0.0.0/8 jump mark-for-masquerade
add rule ip kube-proxy service-MHHHYRWA-ns2/svc2/tcp/p8080 numgen random mod 1 vmap { 0 : goto endpoint-7RVP4LUQ-ns2/svc2/tcp/p8080__10.0.2.1/8080 }
add chain ip kube-proxy endpoint-7RVP4LUQ-ns2/svc2/tcp/p8080__10.0.2.1/8080
add rule ip kube-proxy endpoint-7RVP4LUQ-ns2/svc2/tcp/p8080__10.0.2.1/8080 ip saddr 10.0.2.1 jump mark-for-masquerade
add rule ip kube-proxy endpoint-7RVP4LUQ-ns2/svc2/tcp/p8080__10.0.2.1/8080 meta l4proto tcp dnat to 10.0.2.1:8080
`;

const REPEATED_ADD_SVC3 = `
add element ip kube-proxy cluster-ips { 172.30.0.41 }
add element ip kube-proxy cluster-ips { 172.30.0.42 }
add element ip kube-proxy cluster-ips { 172.30.0.43 }
add element ip kube-proxy service-ips { 172.30.0.41 . tcp . 80 : goto service-ULMVA6XW-ns1/svc1/tcp/p80 }
add element ip kube-proxy service-ips { 172.30.0.42 . tcp . 8080 : goto service-MHHHYRWA-ns2/svc2/tcp/p8080 }
add element ip kube-proxy service-ips { 172.30.0.43 . tcp . 80 : goto service-4AT6LBPK-ns3/svc3/tcp/p80 }

add chain ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80
add rule ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80 ip daddr 172.30.0.41 tcp dport 80 ip saddr != 10.0.0.0/8 jump mark-for-masquerade
add rule ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80 numgen random mod 1 vmap { 0 : goto endpoint-5TPGNJF2-ns1/svc1/tcp/p80__10.0.1.1/80 }
add chain ip kube-proxy endpoint-5TPGNJF2-ns1/svc1/tcp/p80__10.0.1.1/80
add rule ip kube-proxy endpoint-5TPGNJF2-ns1/svc1/tcp/p80__10.0.1.1/80 ip saddr 10.0.1.1 jump mark-for-masquerade
add rule ip kube-proxy endpoint-5TPGNJF2-ns1/svc1/tcp/p80__10.0.1.1/80 meta l4proto tcp dnat to 10.0.1.1:80

add chain ip kube-proxy service-MHHHYRWA-ns2/svc2/tcp/p8080
add rule ip kube-proxy service-MHHHYRWA-ns2/svc2/tcp/p8080 ip daddr 172.30.0.42 tcp dport 8080 ip saddr != 10.0.0.0/8 jump mark-for-masquerade
add rule ip kube-proxy service-MHHHYRWA-ns2/svc2/tcp/p8080 numgen random mod 1 vmap { 0 : goto endpoint-7RVP4LUQ-ns2/svc2/tcp/p8080__10.0.2.1/8080 }
add chain ip kube-proxy endpoint-7RVP4LUQ-ns2/svc2/tcp/p8080__10.0.2.1/8080
add rule ip kube-proxy endpoint-7RVP4LUQ-ns2/svc2/tcp/p8080__10.0.2.1/8080 ip saddr 10.0.2.1 jump mark-for-masquerade
add rule ip kube-proxy endpoint-7RVP4LUQ-ns2/svc2/tcp/p8080__10.0.2.1/8080 meta l4proto tcp dnat to 10.0.2.1:8080

add chain ip kube-proxy service-4AT6LBPK-ns3/svc3/tcp/p80
add rule ip kube-proxy service-4AT6LBPK-ns3/svc3/tcp/p80 ip daddr 172.30.0.43 tcp dport 80 ip saddr != 10.0.0.0/8 jump mark-for-masquerade
add rule ip kube-proxy service-4AT6LBPK-ns3/svc3/tcp/p80 numgen random mod 1 vmap { 0 : goto endpoint-2OCDJSZQ-ns3/svc3/tcp/p80__10.0.3.1/80 }
add chain ip kube-proxy endpoint-2OCDJSZQ-ns3/svc3/tcp/p80__10.0.3.1/80
add rule ip kube-proxy endpoint-2OCDJSZQ-ns3/svc3/tcp/p80__10.0.3.1/80 ip saddr 10.0.3.1 jump mark-for-masquerade
add rule ip kube-proxy endpoint-2OCDJSZQ-ns3/svc3/tcp/p80__10.0.3.1/80 meta l4proto tcp dnat to 10.0.3.1:80
`;

// After "Add a service, sync, then add its endpoints": svc4 has no endpoints yet.
const REPEATED_SVC4_NO_ENDPOINTS = `
add element ip kube-proxy cluster-ips { 172.30.0.41 }
add element ip kube-proxy cluster-ips { 172.30.0.43 }
add element ip kube-proxy cluster-ips { 172.30.0.44 }
add element ip kube-proxy service-ips { 172.30.0.41 . tcp . 80 : goto service-ULMVA6XW-ns1/svc1/tcp/p80 }
add element ip kube-proxy service-ips { 172.30.0.43 . tcp . 80 : goto service-4AT6LBPK-ns3/svc3/tcp/p80 }

add chain ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80
add rule ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80 ip daddr 172.30.0.41 tcp dport 80 ip saddr != 10.0.0.0/8 jump mark-for-masquerade
add rule ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80 numgen random mod 1 vmap { 0 : goto endpoint-5TPGNJF2-ns1/svc1/tcp/p80__10.0.1.1/80 }
add chain ip kube-proxy endpoint-5TPGNJF2-ns1/svc1/tcp/p80__10.0.1.1/80
add rule ip kube-proxy endpoint-5TPGNJF2-ns1/svc1/tcp/p80__10.0.1.1/80 ip saddr 10.0.1.1 jump mark-for-masquerade
add rule ip kube-proxy endpoint-5TPGNJF2-ns1/svc1/tcp/p80__10.0.1.1/80 meta l4proto tcp dnat to 10.0.1.1:80

add chain ip kube-proxy service-4AT6LBPK-ns3/svc3/tcp/p80
add rule ip kube-proxy service-4AT6LBPK-ns3/svc3/tcp/p80 ip daddr 172.30.0.43 tcp dport 80 ip saddr != 10.0.0.0/8 jump mark-for-masquerade
add rule ip kube-proxy service-4AT6LBPK-ns3/svc3/tcp/p80 numgen random mod 1 vmap { 0 : goto endpoint-2OCDJSZQ-ns3/svc3/tcp/p80__10.0.3.1/80 }
add chain ip kube-proxy endpoint-2OCDJSZQ-ns3/svc3/tcp/p80__10.0.3.1/80
add rule ip kube-proxy endpoint-2OCDJSZQ-ns3/svc3/tcp/p80__10.0.3.1/80 ip saddr 10.0.3.1 jump mark-for-masquerade
add rule ip kube-proxy endpoint-2OCDJSZQ-ns3/svc3/tcp/p80__10.0.3.1/80 meta l4proto tcp dnat to 10.0.3.1:80

add element ip kube-proxy no-endpoint-services { 172.30.0.44 . tcp . 80 comment "ns4/svc4:p80" : goto reject-chain }
`;

// After "Add an endpoint to a service": svc3 with two endpoints.
const REPEATED_TWO_ENDPOINTS = `
add element ip kube-proxy cluster-ips { 172.30.0.41 }
add element ip kube-proxy cluster-ips { 172.30.0.43 }
add element ip kube-proxy cluster-ips { 172.30.0.44 }
add element ip kube-proxy service-ips { 172.30.0.41 . tcp . 80 : goto service-ULMVA6XW-ns1/svc1/tcp/p80 }
add element ip kube-proxy service-ips { 172.30.0.43 . tcp . 80 : goto service-4AT6LBPK-ns3/svc3/tcp/p80 }
add element ip kube-proxy service-ips { 172.30.0.44 . tcp . 80 : goto service-LAUZTJTB-ns4/svc4/tcp/p80 }

add chain ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80
add rule ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80 ip daddr 172.30.0.41 tcp dport 80 ip saddr != 10.0.0.0/8 jump mark-for-masquerade
add rule ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80 numgen random mod 1 vmap { 0 : goto endpoint-5TPGNJF2-ns1/svc1/tcp/p80__10.0.1.1/80 }
add chain ip kube-proxy endpoint-5TPGNJF2-ns1/svc1/tcp/p80__10.0.1.1/80
add rule ip kube-proxy endpoint-5TPGNJF2-ns1/svc1/tcp/p80__10.0.1.1/80 ip saddr 10.0.1.1 jump mark-for-masquerade
add rule ip kube-proxy endpoint-5TPGNJF2-ns1/svc1/tcp/p80__10.0.1.1/80 meta l4proto tcp dnat to 10.0.1.1:80

add chain ip kube-proxy service-4AT6LBPK-ns3/svc3/tcp/p80
add rule ip kube-proxy service-4AT6LBPK-ns3/svc3/tcp/p80 ip daddr 172.30.0.43 tcp dport 80 ip saddr != 10.0.0.0/8 jump mark-for-masquerade
add rule ip kube-proxy service-4AT6LBPK-ns3/svc3/tcp/p80 numgen random mod 2 vmap { 0 : goto endpoint-SWWHDC7X-ns3/svc3/tcp/p80__10.0.3.2/80 , 1 : goto endpoint-TQ2QKHCZ-ns3/svc3/tcp/p80__10.0.3.3/80 }
add chain ip kube-proxy endpoint-SWWHDC7X-ns3/svc3/tcp/p80__10.0.3.2/80
add rule ip kube-proxy endpoint-SWWHDC7X-ns3/svc3/tcp/p80__10.0.3.2/80 ip saddr 10.0.3.2 jump mark-for-masquerade
add rule ip kube-proxy endpoint-SWWHDC7X-ns3/svc3/tcp/p80__10.0.3.2/80 meta l4proto tcp dnat to 10.0.3.2:80
add chain ip kube-proxy endpoint-TQ2QKHCZ-ns3/svc3/tcp/p80__10.0.3.3/80
add rule ip kube-proxy endpoint-TQ2QKHCZ-ns3/svc3/tcp/p80__10.0.3.3/80 ip saddr 10.0.3.3 jump mark-for-masquerade
add rule ip kube-proxy endpoint-TQ2QKHCZ-ns3/svc3/tcp/p80__10.0.3.3/80 meta l4proto tcp dnat to 10.0.3.3:80

add chain ip kube-proxy service-LAUZTJTB-ns4/svc4/tcp/p80
add rule ip kube-proxy service-LAUZTJTB-ns4/svc4/tcp/p80 ip daddr 172.30.0.44 tcp dport 80 ip saddr != 10.0.0.0/8 jump mark-for-masquerade
add rule ip kube-proxy service-LAUZTJTB-ns4/svc4/tcp/p80 numgen random mod 1 vmap { 0 : goto endpoint-WAHRBT2B-ns4/svc4/tcp/p80__10.0.4.1/80 }
add chain ip kube-proxy endpoint-WAHRBT2B-ns4/svc4/tcp/p80__10.0.4.1/80
add rule ip kube-proxy endpoint-WAHRBT2B-ns4/svc4/tcp/p80__10.0.4.1/80 ip saddr 10.0.4.1 jump mark-for-masquerade
add rule ip kube-proxy endpoint-WAHRBT2B-ns4/svc4/tcp/p80__10.0.4.1/80 meta l4proto tcp dnat to 10.0.4.1:80
`;

// TestSyncProxyRulesStartup: the state after the first sync.
const STARTUP = `
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

add chain ip kube-proxy service-MHHHYRWA-ns2/svc2/tcp/p8080
add rule ip kube-proxy service-MHHHYRWA-ns2/svc2/tcp/p8080 ip daddr 172.30.0.42 tcp dport 8080 ip saddr != 10.0.0.0/8 jump mark-for-masquerade
add rule ip kube-proxy service-MHHHYRWA-ns2/svc2/tcp/p8080 numgen random mod 1 vmap { 0 : goto endpoint-7RVP4LUQ-ns2/svc2/tcp/p8080__10.0.2.1/8080 }
add chain ip kube-proxy endpoint-7RVP4LUQ-ns2/svc2/tcp/p8080__10.0.2.1/8080
add rule ip kube-proxy endpoint-7RVP4LUQ-ns2/svc2/tcp/p8080__10.0.2.1/8080 ip saddr 10.0.2.1 jump mark-for-masquerade
add rule ip kube-proxy endpoint-7RVP4LUQ-ns2/svc2/tcp/p8080__10.0.2.1/8080 meta l4proto tcp dnat to 10.0.2.1:8080
`;

/** The generated ruleset applied, dumped and sorted like proxier_test.go's actual side. */
function actual(services: ServiceEndpoints[], node: KubeProxyNftablesNode = FAKE_NODE_V4): string {
  return sortLikeKubeProxyNftablesTests(nftablesDump(applyNftablesTransaction(kubeProxyNftablesRules(node, services).ruleset)));
}

const expected = (golden: string) => sortLikeKubeProxyNftablesTests(BASE_RULES + golden);

const clusterIp = (ns: string, name: string, ip: string, port: number, portName = "p80"): ServiceSpec => ({
  namespace: ns,
  name,
  type: "ClusterIP",
  clusterIPs: { ipv4: ip },
  selector: {},
  ports: [{ name: portName, protocol: "TCP", port, targetPort: port }],
});

const nodePortService = (ns: string, name: string, ip: string, nodePort: number, etpLocal: boolean): ServiceSpec => ({
  ...clusterIp(ns, name, ip, 80),
  type: "NodePort",
  ...(etpLocal ? { externalTrafficPolicy: "Local" as const } : {}),
  ports: [{ name: "p80", protocol: "TCP", port: 80, targetPort: 80, nodePort }],
});

const remote = (...ips: string[]) => ips.map((ip) => ({ ip, local: false }));

describe("kube-proxy's chain names", () => {
  // Test_servicePortChainNameBase and Test_servicePortEndpointChainNameBase, verbatim.
  const long = {
    namespace: "very-long-namespace-name-abcdefghijklmnopqrstuvwxyz0123456789xx",
    name: "very-long-service-name-why-would-you-even-do-this-i-mean-really",
    protocol: "sctp",
    portName: "port-443-providing-the-hypertext-transmission-protocol-with-tls",
  };
  const simple = { namespace: "testing", name: "service", protocol: "tcp", portName: "http" };

  it("hash a Service port like servicePortChainNameBase", () => {
    expect(serviceChainBase(simple)).toBe("P4ZYZVCF-testing/service/tcp/http");
    expect(serviceChainBase({ ...simple, portName: "https" })).toBe("LZBRENCP-testing/service/tcp/https");
    expect(serviceChainBase(long)).toBe(
      "KR6NACJP-very-long-namespace-name-abcdefghijklmnopqrstuvwxyz0123456789xx/very-long-service-name-why-would-you-even-do-this-i-mean-really/sctp/port-443-providing-the-hypertext-transmission-protocol-with-tls",
    );
  });

  it("hash an endpoint like servicePortEndpointChainNameBase, IPv6 colons as dots, truncated past 240 characters", () => {
    expect(endpointChainBase(simple, "10.180.0.1", 80)).toBe("JO2XBXZR-testing/service/tcp/http__10.180.0.1/80");
    expect(endpointChainBase(simple, "10.180.0.2", 80)).toBe("5S6H3H22-testing/service/tcp/http__10.180.0.2/80");
    expect(endpointChainBase(simple, "fd80:abcd:12::a1b2:c3d4:e5f6:9999", 80)).toBe("U7E2ET36-testing/service/tcp/http__fd80.abcd.12..a1b2.c3d4.e5f6.9999/80");
    const prefix = "very-long-namespace-name-abcdefghijklmnopqrstuvwxyz0123456789xx/very-long-service-name-why-would-you-even-do-this-i-mean-really/sctp/port-443-providing-the-hypertext-transmission-protocol-with-tls";
    expect(endpointChainBase(long, "1234:5678:9abc:def0::abc:1234", 443)).toBe(`5YS7AFEA-${prefix}__1234.5678.9abc.def0..abc.1234/443`);
    expect(endpointChainBase(long, "1234:5678:9abc:def0::abcd:1234:5678", 443)).toBe(`CI6C53Q3-${prefix}__1234.5678.9abc.def0..abcd.1234...`);
    expect(endpointChainBase(long, "1234:5678:9abc:def0::abcd:1234:8765", 443)).toBe(`2FLXFK6X-${prefix}__1234.5678.9abc.def0..abcd.1234...`);
  });
});

describe("kubeProxyNftablesRules reproduces kube-proxy's expected tables byte for byte", () => {
  it("TestOverallNFTablesRules, for the Services of the testbed's shapes", () => {
    // svc1 ClusterIP; svc2 NodePort with externalTrafficPolicy Local and no endpoint on this node;
    // svc3 NodePort with externalTrafficPolicy Cluster; svc6 ClusterIP without endpoints. Left out:
    // svc2's LoadBalancer and external IP, svc4 (external IP), svc5 (LoadBalancer, source ranges,
    // session affinity): the testbed has none of these.
    const notModelled = ["ns4/svc4", "ns5/svc5", "{ 172.30.0.44 }", "{ 172.30.0.45 }", "{ 192.168.99.22 ", "{ 1.2.3.4 "];
    const lines = OVERALL.split("\n");
    const kept = lines.filter((l) => !notModelled.some((s) => l.includes(s)));
    // 4 lines of svc2's LoadBalancer and external IP, 15 of svc4, 19 of svc5.
    expect(lines.length - kept.length).toBe(38);
    const services: ServiceEndpoints[] = [
      { service: clusterIp("ns1", "svc1", "172.30.0.41", 80), endpoints: remote("10.180.0.1") },
      { service: nodePortService("ns2", "svc2", "172.30.0.42", 3001, true), endpoints: remote("10.180.0.2") },
      { service: nodePortService("ns3", "svc3", "172.30.0.43", 3003, false), endpoints: remote("10.180.0.3") },
      { service: clusterIp("ns6", "svc6", "172.30.0.46", 80), endpoints: [] },
    ];
    expect(actual(services)).toBe(expected(kept.join("\n")));
  });

  const svc1 = clusterIp("ns1", "svc1", "172.30.0.41", 80);
  const svc2 = clusterIp("ns2", "svc2", "172.30.0.42", 8080, "p8080");
  const svc3 = clusterIp("ns3", "svc3", "172.30.0.43", 80);
  const svc4 = clusterIp("ns4", "svc4", "172.30.0.44", 80);

  it("TestSyncProxyRulesRepeated: two ClusterIP Services", () => {
    expect(actual([{ service: svc1, endpoints: remote("10.0.1.1") }, { service: svc2, endpoints: remote("10.0.2.1") }])).toBe(expected(REPEATED_INITIAL));
  });

  it("TestSyncProxyRulesRepeated: a third Service", () => {
    const services = [
      { service: svc1, endpoints: remote("10.0.1.1") },
      { service: svc2, endpoints: remote("10.0.2.1") },
      { service: svc3, endpoints: remote("10.0.3.1") },
    ];
    expect(actual(services)).toBe(expected(REPEATED_ADD_SVC3));
  });

  it("TestSyncProxyRulesRepeated: a Service without endpoints rejects through no-endpoint-services", () => {
    const services = [
      { service: svc1, endpoints: remote("10.0.1.1") },
      { service: svc3, endpoints: remote("10.0.3.1") },
      { service: svc4, endpoints: [] },
    ];
    expect(actual(services)).toBe(expected(REPEATED_SVC4_NO_ENDPOINTS));
  });

  it("TestSyncProxyRulesRepeated: two endpoints behind one numgen vmap", () => {
    const services = [
      { service: svc1, endpoints: remote("10.0.1.1") },
      { service: svc3, endpoints: remote("10.0.3.3", "10.0.3.2") },
      { service: svc4, endpoints: remote("10.0.4.1") },
    ];
    expect(actual(services)).toBe(expected(REPEATED_TWO_ENDPOINTS));
  });

  it("TestSyncProxyRulesStartup", () => {
    const services = [
      { service: svc1, endpoints: remote("10.0.1.1", "10.0.1.2") },
      { service: svc2, endpoints: remote("10.0.2.1") },
      { service: svc3, endpoints: [] },
    ];
    expect(actual(services)).toBe(expected(STARTUP));
  });
});

/** The rules of one chain in the table the ruleset leaves, without the "add rule FAMILY TABLE CHAIN " prefix. */
function chainRules(ruleset: string, chain: string): string[] {
  const c = applyNftablesTransaction(ruleset).chains.get(chain);
  if (!c) throw new Error(`no chain ${chain}`);
  return c.rules.map((r) => r.split(" ").slice(5).join(" "));
}

function elements(ruleset: string, container: string): string[] {
  return [...applyNftablesTransaction(ruleset).containers.get(container)!.elements.values()].map((l) => l.split(" ").slice(5).join(" "));
}

describe("kubeProxyNftablesRules for the testbed's Services (proxier.go's logic, beyond its golden dumps)", () => {
  const node: KubeProxyNftablesNode = { family: "ipv4", clusterCIDR: "10.244.0.0/16", nodePortAddresses: ["198.18.1.2/32"], addresses: ["198.18.1.2", "127.0.0.1"] };
  const svc = nodePortService("ns1", "svc1", "10.96.0.3", 30001, true);
  const base = serviceChainBase({ namespace: "ns1", name: "svc1", protocol: "tcp", portName: "p80" });
  const ep = (ip: string) => `endpoint-${endpointChainBase({ namespace: "ns1", name: "svc1", protocol: "tcp", portName: "p80" }, ip, 80)}`;

  it("sends external traffic of an externalTrafficPolicy Local NodePort to the node's own endpoints only", () => {
    const { ruleset } = kubeProxyNftablesRules(node, [{ service: svc, endpoints: [{ ip: "10.244.1.5", local: true }, { ip: "10.244.2.7", local: false }] }]);
    expect(chainRules(ruleset, `external-${base}`)).toEqual([
      `ip saddr 10.244.0.0/16 goto service-${base} comment "short-circuit pod traffic"`,
      `fib saddr type local jump mark-for-masquerade comment "masquerade local traffic"`,
      `fib saddr type local goto service-${base} comment "short-circuit local traffic"`,
      `goto local-${base}`,
    ]);
    expect(chainRules(ruleset, `local-${base}`)).toEqual([`numgen random mod 1 vmap { 0 : goto ${ep("10.244.1.5")} }`]);
    expect(chainRules(ruleset, `service-${base}`)).toEqual([
      "ip daddr 10.96.0.3 tcp dport 80 ip saddr != 10.244.0.0/16 jump mark-for-masquerade",
      `numgen random mod 2 vmap { 0 : goto ${ep("10.244.1.5")} , 1 : goto ${ep("10.244.2.7")} }`,
    ]);
    expect(chainRules(ruleset, ep("10.244.1.5"))).toEqual(["ip saddr 10.244.1.5 jump mark-for-masquerade", "meta l4proto tcp dnat to 10.244.1.5:80"]);
    expect(elements(ruleset, "service-nodeports")).toEqual([`{ tcp . 30001 : goto external-${base} }`]);
    expect(elements(ruleset, "no-endpoint-nodeports")).toEqual([]);
    // The node address is the only NodePort address; loopback is never one.
    expect(elements(ruleset, "nodeport-ips")).toEqual(["{ 198.18.1.2 }"]);
  });

  it("never takes a loopback address as a NodePort address, even inside --nodeport-addresses", () => {
    const { ruleset } = kubeProxyNftablesRules({ ...node, nodePortAddresses: ["127.0.0.0/8", "198.18.1.0/24"], addresses: ["127.0.0.1", "198.18.1.2", "198.18.2.1"] }, []);
    expect(elements(ruleset, "nodeport-ips")).toEqual(["{ 198.18.1.2 }"]);
  });

  it("rejects a NodePort Service without endpoints in both no-endpoint maps and writes no chain for it", () => {
    const { ruleset, counts } = kubeProxyNftablesRules(node, [{ service: svc, endpoints: [] }]);
    expect(elements(ruleset, "no-endpoint-services")).toEqual(['{ 10.96.0.3 . tcp . 80 comment "ns1/svc1:p80" : goto reject-chain }']);
    expect(elements(ruleset, "no-endpoint-nodeports")).toEqual(['{ tcp . 30001 comment "ns1/svc1:p80" : goto reject-chain }']);
    expect(ruleset).not.toMatch(/(service|local|external|endpoint)-[A-Z2-7]{8}-/);
    expect(counts.elements).toMatchObject({ "cluster-ips": 1, "service-ips": 0, "service-nodeports": 0 });
  });

  it("writes the IPv6 table with ip6 matches, dotted endpoint chain names and NodePorts on every local address when none is given", () => {
    const v6: KubeProxyNftablesNode = { family: "ipv6", clusterCIDR: "fd00:10:244::/56", serviceCIDRs: ["10.96.0.0/16", "fd00:10:96::/112"] };
    const service: ServiceSpec = { ...svc, clusterIPs: { ipv4: "10.96.0.3", ipv6: "fd00:10:96::3" } };
    const { ruleset, family } = kubeProxyNftablesRules(v6, [{ service, endpoints: [{ ip: "10.244.1.5", local: true }, { ip: "fd00:10:244:1:0:0:0:5", local: true }] }]);
    expect(family).toBe("ipv6");
    expect(ruleset.split("\n").filter(Boolean).every((l) => / ip6 kube-proxy( |$)/.test(l))).toBe(true);
    expect(ruleset).not.toMatch(/\bip (daddr|saddr)|ipv4_addr|10\.96\.0\.3|10\.244\.1\.5/);
    const v6ep = `endpoint-${endpointChainBase({ namespace: "ns1", name: "svc1", protocol: "tcp", portName: "p80" }, "fd00:10:244:1::5", 80)}`;
    expect(v6ep).toMatch(/__fd00\.10\.244\.1\.\.5\/80$/);
    expect(chainRules(ruleset, v6ep)).toEqual(["ip6 saddr fd00:10:244:1::5 jump mark-for-masquerade", "meta l4proto tcp dnat to [fd00:10:244:1::5]:80"]);
    expect(chainRules(ruleset, "services")).toEqual([
      "ip6 daddr . meta l4proto . th dport vmap @service-ips",
      "fib daddr type local ip6 daddr != ::1 meta l4proto . th dport vmap @service-nodeports",
    ]);
    expect(chainRules(ruleset, "nodeport-endpoints-check")).toEqual(["ip6 daddr != ::1 meta l4proto . th dport vmap @no-endpoint-nodeports"]);
    expect(chainRules(ruleset, "cluster-ips-check")[1]).toBe('ip6 daddr { fd00:10:96::/112 } drop comment "Drop traffic to unallocated ClusterIPs"');
    // No --nodeport-addresses of this family: the nodeport-ips set is added and deleted again.
    expect(applyNftablesTransaction(ruleset).containers.has("nodeport-ips")).toBe(false);
    expect(ruleset).toContain("add set ip6 kube-proxy nodeport-ips { type ipv6_addr ; comment \"IPs that accept NodePort traffic\" ; }\ndelete set ip6 kube-proxy nodeport-ips\n");
  });

  it("masquerades all ClusterIP traffic with --masquerade-all, uses 1 << masqueradeBit as %#08x, handles UDP", () => {
    const udp: ServiceSpec = { ...clusterIp("ns1", "dns", "10.96.0.10", 53), ports: [{ name: "d", protocol: "UDP", port: 53, targetPort: 5353 }] };
    const { ruleset } = kubeProxyNftablesRules({ family: "ipv4", masqueradeAll: true, masqueradeBit: 12 }, [{ service: udp, endpoints: remote("10.244.1.5") }]);
    const b = serviceChainBase({ namespace: "ns1", name: "dns", protocol: "udp", portName: "d" });
    expect(chainRules(ruleset, `service-${b}`)[0]).toBe("ip daddr 10.96.0.10 udp dport 53 jump mark-for-masquerade");
    expect(chainRules(ruleset, "mark-for-masquerade")).toEqual(["mark set mark or 0x00001000"]);
    expect(chainRules(ruleset, "masquerading")).toEqual(["mark and 0x00001000 == 0 return", "mark set mark xor 0x00001000", "masquerade fully-random"]);
    expect(ruleset).toContain("meta l4proto udp dnat to 10.244.1.5:5353");
    expect(elements(ruleset, "service-ips")).toEqual([`{ 10.96.0.10 . udp . 53 : goto service-${b} }`]);
    // No ServiceCIDRs: only the reject rule in cluster-ips-check.
    expect(chainRules(ruleset, "cluster-ips-check")).toEqual(['ip daddr @cluster-ips reject comment "Reject traffic to invalid ports of ClusterIPs"']);
  });

  it("without a local-traffic detector writes no masquerade rule for ClusterIP traffic and no pod short-circuit", () => {
    const { ruleset } = kubeProxyNftablesRules({ family: "ipv4" }, [{ service: svc, endpoints: [{ ip: "10.244.1.5", local: true }] }]);
    expect(chainRules(ruleset, `service-${base}`)).toEqual([`numgen random mod 1 vmap { 0 : goto ${ep("10.244.1.5")} }`]);
    expect(chainRules(ruleset, `external-${base}`)).toHaveLength(3);
  });

  it("refuses bad node settings with the key, the value and what is accepted, before writing anything", () => {
    expect(() => kubeProxyNftablesRules({ family: "ipv4", serviceCIDRs: ["nope"] }, [])).toThrow(
      'kube-proxy rules: serviceCIDRs "nope" is not accepted; accepted: CIDRs, e.g. 198.19.128.0/17',
    );
    expect(() => kubeProxyNftablesRules({ family: "ipv6", clusterCIDR: "10.0.0.0/8" }, [])).toThrow(
      'clusterCIDR "10.0.0.0/8" is not accepted; accepted: a CIDR of the ipv6 family',
    );
  });
});

describe("sortLikeKubeProxyNftablesTests", () => {
  it("orders by object type and name, keeps each chain's rules in their order, sorts elements", () => {
    const text = [
      "# comment",
      "add element ip kube-proxy s { 2 }",
      "add rule ip kube-proxy b second",
      "add element ip kube-proxy s { 1 }",
      "add rule ip kube-proxy a only",
      "",
      "add rule ip kube-proxy b first",
      "add map ip kube-proxy m { type x ; }",
      "add set ip kube-proxy s { type y ; }",
      "add chain ip kube-proxy b",
      "add chain ip kube-proxy a",
      'add table ip kube-proxy { comment "t" ; }',
    ].join("\n");
    expect(sortLikeKubeProxyNftablesTests(text).split("\n")).toEqual([
      'add table ip kube-proxy { comment "t" ; }',
      "add chain ip kube-proxy a",
      "add chain ip kube-proxy b",
      "add rule ip kube-proxy a only",
      "add rule ip kube-proxy b second",
      "add rule ip kube-proxy b first",
      "add set ip kube-proxy s { type y ; }",
      "add map ip kube-proxy m { type x ; }",
      "add element ip kube-proxy s { 1 }",
      "add element ip kube-proxy s { 2 }",
    ]);
    expect(() => sortLikeKubeProxyNftablesTests("add flowtable ip kube-proxy f")).toThrow(/is not about a table, chain, rule, set, map or element/);
  });
});

describe("the transaction model", () => {
  const table = "add table ip kube-proxy { comment \"rules for kube-proxy\" ; }\nadd chain ip kube-proxy a\n";
  it("refuses what the kernel refuses", () => {
    expect(() => applyNftablesTransaction(`${table}add rule ip kube-proxy b accept\n`)).toThrow("nftables transaction: no chain b: add rule ip kube-proxy b accept");
    expect(() => applyNftablesTransaction(`${table}add rule ip kube-proxy a jump b\n`)).toThrow(/no chain b to jump to/);
    expect(() => applyNftablesTransaction(`${table}add rule ip kube-proxy a ip daddr @s accept\n`)).toThrow(/no set or map s/);
    const map = "add map ip kube-proxy m { type inet_proto . inet_service : verdict ; comment \"x\" ; }\n";
    expect(() => applyNftablesTransaction(`${table}${map}add element ip kube-proxy m { tcp . 1 : goto a }\nadd element ip kube-proxy m { tcp . 1 : drop }\n`)).toThrow(
      /element tcp \. 1 exists with another value/,
    );
    expect(() => applyNftablesTransaction("add chain ip kube-proxy a\n")).toThrow(/the table does not exist/);
  });

  it("follows add, flush and delete", () => {
    const t = applyNftablesTransaction(`${table}add rule ip kube-proxy a accept\nflush chain ip kube-proxy a\nadd rule ip kube-proxy a drop\nadd chain ip kube-proxy b\ndelete chain ip kube-proxy b\n`);
    expect([...t.chains.keys()]).toEqual(["a"]);
    expect(t.chains.get("a")!.rules).toEqual(["add rule ip kube-proxy a drop"]);
  });
});

describe("counts as a function of N for the testbed's Service set", () => {
  const v4: KubeProxyNftablesNode = { family: "ipv4", clusterCIDR: "10.244.0.0/16", serviceCIDRs: ["10.96.0.0/16"], nodePortAddresses: ["198.18.1.2/32"], addresses: ["198.18.1.2"] };
  const v6: KubeProxyNftablesNode = { family: "ipv6", clusterCIDR: "fd00:10:244::/56", serviceCIDRs: ["fd00:10:96::/112"], nodePortAddresses: ["2001:2:0:20::2/128"], addresses: ["2001:2:0:20::2"] };

  // kube-proxy's arithmetic, independent of the generator: 16 chains and 23 rules of its own; per
  // NodePort port (externalTrafficPolicy Local, one local endpoint) the service, local, external and
  // endpoint chains with 2 + 1 + 4 + 2 rules; per ClusterIP port the service and endpoint chains with 2 + 2.
  for (const n of [1, 1000, 2764, 3000, 10000]) {
    it(`N = ${n}: one verdict-map element per Service port, 4 chains and 9 rules per NodePort port, 2 and 4 per ClusterIP port`, () => {
      const nodePortServices = Math.min(n, 2764);
      const nodePortPorts = nodePortServices + 6; // the receiver's six ports (three per ITGRecv) are NodePorts too
      const clusterIpPorts = n - nodePortServices;
      for (const node of [v4, v6]) {
        const { counts, ruleset } = kubeProxyNftablesRules(node, servicesWithBackend(n));
        // kube-proxy adds each element once (nftElementStorage): one cluster-ips line per ClusterIP.
        expect(ruleset.split("\n").filter((l) => l.startsWith(`add element ${node.family === "ipv4" ? "ip" : "ip6"} kube-proxy cluster-ips `))).toHaveLength(n + 1);
        expect(counts).toEqual({
          chains: 16 + 4 * nodePortPorts + 2 * clusterIpPorts,
          baseChains: 8,
          rules: 23 + 9 * nodePortPorts + 4 * clusterIpPorts,
          sets: 2,
          maps: 5,
          elements: {
            // The receiver's six ports share one ClusterIP.
            "cluster-ips": n + 1,
            "firewall-ips": 0,
            "no-endpoint-nodeports": 0,
            "no-endpoint-services": 0,
            "nodeport-ips": 1,
            "service-ips": nodePortPorts + clusterIpPorts,
            "service-nodeports": nodePortPorts,
          },
        });
      }
    });
  }
});
