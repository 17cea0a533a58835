// The Neutron part of a plan: every openstack:networking/* resource of a stack with what it waits
// for and which of its input values it read from the cloud (another resource's id or address, a
// looked-up external network's id), so that a replay against a real Neutron can follow Pulumi's
// order and put real values in their place.
import type { PlannedResource } from "../offline-engine.js";
import { mappingOf } from "./field-map.js";

export const NETWORKING_PREFIX = "openstack:networking/";
const INSTANCE_TYPE = "openstack:compute/instance:Instance";

/** The offline engine's stand-ins for what the cloud computes: ids, and getNetwork's answer by name. */
const mockId = (name: string) => `${name}-id`;
const LOOKED_UP_NETWORK = /^(.+)-network-id$/;

export type InputPath = readonly (string | number)[];

/** An input value the program read from the cloud rather than wrote itself. */
export type Reference =
  /** An output (id, address) of another planned resource. */
  | { readonly path: InputPath; readonly resource: string; readonly output: string }
  /** The id of an existing external network the program looked up by name. */
  | { readonly path: InputPath; readonly externalNetwork: string };

export interface PlannedNetworkResource {
  readonly type: string;
  readonly name: string;
  readonly inputs: Record<string, unknown>;
  /** Networking resources it waits for, by name; waits on resources outside Neutron count as met. */
  readonly dependsOn: readonly string[];
  readonly references: readonly Reference[];
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
  /** OpenStack resources that are not Neutron's (servers, key pairs, flavors): not replayed. */
  readonly notReplayed: readonly { readonly type: string; readonly name: string }[];
  readonly servers: readonly PlannedServer[];
}

function leaves(value: unknown, at: InputPath, out: { path: InputPath; value: string }[]): void {
  if (typeof value === "string") out.push({ path: at, value });
  else if (Array.isArray(value)) value.forEach((v, i) => leaves(v, [...at, i], out));
  else if (value && typeof value === "object") for (const [k, v] of Object.entries(value)) leaves(v, [...at, k], out);
}

const idOf = (r: Pick<PlannedResource, "type" | "name">) => `${r.type}::${r.name}`;

/**
 * Builds the networking plan from an offline run's resources and the registration options the
 * engine recorded (dependencies, per-input dependencies, parents). Pure.
 */
export function networkingPlan(stack: string, config: readonly string[], resources: readonly PlannedResource[]): NetworkingPlan {
  const byId = new Map(resources.map((r) => [idOf(r), r]));
  for (const r of resources) {
    if (!r.options) throw new Error(`${r.type} "${r.name}" has no recorded registration: the replay needs the offline engine's records`);
  }
  const names = new Map<string, string>();
  for (const r of resources.filter((x) => x.type.startsWith("openstack:"))) {
    const other = names.get(r.name);
    if (other) throw new Error(`two OpenStack resources are named "${r.name}" (${other}, ${r.type}): the replay names resources by their Pulumi name`);
    names.set(r.name, r.type);
  }
  // A dependency on a component is a dependency on everything under it.
  const under = (id: string): PlannedResource[] =>
    resources.filter((r) => {
      for (let p = r.options!.parent; p; p = byId.get(p)?.options?.parent ?? "") if (p === id) return true;
      return false;
    });
  const expand = (ids: readonly string[]): PlannedResource[] =>
    ids.flatMap((id) => {
      const r = byId.get(id);
      return r ? [r, ...under(id)] : [];
    });

  const networking = resources.filter((r) => r.type.startsWith(NETWORKING_PREFIX));
  const planned = networking.map((r): PlannedNetworkResource => {
    const mapping = mappingOf(r.type);
    const references: Reference[] = [];
    for (const [arg, value] of Object.entries(r.inputs)) {
      const sources = expand(r.options!.propertyDependencies[arg] ?? []).filter((s) => s.type.startsWith(NETWORKING_PREFIX));
      const rule = mapping?.fields[arg];
      const found: { path: InputPath; value: string }[] = [];
      leaves(value, [arg], found);
      for (const leaf of found) {
        const byIdValue = sources.find((s) => mockId(s.name) === leaf.value);
        if (byIdValue) {
          references.push({ path: leaf.path, resource: byIdValue.name, output: "id" });
        } else if (rule?.output && sources.length === 1) {
          references.push({ path: leaf.path, resource: sources[0]!.name, output: rule.output });
        } else if (rule?.externalNetwork === "looked-up id" && sources.length === 0) {
          const name = LOOKED_UP_NETWORK.exec(leaf.value)?.[1];
          if (name) references.push({ path: leaf.path, externalNetwork: name });
        }
      }
    }
    const dependsOn = [...new Set(expand(r.options!.dependencies).filter((d) => d.type.startsWith(NETWORKING_PREFIX)).map((d) => d.name))];
    return { type: r.type, name: r.name, inputs: r.inputs, dependsOn, references };
  });

  const portByMockId = new Map(networking.filter((r) => r.type.endsWith("/port:Port")).map((r) => [mockId(r.name), r.name]));
  const servers = resources
    .filter((r) => r.type === INSTANCE_TYPE)
    .map((r): PlannedServer => {
      const networks = (r.inputs.networks as { port?: string }[] | undefined) ?? [];
      return {
        resource: r.name,
        name: typeof r.inputs.name === "string" ? r.inputs.name : r.name,
        ...(typeof r.inputs.availabilityZone === "string" ? { availabilityZone: r.inputs.availabilityZone } : {}),
        ports: networks.map((n) => portByMockId.get(n.port ?? "")).filter((p): p is string => p !== undefined),
      };
    });
  return {
    stack,
    config,
    resources: planned,
    notReplayed: resources.filter((r) => r.type.startsWith("openstack:") && !r.type.startsWith(NETWORKING_PREFIX)).map((r) => ({ type: r.type, name: r.name })),
    servers,
  };
}
