// What a real `pulumi up` runs when a stack goes from one plan to the next, derived from the two
// offline plans: which resources it creates, updates, replaces or deletes, and in what order their
// scripts run. Mocks accept any program; this model knows what the engine and the providers would do
// with a change, which is where a lab that works on its first `up` breaks on its second.
//
// The rules (sources: pulumi-command 1.2 `provider/pkg/provider/common/inputs.go` and
// `remote/commandController.go`; the Pulumi docs on `ignoreChanges`, `deleteBeforeReplace`,
// `deletedWith` and `replaceOnChanges`; terraform-provider-openstack's ForceNew attributes):
// - An input listed in ignoreChanges keeps its old value, so it changes nothing.
// - A changed input that the provider marks replace-on-change (a Command's `triggers`, an OpenStack
//   attribute that cannot be updated, a `replaceOnChanges` option) replaces the resource; any other
//   change updates it. A Command's update runs its `update` script, or `create` again when it has none.
// - A replacement creates the new resource in place and deletes the old one at the end of the
//   deployment (create-before-delete); with deleteBeforeReplace it deletes the old one first.
// - A replaced resource has new outputs (id, stdout): every input of another resource that came from
//   it changes too, which is how a replacement spreads to the resources after it.
// - A delete is skipped when the resource named by deletedWith is deleted in the same deployment.
// - Resources that leave the program are deleted at the end, in reverse order of registration.
import type { PlannedResource } from "./offline-engine.js";

export type OperationKind = "same" | "create" | "update" | "replace" | "delete";

export interface Operation {
  readonly id: string;
  readonly kind: OperationKind;
  /** Top-level inputs that differ (after ignoreChanges), or that came from a replaced resource. */
  readonly changed: readonly string[];
  /** For a replacement: the old resource goes first. */
  readonly deleteBeforeReplace?: boolean;
  /** For a replacement: the inputs that forced it. */
  readonly replacedBy?: readonly string[];
}

/** One provider call a deployment makes, in the order it makes them. */
export interface Step {
  readonly action: "create" | "update" | "delete";
  readonly id: string;
  /** The resource as the step sees it: the new one for create and update, the old one for delete. */
  readonly resource: PlannedResource;
  /** Why: "new", "changed: create", "replaced: triggers", "removed". */
  readonly reason: string;
}

export interface Deployment {
  readonly operations: readonly Operation[];
  readonly steps: readonly Step[];
}

/** How a plan keys a resource. */
export const resourceKey = (r: Pick<PlannedResource, "type" | "name">) => `${r.type}::${r.name}`;

const ALL = "*";

/**
 * Per resource type, the inputs whose change replaces it (ALL: every input but those in UPDATABLE).
 * Command and CopyToRemote: only `triggers` (pulumi-command marks it replaceOnChanges). OpenStack:
 * the Terraform provider's ForceNew attributes; a type missing here is treated as all-ForceNew.
 */
const REPLACE_ON: Readonly<Record<string, readonly string[]>> = {
  "command:remote:Command": ["triggers"],
  "command:local:Command": ["triggers"],
  "command:remote:CopyToRemote": ["triggers"],
  "pulumi:providers:kubernetes": [],
};

/** OpenStack inputs that update in place; every other input of these types forces a new resource. */
const UPDATABLE: Readonly<Record<string, readonly string[]>> = {
  "openstack:compute/instance:Instance": ["name", "flavorName", "flavorId", "metadata", "securityGroups", "tags", "powerState", "stopBeforeDestroy"],
  "openstack:networking/port:Port": ["name", "description", "adminStateUp", "fixedIps", "securityGroupIds", "noSecurityGroups", "allowedAddressPairs", "qosPolicyId", "portSecurityEnabled", "tags", "noFixedIp"],
  "openstack:networking/subnet:Subnet": ["name", "description", "allocationPools", "gatewayIp", "noGateway", "enableDhcp", "dnsNameservers", "hostRoutes", "tags"],
  "openstack:networking/network:Network": ["name", "description", "adminStateUp", "tags", "portSecurityEnabled", "qosPolicyId"],
  "openstack:networking/router:Router": ["name", "description", "adminStateUp", "externalNetworkId", "tags"],
  "openstack:networking/secGroup:SecGroup": ["name", "description", "tags"],
  "openstack:networking/floatingIp:FloatingIp": ["description", "portId", "fixedIp", "tags"],
  "openstack:networking/qosPolicy:QosPolicy": ["name", "description", "shared", "isDefault", "tags"],
  "openstack:networking/qosBandwidthLimitRule:QosBandwidthLimitRule": ["maxKbps", "maxBurstKbps"],
};

/** Whether a change of this input replaces a resource of this type. */
export function replacesOnChange(type: string, input: string, options?: Pick<PlannedResource, "options">["options"]): boolean {
  if (options?.replaceOnChanges.includes(input) || options?.replaceOnChanges.includes(ALL)) return true;
  const replace = REPLACE_ON[type];
  if (replace) return replace.includes(input);
  const updatable = UPDATABLE[type];
  return updatable === undefined || !updatable.includes(input);
}

/** Components hold no provider state: the engine runs nothing for them. */
function isCustom(r: PlannedResource): boolean {
  return !r.type.startsWith("testbed:") && r.type !== "pulumi:pulumi:Stack";
}

function changedInputs(before: PlannedResource, after: PlannedResource): string[] {
  const ignored = new Set(after.options?.ignoreChanges ?? []);
  const keys = new Set([...Object.keys(before.inputs), ...Object.keys(after.inputs)]);
  return [...keys].filter((k) => !ignored.has(k) && JSON.stringify(before.inputs[k]) !== JSON.stringify(after.inputs[k])).sort();
}

/** The deployment that takes a stack whose state is `before` to the program that plans `after`. */
export function deployment(before: readonly PlannedResource[], after: readonly PlannedResource[]): Deployment {
  const old = new Map(before.filter(isCustom).map((r) => [resourceKey(r), r]));
  const next = after.filter(isCustom);
  const nextIds = new Set(next.map(resourceKey));
  const operations: Operation[] = [];
  const replaced = new Set<string>();

  for (const r of next) {
    const id = resourceKey(r);
    const prior = old.get(id);
    if (!prior) {
      operations.push({ id, kind: "create", changed: [] });
      continue;
    }
    const ignored = new Set(r.options?.ignoreChanges ?? []);
    const fromReplaced = Object.entries(r.options?.propertyDependencies ?? {})
      .filter(([prop, deps]) => !ignored.has(prop) && deps.some((d) => replaced.has(d)))
      .map(([prop]) => prop);
    const changed = [...new Set([...changedInputs(prior, r), ...fromReplaced])].sort();
    if (changed.length === 0) {
      operations.push({ id, kind: "same", changed });
      continue;
    }
    const replacedBy = changed.filter((k) => replacesOnChange(r.type, k, r.options));
    if (replacedBy.length > 0) {
      replaced.add(id);
      operations.push({ id, kind: "replace", changed, replacedBy, deleteBeforeReplace: r.options?.deleteBeforeReplace ?? false });
    } else {
      operations.push({ id, kind: "update", changed });
    }
  }
  const removed = before.filter(isCustom).filter((r) => !nextIds.has(resourceKey(r)));
  for (const r of removed) operations.push({ id: resourceKey(r), kind: "delete", changed: [] });

  // Deletes that happen in this deployment: replaced and removed resources. A delete whose
  // deletedWith resource goes too is skipped (the resource goes with it).
  const going = new Set([...replaced, ...removed.map(resourceKey)]);
  const deleteStep = (r: PlannedResource, reason: string): Step[] =>
    r.options?.deletedWith && going.has(r.options.deletedWith) ? [] : [{ action: "delete", id: resourceKey(r), resource: r, reason }];

  const steps: Step[] = [];
  const deferredDeletes: PlannedResource[] = [];
  const byId = new Map(operations.map((o) => [o.id, o]));
  const deletedEarly = new Set<string>();
  for (const r of next) {
    const id = resourceKey(r);
    const op = byId.get(id)!;
    if (op.kind === "create") steps.push({ action: "create", id, resource: r, reason: "new" });
    else if (op.kind === "update") steps.push({ action: "update", id, resource: r, reason: `changed: ${op.changed.join(", ")}` });
    else if (op.kind === "replace") {
      const prior = old.get(id)!;
      if (op.deleteBeforeReplace) {
        // Replaced resources that depend on this one go before it (the engine deletes dependents first).
        const dependents = [...replaced].filter((d) => d !== id && !deletedEarly.has(d) && dependsOn(old, d, id));
        for (const d of dependents.reverse()) {
          deletedEarly.add(d);
          steps.push(...deleteStep(old.get(d)!, `replaced after ${id}`));
        }
        if (!deletedEarly.has(id)) steps.push(...deleteStep(prior, `replaced: ${op.replacedBy!.join(", ")} (delete first)`));
        deletedEarly.add(id);
      } else {
        deferredDeletes.push(prior);
      }
      steps.push({ action: "create", id, resource: r, reason: `replaced: ${op.replacedBy!.join(", ")}` });
    }
  }
  // Create-before-delete replacements and removed resources: old ones go last, newest first.
  const order = new Map(before.map((r, i) => [resourceKey(r), i]));
  const tail = [...deferredDeletes.filter((r) => !deletedEarly.has(resourceKey(r))).map((r) => ({ r, reason: "replaced (old one)" })), ...removed.map((r) => ({ r, reason: "removed" }))];
  tail.sort((a, b) => order.get(resourceKey(b.r))! - order.get(resourceKey(a.r))!);
  for (const { r, reason } of tail) steps.push(...deleteStep(r, reason));
  return { operations, steps };
}

/** Whether `from` depends on `to`, directly or through other resources of the old plan. */
function dependsOn(plan: ReadonlyMap<string, PlannedResource>, from: string, to: string): boolean {
  const seen = new Set<string>();
  const stack = [...(plan.get(from)?.options?.dependencies ?? [])];
  while (stack.length > 0) {
    const id = stack.pop()!;
    if (id === to) return true;
    if (seen.has(id)) continue;
    seen.add(id);
    stack.push(...(plan.get(id)?.options?.dependencies ?? []));
  }
  return false;
}

/** `pulumi preview`'s mark for an operation: ~ update, +- replace, -+ delete-before-replace. */
export function previewMark(op: Operation): string {
  switch (op.kind) {
    case "create":
      return "+";
    case "delete":
      return "-";
    case "update":
      return "~";
    case "replace":
      return op.deleteBeforeReplace ? "-+" : "+-";
    default:
      return " ";
  }
}
