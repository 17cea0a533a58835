// The config of a rehearsal's stacks: the committed stack of the dataplane (Pulumi.yaml and
// Pulumi.<dataplane>.yaml, as `pulumi config` would merge them), with what a user sets before `up`
// (admin block, key pair) and what the rehearsal needs: the hosts log in as root, the cluster's pod
// and Service blocks come from the benchmarking ranges, and the sweep, runs and rates are those of
// the lab profile the rehearsal runs. Pure, apart from reading the committed stack files.
import { readFileSync } from "node:fs";
import { readStackConfig } from "../infra/offline-engine.js";
import { LAB_SERVICE_SUBNETS } from "../lab/lab-scenario.js";
import type { LabProfile } from "../lab/profiles.js";
import { CONFIG_NAMESPACE, parseScenario, scenarioSchema, type Dataplane, type PodRouting, type Scenario } from "../scenario/schema.js";
import { DEFAULT_PATHS, workersNeeded, type ServicePath } from "../scenario/paths.js";
import { readRawScenario } from "../infra/config.js";
import { POD_SUBNETS } from "./network.js";

/** A stack's config as `pulumi config --json` lists it: full keys, each value as Pulumi stores it (text). */
export type StackConfig = Record<string, { value: string; secret: boolean }>;

/** The stack of one dataplane in a rehearsal, as on the cloud each dataplane is a stack of its own. */
export function rehearsalStackName(dataplane: Dataplane): string {
  return `rehearse-${dataplane}`;
}

export interface StackConfigInputs {
  readonly dataplane: Dataplane;
  readonly profile: LabProfile;
  /** The operator's address: the only block the bastion admits (testbed:adminCidr). */
  readonly operatorAddress: string;
  readonly sshPublicKey: string;
  readonly sshPrivateKey: string;
  /** The Service count the stack is deployed with before the campaign (default: the sweep's first). */
  readonly services?: number;
  /** The sweep's Service counts (default: the profile's). */
  readonly sweepServices?: readonly number[];
  /** The directory with Pulumi.yaml and the committed stack files. */
  readonly projectDir: string;
  /** The Service paths the stack serves (testbed:paths); default the paper's alone, the committed stack as it is. */
  readonly paths?: readonly ServicePath[];
  /** How pod traffic crosses between the workers on those paths (testbed:podRouting); default native. */
  readonly podRouting?: PodRouting;
}

/**
 * Pure: what the stack config sets for the paths beyond the paper's: testbed:paths, the workers they
 * need, and how pod traffic crosses between them (testbed:podRouting: native by default, each
 * worker's pod block routed to it; tunnel, a VXLAN device as Cilium's: rehearsal/network.ts builds
 * either). Nothing for the paper's path alone.
 */
export function pathOverrides(paths: readonly ServicePath[] = DEFAULT_PATHS, routing: PodRouting = "native"): Record<string, unknown> {
  if (paths.every((p) => DEFAULT_PATHS.includes(p))) return {};
  return { paths: [...paths], workers: Math.max(...paths.map(workersNeeded)), podRouting: routing };
}

const key = (k: string) => `${CONFIG_NAMESPACE}:${k}`;

/** Objects merged key by key, as `pulumi config set --path` sets leaves; anything else replaced. */
function merge(base: unknown, over: unknown): unknown {
  if (base && over && typeof base === "object" && typeof over === "object" && !Array.isArray(base) && !Array.isArray(over)) {
    const out: Record<string, unknown> = { ...(base as Record<string, unknown>) };
    for (const [k, v] of Object.entries(over as Record<string, unknown>)) out[k] = merge(out[k], v);
    return out;
  }
  return over;
}

/** The config of stack rehearse-<dataplane>. */
export function rehearsalStackConfig(i: StackConfigInputs): StackConfig {
  const committed = readStackConfig(i.projectDir, i.dataplane, (p) => readFileSync(p, "utf8")).values;
  const sweep = scenarioSchema.shape.sweep.parse(undefined);
  const traffic = scenarioSchema.shape.traffic.parse(undefined);
  const sweepServices = [...(i.sweepServices ?? i.profile.services)];
  const rates = i.profile.reducedRates;
  const overrides: Record<string, unknown> = {
    adminCidr: `${i.operatorAddress}/32`,
    sshPublicKey: i.sshPublicKey.trim(),
    services: i.services ?? sweepServices[0],
    families: ["ipv4", "ipv6"],
    linkMbps: rates?.linkMbps ?? scenarioSchema.shape.linkMbps.parse(undefined),
    sweep: { ...sweep, services: sweepServices, runs: i.profile.runs, flowSeconds: i.profile.flowSeconds },
    traffic: {
      ...traffic,
      ...(rates ? { latency: { ...traffic.latency, packetsPerSecond: rates.latencyPacketsPerSecond } } : {}),
      setup: { ...traffic.setup, connectionsPerSecond: i.profile.setupConnectionsPerSecond },
    },
    // The rehearsal's hosts have no `ubuntu` user; root logs in, and sudo works for it as the scripts use it.
    openstack: { sshUser: "root" },
    kubernetes: { podSubnets: POD_SUBNETS, serviceSubnets: LAB_SERVICE_SUBNETS },
    ...pathOverrides(i.paths, i.podRouting),
  };
  const config: StackConfig = {};
  for (const [k, value] of Object.entries(committed)) config[k] = { value, secret: false };
  for (const [name, value] of Object.entries(overrides)) {
    const current = config[key(name)]?.value;
    let base: unknown = undefined;
    if (current !== undefined) {
      try {
        base = JSON.parse(current);
      } catch {
        base = current;
      }
    }
    const merged = merge(base, value);
    config[key(name)] = { value: typeof merged === "string" ? merged : JSON.stringify(merged), secret: false };
  }
  config[key("sshPrivateKey")] = { value: i.sshPrivateKey, secret: true };
  // Refused here, with the schema's own message, rather than at the first `up`.
  stackScenarioOf(config);
  return config;
}

/** The scenario a stack config describes, as the Pulumi program reads it. */
export function stackScenarioOf(config: StackConfig): Scenario {
  return parseScenario(readRawScenario((k) => config[key(k)]?.value));
}
