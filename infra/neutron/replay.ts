// Replays the networking part of a plan through a real Neutron API as one identity, the way a
// `pulumi up` would send it, then reads every created resource back and compares it with the plan.
import { NeutronApi, NeutronRefusal, freshIdentity, query, type Identity, type Role } from "./api.js";
import { apiFields, mappingOf, networkNameArguments, readBackMismatches, type ApiFields, type FieldMismatch, type ResourceMapping } from "./field-map.js";
import type { InputPath, NetworkingPlan, PlannedNetworkResource } from "./networking-plan.js";

export type StepOutcome =
  | { readonly kind: "accepted"; readonly id: string }
  | { readonly kind: "refused"; readonly status: number; readonly type: string; readonly message: string }
  /** Not sent: a resource it waits for was not created. */
  | { readonly kind: "skipped"; readonly waitsFor: string };

export interface ReplayStep {
  readonly name: string;
  readonly type: string;
  readonly outcome: StepOutcome;
}

export interface ResourceMismatch extends FieldMismatch {
  readonly resource: string;
}

/** What Nova sets on a port when it boots the server the plan attaches there. */
export interface NovaPortNote {
  readonly port: string;
  readonly server: string;
  readonly sets: Readonly<Record<string, string>>;
}

export interface ReplayReport {
  readonly stack: string;
  readonly identity: Identity;
  readonly steps: readonly ReplayStep[];
  /** Created resources that read back differently from the plan. */
  readonly mismatches: readonly ResourceMismatch[];
  readonly readBack: number;
  readonly nova: readonly NovaPortNote[];
  readonly notReplayed: NetworkingPlan["notReplayed"];
}

export const replayPassed = (r: ReplayReport): boolean => r.mismatches.length === 0 && r.steps.every((s) => s.outcome.kind === "accepted");

/**
 * A valid Pulumi order (every resource after everything it waits for) that creates each resource
 * just before the first resource that needs it, taking the resources nothing needs from the last
 * the program registered to the first. The engine runs independent resources in any order, so this order puts
 * each one as late as its dependents allow: a dependency the program forgot to declare shows up as
 * Neutron's refusal instead of being hidden by the order in which the program registers things.
 */
export function replayOrder(resources: readonly PlannedNetworkResource[]): PlannedNetworkResource[] {
  const byName = new Map(resources.map((r) => [r.name, r]));
  const needed = new Set(resources.flatMap((r) => r.dependsOn));
  const order: PlannedNetworkResource[] = [];
  const state = new Map<string, "visiting" | "done">();
  const visit = (r: PlannedNetworkResource, path: string[]) => {
    const s = state.get(r.name);
    if (s === "done") return;
    if (s === "visiting") throw new Error(`dependency cycle: ${[...path, r.name].join(" -> ")}`);
    state.set(r.name, "visiting");
    for (const dep of [...r.dependsOn].reverse()) {
      const d = byName.get(dep);
      if (d) visit(d, [...path, r.name]);
    }
    state.set(r.name, "done");
    order.push(r);
  };
  const sinks = resources.filter((r) => !needed.has(r.name));
  for (const r of [...sinks].reverse()) visit(r, []);
  for (const r of resources) visit(r, []); // cycles leave no sink; visit reports them
  return order;
}

function setAt(target: unknown, path: InputPath, value: unknown): void {
  let at = target as Record<string | number, unknown>;
  for (const k of path.slice(0, -1)) at = at[k] as Record<string | number, unknown>;
  at[path[path.length - 1]!] = value;
}

/** Real values of what a created resource exposes to others: its id and its mapped outputs. */
type CreatedOutputs = Readonly<Record<string, string>>;

/** The inputs with every reference replaced by the value the real cloud gave. */
export function resolveInputs(
  resource: PlannedNetworkResource,
  created: ReadonlyMap<string, CreatedOutputs>,
  externalNetworks: ReadonlyMap<string, string>,
): Record<string, unknown> {
  const inputs = structuredClone(resource.inputs);
  for (const ref of resource.references) {
    const value = "resource" in ref ? created.get(ref.resource)?.[ref.output] : externalNetworks.get(ref.externalNetwork);
    const wanted = "resource" in ref ? `${ref.output} of resource ${ref.resource}` : `the id of external network ${ref.externalNetwork}`;
    if (value === undefined) throw new Error(`${resource.name}: ${ref.path.join(".")} needs ${wanted}, which the replay does not have`);
    setAt(inputs, ref.path, value);
  }
  for (const arg of networkNameArguments(resource.type)) {
    const name = inputs[arg];
    if (typeof name !== "string") continue;
    const id = externalNetworks.get(name);
    if (id === undefined) throw new Error(`${resource.name}: ${arg} needs the id of external network ${name}, which the replay does not have`);
    inputs[arg] = id;
  }
  return inputs;
}

/** The operator's part: the external networks the plan looks up or takes addresses from, as a cloud has them. */
export function externalNetworkNames(plan: Pick<NetworkingPlan, "resources">): string[] {
  const names = new Set<string>();
  for (const r of plan.resources) {
    for (const ref of r.references) if ("externalNetwork" in ref) names.add(ref.externalNetwork);
    for (const arg of networkNameArguments(r.type)) if (typeof r.inputs[arg] === "string") names.add(r.inputs[arg]);
  }
  return [...names].sort();
}

/** A documentation range (RFC 5737): nothing is routed, no agent runs. */
export const EXTERNAL_SUBNET = { cidr: "203.0.113.0/24", gateway_ip: "203.0.113.1" } as const;

/** Creates, as admin, each external network that does not exist yet (with a subnet for addresses). */
export async function ensureExternalNetworks(operator: NeutronApi, names: readonly string[]): Promise<void> {
  for (const name of names) {
    const found = (await operator.get(`networks?${query({ name, "router:external": true })}`)).networks as unknown[];
    if (found.length > 0) continue;
    const network = (
      await operator.post("networks", {
        network: { name, "router:external": true, "provider:network_type": "flat", "provider:physical_network": "physnet-ext" },
      })
    ).network as { id: string };
    await operator.post("subnets", { subnet: { network_id: network.id, ip_version: 4, enable_dhcp: false, name: `${name}-v4`, ...EXTERNAL_SUBNET } });
  }
}

/** An external network's id as the project sees it: the provider's getNetwork and pool lookups by name. */
async function externalNetworkId(api: NeutronApi, name: string): Promise<string> {
  const found = (await api.get(`networks?${query({ name, "router:external": true })}`)).networks as { id: string }[];
  if (found.length !== 1) throw new Error(`external network "${name}": ${found.length} networks by that name are visible to the project; the provider needs exactly one`);
  return found[0]!.id;
}

interface Created {
  readonly id: string;
  /** The API object Neutron answered, plus what the read-back needs to find it again. */
  readonly answer: Record<string, unknown>;
}

async function create(api: NeutronApi, mapping: ResourceMapping, body: Record<string, unknown>): Promise<Created> {
  const endpoint = mapping.endpoint;
  switch (endpoint.kind) {
    case "collection": {
      const answer = (await api.post(endpoint.collection, { [endpoint.member]: body }))[endpoint.member] as Record<string, unknown>;
      return { id: String(answer.id), answer };
    }
    case "qos-rule": {
      const { qos_policy_id: policy, ...rule } = body;
      const answer = (await api.post(`qos/policies/${String(policy)}/${endpoint.rule}s`, { [endpoint.rule]: rule }))[endpoint.rule] as Record<string, unknown>;
      return { id: String(answer.id), answer: { ...answer, qos_policy_id: policy } };
    }
    case "router-interface": {
      const { router_id: router, ...which } = body;
      const answer = await api.put(`routers/${String(router)}/add_router_interface`, which);
      return { id: String(answer.port_id), answer };
    }
    case "floating-ip-association": {
      const { floating_ip_address: address, ...association } = body;
      const found = (await api.get(`floatingips?${query({ floating_ip_address: String(address) })}`)).floatingips as { id: string }[];
      if (found.length !== 1) throw new NeutronRefusal("GET", "floatingips", 404, "FloatingIPNotFound", `no floating IP ${String(address)} in the project`);
      const answer = (await api.put(`floatingips/${found[0]!.id}`, { floatingip: association })).floatingip as Record<string, unknown>;
      return { id: found[0]!.id, answer };
    }
  }
}

/** The project's resources of one collection as Neutron holds them now, by id: one request per collection. */
type Listing = (collection: string, plural: string) => Promise<ReadonlyMap<string, Record<string, unknown>>>;

function projectListing(api: NeutronApi): Listing {
  const lists = new Map<string, Promise<ReadonlyMap<string, Record<string, unknown>>>>();
  return (collection, plural) => {
    let list = lists.get(collection);
    if (!list) {
      list = api.get(`${collection}?${query({ project_id: api.identity.projectId })}`).then((answer) => {
        const items = answer[plural] as Record<string, unknown>[] | undefined;
        if (!Array.isArray(items)) throw new Error(`GET ${collection}: Neutron's answer has no list "${plural}"`);
        return new Map(items.map((i) => [String(i.id), i]));
      });
      lists.set(collection, list);
    }
    return list;
  };
}

/** The resource as Neutron holds it now, in the same shape as the body that created it. */
async function readBack(api: NeutronApi, listing: Listing, mapping: ResourceMapping, created: Created): Promise<Record<string, unknown>> {
  const endpoint = mapping.endpoint;
  const held = async (collection: string, plural: string) => (await listing(collection, plural)).get(created.id) ?? {};
  switch (endpoint.kind) {
    case "collection":
      return held(endpoint.collection, endpoint.plural);
    case "qos-rule": {
      const policy = String(created.answer.qos_policy_id);
      const rule = (await api.get(`qos/policies/${policy}/${endpoint.rule}s/${created.id}`))[endpoint.rule] as Record<string, unknown>;
      return { ...rule, qos_policy_id: policy };
    }
    case "router-interface": {
      const port = (await held("ports", "ports")) as { device_id?: string; device_owner?: string; id?: string; fixed_ips?: { subnet_id: string }[] };
      if (!port.device_owner?.startsWith("network:router_interface")) return { port_id: port.id };
      return { router_id: port.device_id, port_id: port.id, subnet_id: port.fixed_ips?.[0]?.subnet_id };
    }
    case "floating-ip-association":
      return held("floatingips", "floatingips");
  }
}

function outputsOf(mapping: ResourceMapping, created: Created): CreatedOutputs {
  const out: Record<string, string> = { id: created.id };
  for (const [output, field] of Object.entries(mapping.outputs ?? {})) {
    const v = created.answer[field];
    if (typeof v === "string") out[output] = v;
  }
  return out;
}

/** What Nova would set on each planned port when it boots the server attached there. */
export function novaPortNotes(plan: Pick<NetworkingPlan, "servers">): NovaPortNote[] {
  return plan.servers.flatMap((server) =>
    server.ports.map((port) => ({
      port,
      server: server.name,
      sets: {
        device_id: `the id of server ${server.name}`,
        device_owner: `compute:${server.availabilityZone ?? "<its availability zone>"}`,
        "binding:host_id": "the compute host it runs on",
        "binding:vif_type": "the mechanism driver's, once bound (e.g. ovs); the port turns ACTIVE",
      },
    })),
  );
}

export interface ReplayOptions {
  /** Base URL of the Neutron API (local-server.ts). */
  readonly url: string;
  /** A fresh project with one user in this role, or the identity given. */
  readonly as: Role | Identity;
}

/**
 * The replay: an operator (admin) provides the external networks the plan looks up, then a fresh
 * project replays every networking resource as `as`, continuing past a refusal with whatever does
 * not wait for it (like `pulumi up --continue-on-error`), and reads every created resource back.
 * Throws before any request when an argument has no mapping to the API.
 */
export async function replayPlan(plan: NetworkingPlan, options: ReplayOptions): Promise<ReplayReport> {
  // Every body is mapped first (with stand-in references): an unknown argument stops everything.
  for (const r of plan.resources) apiFields(r.type, r.name, r.inputs);
  const operator = new NeutronApi(options.url, freshIdentity("admin"));
  const external = externalNetworkNames(plan);
  await ensureExternalNetworks(operator, external);

  const identity = typeof options.as === "string" ? freshIdentity(options.as) : options.as;
  const api = operator.as(identity);
  const externalIds = new Map<string, string>();
  for (const name of external) externalIds.set(name, await externalNetworkId(api, name));
  const created = new Map<string, CreatedOutputs>();
  const sent = new Map<string, { mapping: ResourceMapping; fields: ApiFields; created: Created }>();
  const notCreated = new Set<string>();
  const steps: ReplayStep[] = [];

  for (const r of replayOrder(plan.resources)) {
    const waitsFor = r.dependsOn.find((d) => notCreated.has(d));
    if (waitsFor) {
      notCreated.add(r.name);
      steps.push({ name: r.name, type: r.type, outcome: { kind: "skipped", waitsFor } });
      continue;
    }
    const mapping = mappingOf(r.type)!;
    const fields = apiFields(r.type, r.name, resolveInputs(r, created, externalIds));
    try {
      const made = await create(api, mapping, fields.body);
      created.set(r.name, outputsOf(mapping, made));
      sent.set(r.name, { mapping, fields, created: made });
      steps.push({ name: r.name, type: r.type, outcome: { kind: "accepted", id: made.id } });
    } catch (err) {
      if (!(err instanceof NeutronRefusal)) throw err;
      notCreated.add(r.name);
      steps.push({ name: r.name, type: r.type, outcome: { kind: "refused", status: err.status, type: err.type, message: err.neutronMessage } });
    }
  }

  const mismatches: ResourceMismatch[] = [];
  const listing = projectListing(api);
  for (const [name, { mapping, fields, created: made }] of sent) {
    const actual = await readBack(api, listing, mapping, made);
    for (const m of readBackMismatches(fields.body, actual, fields.ordered)) mismatches.push({ resource: name, ...m });
  }
  return {
    stack: plan.stack,
    identity,
    steps,
    mismatches,
    readBack: sent.size,
    nova: novaPortNotes(plan).filter((n) => created.has(n.port)),
    notReplayed: plan.notReplayed,
  };
}
