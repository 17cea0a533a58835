// The Services a run of the programming profile changes at one step of the sweep, as plain data for
// every backend: the step's last NodePort Service, deleted and created again and probed through its
// NodePort (the only Services a client outside the cluster reaches), and the Services the sweep
// would create next, created with it for add-100.
import type { Scenario } from "../scenario/schema.js";
import type { ServiceSet, ServiceSpec } from "./service-model.js";
import { buildServiceSet } from "./service-set.js";

export interface ProgrammingServices {
  /** The Service deleted and created again, probed through its NodePort. */
  readonly probed: ServiceSpec;
  /** Created together with it by add-100: the sweep's next Services (NodePort while the range lasts, ClusterIP after). */
  readonly more: readonly ServiceSpec[];
}

/** Throws, naming what is accepted, when the step has no NodePort Service to probe or addMany is not a positive integer. */
export function programmingServices(
  scenario: Pick<Scenario, "kubernetes" | "families" | "receiver" | "sweep" | "workloads" | "services">,
  set: ServiceSet,
  addMany: number,
): ProgrammingServices {
  if (!Number.isInteger(addMany) || addMany < 1) throw new Error(`addMany: ${addMany} is not accepted; accepted: a whole number of Services, at least 1`);
  const { nodePort } = set.counts;
  const services = set.scaled.length;
  if (nodePort === 0) throw new Error(`the programming profile needs a NodePort Service to probe; ${services} Services hold none; accepted: at least 1 Service`);
  return { probed: set.scaled[nodePort - 1]!, more: buildServiceSet(scenario, services + addMany - 1).scaled.slice(services) };
}
