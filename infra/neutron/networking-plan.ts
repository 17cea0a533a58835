// The Neutron part of a plan: every openstack:networking/* resource of a stack with what it waits
// for and which of its input values it read from the cloud (another resource's id or address, a
// looked-up network's id), so that a replay against a real Neutron can follow Pulumi's order and put
// real values in their place.
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { runOffline, type PlannedResource } from "../offline-engine.js";
import { engineRecording, type EngineRecording, type RegisteredResource } from "./engine-recording.js";

export const NETWORKING_PREFIX = "openstack:networking/";
const INSTANCE_TYPE = "openstack:compute/instance:Instance";

export type InputPath = readonly (string | number)[];

/** An input value the program read from the cloud rather than wrote itself. */
export type Reference =
  | { readonly path: InputPath; readonly resource: string; readonly output: string }
  | { readonly path: InputPath; readonly lookup: number; readonly output: string };

export interface PlannedNetworkResource {
  readonly type: string;
  readonly name: string;
  readonly inputs: Record<string, unknown>;
  /** Networking resources it waits for, by name; waits on resources outside Neutron count as met. */
  readonly dependsOn: readonly string[];
  readonly references: readonly Reference[];
}

export interface NetworkLookup {
  readonly token: string;
  readonly args: Record<string, unknown>;
}

/** A server Nova would create on ports of the plan. */
export interface PlannedServer {
  readonly resource: string;
  readonly name: string;
  readonly availabilityZone?: string;
  /** Port resources it attaches, in NIC order. */
  readonly ports: readonly string[];
}

export interface NetworkingPlan {
  readonly stack: string;
  /** The --config flags it was planned with. */
  readonly config: readonly string[];
  /** In the order the program registered them. */
  readonly resources: readonly PlannedNetworkResource[];
  readonly lookups: readonly NetworkLookup[];
  /** OpenStack resources that are not Neutron's (servers, key pairs, flavors): not replayed. */
  readonly notReplayed: readonly { readonly type: string; readonly name: string }[];
  readonly servers: readonly PlannedServer[];
}

function leaves(value: unknown, at: InputPath, out: { path: InputPath; value: string }[]): void {
  if (typeof value === "string") out.push({ path: at, value });
  else if (Array.isArray(value)) value.forEach((v, i) => leaves(v, [...at, i], out));
  else if (value && typeof value === "object") for (const [k, v] of Object.entries(value)) leaves(v, [...at, k], out);
}

/** Outputs a cloud would compute (the id and what the mock added to the inputs), scalar strings only. */
function computedOutputs(r: RegisteredResource): Record<string, string> {
  const out: Record<string, string> = { id: r.id };
  const inputs = r.state;
  for (const [k, v] of Object.entries(inputs)) if (typeof v === "string" && k !== "urn") out[k] = v;
  return out;
}

/**
 * Builds the networking plan from a recorded offline run. Pure: `resources` carries the inputs as the
 * program wrote them, `recording` the dependencies and the mock's answers.
 */
export function networkingPlan(stack: string, config: readonly string[], resources: readonly PlannedResource[], recording: EngineRecording): NetworkingPlan {
  const byUrn = new Map(recording.resources.map((r) => [r.urn, r]));
  const inputsOf = new Map(resources.map((r) => [`${r.type}::${r.name}`, r.inputs]));
  const custom = recording.resources.filter((r) => r.custom);
  const names = new Set<string>();
  for (const r of custom) {
    if (names.has(r.name)) throw new Error(`two resources are named "${r.name}": the replay names resources by their Pulumi name`);
    names.add(r.name);
  }
  // A dependency on a component is a dependency on every custom resource under it.
  const underComponent = (urn: string): RegisteredResource[] =>
    custom.filter((r) => {
      for (let p = r.parentUrn; p; p = byUrn.get(p)?.parentUrn ?? "") if (p === urn) return true;
      return false;
    });
  const expand = (urns: readonly string[]): RegisteredResource[] =>
    urns.flatMap((u) => {
      const r = byUrn.get(u);
      if (!r) return [];
      return r.custom ? [r] : underComponent(u);
    });

  const networking = custom.filter((r) => r.type.startsWith(NETWORKING_PREFIX));
  const lookups = recording.invokes.filter((i) => i.token.startsWith(NETWORKING_PREFIX));
  const planned = networking.map((r): PlannedNetworkResource => {
    const inputs = inputsOf.get(`${r.type}::${r.name}`);
    if (!inputs) throw new Error(`no planned inputs for ${r.type} "${r.name}"`);
    const references: Reference[] = [];
    for (const [key, value] of Object.entries(inputs)) {
      const found: { path: InputPath; value: string }[] = [];
      leaves(value, [key], found);
      const sources = expand(r.propertyDependencies[key] ?? []);
      for (const leaf of found) {
        const matches: Reference[] = [];
        for (const d of sources) {
          for (const [output, v] of Object.entries(computedOutputs(d))) {
            if (v === leaf.value && !(output in (inputsOf.get(`${d.type}::${d.name}`) ?? {}))) matches.push({ path: leaf.path, resource: d.name, output });
          }
        }
        lookups.forEach((l, i) => {
          if (typeof l.result.id === "string" && l.result.id === leaf.value) matches.push({ path: leaf.path, lookup: i, output: "id" });
        });
        if (matches.length > 1) throw new Error(`${r.type} "${r.name}": input ${leaf.path.join(".")} "${leaf.value}" could come from ${matches.length} sources`);
        references.push(...matches);
      }
    }
    const dependsOn = [...new Set(expand(r.dependencies).filter((d) => d.type.startsWith(NETWORKING_PREFIX)).map((d) => d.name))];
    return { type: r.type, name: r.name, inputs, dependsOn, references };
  });

  const portIds = new Map(networking.filter((r) => r.type.endsWith("/port:Port")).map((r) => [r.id, r.name]));
  const servers = custom
    .filter((r) => r.type === INSTANCE_TYPE)
    .map((r): PlannedServer => {
      const inputs = inputsOf.get(`${r.type}::${r.name}`) ?? {};
      const networks = (inputs.networks as { port?: string }[] | undefined) ?? [];
      return {
        resource: r.name,
        name: typeof inputs.name === "string" ? inputs.name : r.name,
        ...(typeof inputs.availabilityZone === "string" ? { availabilityZone: inputs.availabilityZone } : {}),
        ports: networks.map((n) => portIds.get(n.port ?? "")).filter((p): p is string => p !== undefined),
      };
    });
  return {
    stack,
    config,
    resources: planned,
    lookups: lookups.map((l) => ({ token: l.token, args: l.args })),
    notReplayed: custom.filter((r) => r.type.startsWith("openstack:") && !r.type.startsWith(NETWORKING_PREFIX)).map((r) => ({ type: r.type, name: r.name })),
    servers,
  };
}

/** The Pulumi program with its engine calls recorded, for runOffline. */
export const RECORDED_PROGRAM = path.join(path.dirname(fileURLToPath(import.meta.url)), "recorded-program.ts");

/**
 * Runs the program offline in this process (Pulumi's runtime is per process: one plan per process)
 * with `config` (full keys to the strings Pulumi stores) and keeps its networking part.
 */
export async function recordNetworkingPlan(stack: string, config: Record<string, string>, secretKeys: readonly string[], flags: readonly string[]): Promise<NetworkingPlan> {
  const run = await runOffline({ stack, config, secretKeys, program: RECORDED_PROGRAM });
  return networkingPlan(stack, flags, run.resources, engineRecording());
}
