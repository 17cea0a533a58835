// Planted mistakes: small edits of a recorded networking plan, and the part of a plan a check needs.
import type { NetworkingPlan, PlannedNetworkResource } from "../../infra/neutron/networking-plan.js";

/** The plan with one resource changed by `edit` (which gets a copy). */
export function editResource(plan: NetworkingPlan, name: string, edit: (r: PlannedNetworkResource) => PlannedNetworkResource): NetworkingPlan {
  if (!plan.resources.some((r) => r.name === name)) throw new Error(`the plan has no resource ${name}`);
  return { ...plan, resources: plan.resources.map((r) => (r.name === name ? edit(structuredClone(r)) : r)) };
}

/** The plan with `name` no longer waiting for `dependency`, as if the program had not declared it. */
export function withoutDependency(plan: NetworkingPlan, name: string, dependency: string): NetworkingPlan {
  return editResource(plan, name, (r) => {
    if (!r.dependsOn.includes(dependency)) throw new Error(`${name} does not wait for ${dependency}`);
    if (r.references.some((ref) => "resource" in ref && ref.resource === dependency)) throw new Error(`${name} reads a value of ${dependency}: that dependency cannot be dropped`);
    return { ...r, dependsOn: r.dependsOn.filter((d) => d !== dependency) };
  });
}

/** The named resources and everything they wait for, in the plan's order. */
export function onlyWhatNeeds(plan: NetworkingPlan, names: readonly string[]): NetworkingPlan {
  const byName = new Map(plan.resources.map((r) => [r.name, r]));
  const keep = new Set<string>();
  const add = (n: string) => {
    if (keep.has(n)) return;
    const r = byName.get(n);
    if (!r) throw new Error(`the plan has no resource ${n}`);
    keep.add(n);
    r.dependsOn.forEach(add);
  };
  names.forEach(add);
  return { ...plan, resources: plan.resources.filter((r) => keep.has(r.name)) };
}

export function resourceOfType(plan: NetworkingPlan, type: string, predicate: (r: PlannedNetworkResource) => boolean = () => true): PlannedNetworkResource {
  const found = plan.resources.filter((r) => r.type === type && predicate(r));
  if (found.length === 0) throw new Error(`the plan has no ${type} that matches`);
  return found[0]!;
}
