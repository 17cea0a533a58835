// ServiceSets for the lab tests, built the way the paper's cluster holds them: a D-ITG receiver
// Service plus N scaled Services, the first ones NodePort, the rest ClusterIP.
// ClusterIPs come from the benchmarking ranges, so a test may route to them without leaving them.
import { nthAddress, parseCidr } from "../../scenario/cidr.js";
import type { L4Protocol, ServicePort, ServiceSet, ServiceSpec } from "../../workloads/service-model.js";

const CLUSTER_IPS = { ipv4: parseCidr("198.19.128.0/17")!, ipv6: parseCidr("2001:2:0:ff::/64")! };

/** The receiver: signaling 30900 -> 9000, data 31000 on TCP and UDP (nodePort = port = targetPort). */
export const RECEIVER_PORTS: readonly ServicePort[] = [
  { name: "sig", protocol: "TCP", port: 9000, targetPort: 9000, nodePort: 30900 },
  { name: "dtcp", protocol: "TCP", port: 31000, targetPort: 31000, nodePort: 31000 },
  { name: "dudp", protocol: "UDP", port: 31000, targetPort: 31000, nodePort: 31000 },
];

export interface FixtureOptions {
  readonly nodePort: number;
  readonly clusterIp: number;
  /** Protocols of each scaled Service's ports (one port per protocol). Default TCP only. */
  readonly protocols?: readonly L4Protocol[];
  /** NodePort of scaled Service i is firstNodePort + i. Default 20000. */
  readonly firstNodePort?: number;
  /** targetPort of scaled Service i is firstTargetPort + i. Default 8000. */
  readonly firstTargetPort?: number;
}

function clusterIPs(i: number): ServiceSpec["clusterIPs"] {
  // Address 0 of each block is left out, 1 is the receiver's.
  return { ipv4: nthAddress(CLUSTER_IPS.ipv4, i + 2), ipv6: nthAddress(CLUSTER_IPS.ipv6, i + 2) };
}

export function fixtureServiceSet(options: FixtureOptions): ServiceSet {
  const protocols = options.protocols ?? ["TCP"];
  const firstNodePort = options.firstNodePort ?? 20000;
  const firstTargetPort = options.firstTargetPort ?? 8000;
  const scaled: ServiceSpec[] = [];
  for (let i = 0; i < options.nodePort + options.clusterIp; i++) {
    const isNodePort = i < options.nodePort;
    scaled.push({
      namespace: "scale",
      name: `svc-${i}`,
      type: isNodePort ? "NodePort" : "ClusterIP",
      clusterIPs: clusterIPs(i),
      ...(isNodePort ? { externalTrafficPolicy: "Local" as const } : {}),
      selector: { app: "ditg-receiver" },
      ports: protocols.map((protocol) => ({
        name: protocol.toLowerCase(),
        protocol,
        port: 80,
        targetPort: firstTargetPort + i,
        ...(isNodePort ? { nodePort: firstNodePort + i } : {}),
      })),
    });
  }
  return {
    scaled,
    receiver: {
      namespace: "ditg",
      name: "ditg-receiver",
      type: "NodePort",
      clusterIPs: { ipv4: nthAddress(CLUSTER_IPS.ipv4, 1), ipv6: nthAddress(CLUSTER_IPS.ipv6, 1) },
      externalTrafficPolicy: "Local",
      selector: { app: "ditg-receiver" },
      ports: RECEIVER_PORTS,
    },
    counts: { nodePort: options.nodePort, clusterIp: options.clusterIp },
  };
}
