// The lab's scenario and the Service set its worker serves: what every lab dataplane installs for a
// step, whatever it is. Pure functions.
import type { Family } from "../scenario/cidr.js";
import { DEFAULT_PATH, PATHS, workersNeeded, type ServicePath } from "../scenario/paths.js";
import { parseScenario, PLACEHOLDERS, scenarioPaths, type Scenario } from "../scenario/schema.js";
import { pathReceiverService } from "../workloads/service-set.js";
import type { ServiceSet } from "../workloads/service-model.js";
import type { ServiceEndpoints } from "./dataplanes/kube-proxy-inputs.js";
import type { LabTopology } from "./topology.js";

export const LAB_FAMILIES: readonly Family[] = ["ipv4", "ipv6"];

/** ClusterIPs of the lab's Services: benchmarking addresses, never routed anywhere. */
export const LAB_SERVICE_SUBNETS = { ipv4: "198.19.128.0/17", ipv6: "2001:2:0:ff::/112" } as const;

/**
 * The scenario of the lab: the schema's defaults (receiver ports, NodePort range, traffic, seed),
 * the lab's own networks, and ClusterIPs from the benchmarking ranges. The cloud keys (admin CIDR,
 * SSH key) do not apply and hold the documented placeholders.
 */
export function labScenario(topology: Pick<LabTopology, "plan">, paths?: readonly ServicePath[]): Scenario {
  const { links } = topology.plan;
  // Paths beyond the paper's: the scenario lists them (their receivers' NodePorts and ClusterIPs) and the workers they need.
  const beyond = paths !== undefined && paths.some((p) => p !== DEFAULT_PATH);
  return parseScenario({
    ...(beyond ? { paths: [...paths], workers: Math.max(...paths.map(workersNeeded)) } : {}),
    // Every dataplane runs in the lab, step by step; the key only has to be valid.
    dataplane: "iptables",
    ...PLACEHOLDERS,
    network: {
      client: { ipv4: links.access.subnets.ipv4.text, ipv6: links.access.subnets.ipv6.text },
      datacenter: { ipv4: links.datacenter.subnets.ipv4.text, ipv6: links.datacenter.subnets.ipv6.text },
    },
    kubernetes: {
      podSubnets: { ipv4: links.pod.subnets.ipv4.text, ipv6: links.pod.subnets.ipv6.text },
      serviceSubnets: LAB_SERVICE_SUBNETS,
    },
  });
}

/**
 * Pure: every Service of the set with its one endpoint, the receiver pod, on this node, in the order
 * kube-proxy writes them. kube-proxy walks a Go map, so the receiver's rules land at a random place
 * among the NodePort Services' on every sync; here they sit in the middle, where they land on average:
 * a new connection to the receiver walks every ClusterIP rule of KUBE-SERVICES, then half of
 * KUBE-NODEPORTS.
 */
export function serviceEndpoints(set: ServiceSet, pod: Readonly<Record<Family, string>>): ServiceEndpoints[] {
  return paperServiceEndpoints(set, pod);
}

/**
 * Pure: the receiver Services of the scenario's paths beyond the paper's (workloads/service-set.ts
 * pathReceiverService), each with its one endpoint, the receiver pod of the path's endpoint worker:
 * on another node than worker 1, whose dataplane serves them.
 */
export function pathServiceEndpoints(scenario: Scenario, plan: Pick<LabTopology["plan"], "workers">): ServiceEndpoints[] {
  return scenarioPaths(scenario)
    .filter((p) => p !== DEFAULT_PATH)
    .map((path) => {
      const worker = plan.workers?.find((w) => w.index === PATHS[path].endpointWorker);
      if (!worker) throw new Error(`path ${path}: its endpoint runs on worker ${PATHS[path].endpointWorker}, which this lab has not built`);
      return { service: pathReceiverService(scenario, path), endpoints: LAB_FAMILIES.map((family) => ({ ip: worker.pod[family], local: worker.index === 1 })) };
    });
}

function paperServiceEndpoints(set: ServiceSet, pod: Readonly<Record<Family, string>>): ServiceEndpoints[] {
  const endpoints = LAB_FAMILIES.map((family) => ({ ip: pod[family], local: true }));
  const middle = Math.floor(set.counts.nodePort / 2);
  const ordered = [...set.scaled.slice(0, middle), set.receiver, ...set.scaled.slice(middle)];
  return ordered.map((service) => ({ service, endpoints }));
}
