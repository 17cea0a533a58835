// The testbed's Service set of N scaled Services (testScenario's defaults) with kube-proxy's view of
// their endpoints: every scaled Service on one backend pod, the receiver's Service on the receiver
// pod, both pods on this node, dual-stack.
import type { ServiceEndpoints } from "../../lab/dataplanes/kube-proxy-inputs.js";
import { buildServiceSet } from "../../workloads/service-set.js";
import { testScenario } from "../fixtures/scenario.js";

const scenario = testScenario();
const BACKEND = [{ ip: "10.244.1.10", local: true }, { ip: "fd00:10:244:1::10", local: true }];
const RECEIVER = [{ ip: "10.244.1.11", local: true }, { ip: "fd00:10:244:1::11", local: true }];

export function servicesWithBackend(n: number): ServiceEndpoints[] {
  const set = buildServiceSet(scenario, n);
  return [...set.scaled.map((service) => ({ service, endpoints: BACKEND })), { service: set.receiver, endpoints: RECEIVER }];
}
