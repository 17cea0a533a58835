// How long a step takes to become measurable at N Services, modelled from the rates that bound it,
// so that the apply step's timeouts follow from the Service count instead of a guess, and so that
// the tests can show what the controller-manager's default client rate would cost.
//
// After `kubectl apply`, a step is ready when every scaled Service has a ready endpoint in every
// family (EndpointSlices written by kube-controller-manager) and the worker's dataplane has
// programmed them. Each controller of kube-controller-manager has its own client, limited to
// --kube-api-qps; the EndpointSlice controller writes one slice per Service and family, the
// Endpoints controller one object per Service, in parallel, so the slices bound the wait.
import type { Scenario } from "../../scenario/schema.js";
import { CONTROLLER_MANAGER_API_QPS } from "./kubeadm.js";

/** kube-controller-manager's default --kube-api-qps. */
export const DEFAULT_CONTROLLER_MANAGER_QPS = 20;
/** Requests per second kubectl's server-side apply sustains against one API server (its client rate). */
export const KUBECTL_APPLY_RATE = 50;
/**
 * One full sync of kube-proxy's rules at 10000 Services, with room: iptables-restore of 66634 nat
 * rules takes 1.8 s per family in the lab (README, bench/lab-install.ts) on a faster host than the
 * paper's 1500 MHz vCPUs.
 */
export const DATAPLANE_SYNC_S_PER_10000 = 30;

export interface ReadinessEstimate {
  /** Seconds for kubectl to apply the Services. */
  readonly applyS: number;
  /** Seconds for the EndpointSlice controller to write every slice at the given rate. */
  readonly endpointSlicesS: number;
  /** Seconds for the dataplane to program them once their endpoints exist. */
  readonly programS: number;
  readonly totalS: number;
}

export function readinessEstimate(s: Pick<Scenario, "families">, services: number, controllerManagerQps = CONTROLLER_MANAGER_API_QPS): ReadinessEstimate {
  const applyS = services / KUBECTL_APPLY_RATE;
  const endpointSlicesS = (services * s.families.length) / controllerManagerQps;
  const programS = (DATAPLANE_SYNC_S_PER_10000 * Math.max(services, 1)) / 10000;
  return { applyS, endpointSlicesS, programS, totalS: applyS + endpointSlicesS + programS };
}

/**
 * How long the apply script waits for endpoints and for the dataplane before it gives up: three
 * times the estimate, and never less than ten minutes (image pulls, a node under load).
 */
export function readinessWaitS(s: Pick<Scenario, "families">, services: number): number {
  return Math.max(600, Math.ceil(3 * readinessEstimate(s, services).totalS));
}
