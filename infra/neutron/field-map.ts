// How @pulumi/openstack 3.15's networking arguments become Neutron API fields, as the provider sends
// them (terraform-provider-openstack through gophercloud). Only the arguments this program uses and
// their close neighbours are here: an argument missing from the table stops the replay before any
// request, rather than being dropped. Each argument name is checked against the provider's own
// declarations (node_modules/@pulumi/openstack/networking/*.d.ts) by the tests.

/** How one provider argument becomes an API field. */
export interface FieldRule {
  /** The API field; a dotted path nests it (external_gateway_info.network_id). */
  readonly api: string;
  /** A list of objects: each item's provider field -> API field, and the provider's item type. */
  readonly items?: { readonly type: string; readonly fields: Readonly<Record<string, string>> };
  /** What Neutron receives when it is not the argument's value (noGateway: true -> gateway_ip: null). */
  readonly value?: (v: unknown) => unknown;
  /** A list whose order matters (resolvers); other lists are compared as sets. */
  readonly ordered?: boolean;
  /** When the value comes from another resource: which of its outputs it is (id when unsaid). */
  readonly output?: string;
  /** An existing external network, given by name (Neutron wants its id) or by the id a lookup found. */
  readonly externalNetwork?: "name" | "looked-up id";
}

/** Where the API creates and reads a resource. */
export type Endpoint =
  /** POST <collection> {<member>: body}; GET <collection> lists them as <plural>. */
  | { readonly kind: "collection"; readonly collection: string; readonly member: string; readonly plural: string }
  /** A QoS rule: POST qos/policies/<qos_policy_id>/<rule>s {<rule>: body}. */
  | { readonly kind: "qos-rule"; readonly rule: string }
  /** PUT routers/<router_id>/add_router_interface {subnet_id | port_id}. */
  | { readonly kind: "router-interface" }
  /** The floating IP found by its address, then PUT floatingips/<id> {port_id, fixed_ip_address}. */
  | { readonly kind: "floating-ip-association" };

export interface ResourceMapping {
  /** The provider's token, e.g. openstack:networking/port:Port. */
  readonly type: string;
  readonly endpoint: Endpoint;
  readonly fields: Readonly<Record<string, FieldRule>>;
  /** Provider outputs other resources read (besides id), and the API field each one is. */
  readonly outputs?: Readonly<Record<string, string>>;
}

/** Where @pulumi/openstack declares a resource's arguments: networking/port.d.ts, interface PortArgs. */
export function providerDeclaration(type: string): { readonly file: string; readonly argsInterface: string } {
  const m = /^openstack:networking\/(\w+):(\w+)$/.exec(type);
  if (!m) throw new Error(`${type} is not an openstack:networking resource token`);
  return { file: `networking/${m[1]}.d.ts`, argsInterface: `${m[2]}Args` };
}

const same = (api: string): FieldRule => ({ api });

export const RESOURCE_MAPPINGS: readonly ResourceMapping[] = [
  {
    type: "openstack:networking/network:Network",
    endpoint: { kind: "collection", collection: "networks", member: "network", plural: "networks" },
    fields: {
      name: same("name"),
      description: same("description"),
      adminStateUp: same("admin_state_up"),
      portSecurityEnabled: same("port_security_enabled"),
    },
  },
  {
    type: "openstack:networking/subnet:Subnet",
    endpoint: { kind: "collection", collection: "subnets", member: "subnet", plural: "subnets" },
    fields: {
      name: same("name"),
      description: same("description"),
      networkId: same("network_id"),
      cidr: same("cidr"),
      ipVersion: same("ip_version"),
      gatewayIp: same("gateway_ip"),
      // The provider sends an explicit null (its empty gateway): Neutron would otherwise take the first address.
      noGateway: { api: "gateway_ip", value: (v) => (v === true ? null : undefined) },
      enableDhcp: same("enable_dhcp"),
      allocationPools: { api: "allocation_pools", items: { type: "SubnetAllocationPool", fields: { start: "start", end: "end" } } },
      hostRoutes: { api: "host_routes", items: { type: "SubnetHostRoute", fields: { destinationCidr: "destination", nextHop: "nexthop" } } },
      dnsNameservers: { api: "dns_nameservers", ordered: true },
      ipv6AddressMode: same("ipv6_address_mode"),
      ipv6RaMode: same("ipv6_ra_mode"),
    },
  },
  {
    type: "openstack:networking/router:Router",
    endpoint: { kind: "collection", collection: "routers", member: "router", plural: "routers" },
    fields: {
      name: same("name"),
      description: same("description"),
      adminStateUp: same("admin_state_up"),
      externalNetworkId: { api: "external_gateway_info.network_id", externalNetwork: "looked-up id" },
      enableSnat: same("external_gateway_info.enable_snat"),
      externalFixedIps: {
        api: "external_gateway_info.external_fixed_ips",
        items: { type: "RouterExternalFixedIp", fields: { subnetId: "subnet_id", ipAddress: "ip_address" } },
      },
    },
  },
  {
    type: "openstack:networking/routerInterface:RouterInterface",
    endpoint: { kind: "router-interface" },
    fields: { routerId: same("router_id"), subnetId: same("subnet_id"), portId: same("port_id") },
  },
  {
    type: "openstack:networking/secGroup:SecGroup",
    endpoint: { kind: "collection", collection: "security-groups", member: "security_group", plural: "security_groups" },
    fields: { name: same("name"), description: same("description") },
  },
  {
    type: "openstack:networking/secGroupRule:SecGroupRule",
    endpoint: { kind: "collection", collection: "security-group-rules", member: "security_group_rule", plural: "security_group_rules" },
    fields: {
      securityGroupId: same("security_group_id"),
      description: same("description"),
      direction: same("direction"),
      ethertype: same("ethertype"),
      protocol: same("protocol"),
      portRangeMin: same("port_range_min"),
      portRangeMax: same("port_range_max"),
      remoteIpPrefix: same("remote_ip_prefix"),
      remoteGroupId: same("remote_group_id"),
    },
  },
  {
    type: "openstack:networking/qosPolicy:QosPolicy",
    endpoint: { kind: "collection", collection: "qos/policies", member: "policy", plural: "policies" },
    fields: { name: same("name"), description: same("description"), shared: same("shared"), isDefault: same("is_default") },
  },
  {
    type: "openstack:networking/qosBandwidthLimitRule:QosBandwidthLimitRule",
    endpoint: { kind: "qos-rule", rule: "bandwidth_limit_rule" },
    fields: { qosPolicyId: same("qos_policy_id"), direction: same("direction"), maxKbps: same("max_kbps"), maxBurstKbps: same("max_burst_kbps") },
  },
  {
    type: "openstack:networking/port:Port",
    endpoint: { kind: "collection", collection: "ports", member: "port", plural: "ports" },
    fields: {
      name: same("name"),
      description: same("description"),
      networkId: same("network_id"),
      adminStateUp: same("admin_state_up"),
      macAddress: same("mac_address"),
      fixedIps: { api: "fixed_ips", items: { type: "PortFixedIp", fields: { subnetId: "subnet_id", ipAddress: "ip_address" } } },
      securityGroupIds: same("security_groups"),
      noSecurityGroups: { api: "security_groups", value: (v) => (v === true ? [] : undefined) },
      portSecurityEnabled: same("port_security_enabled"),
      allowedAddressPairs: {
        api: "allowed_address_pairs",
        items: { type: "PortAllowedAddressPair", fields: { ipAddress: "ip_address", macAddress: "mac_address" } },
      },
      qosPolicyId: same("qos_policy_id"),
    },
    outputs: { macAddress: "mac_address" },
  },
  {
    type: "openstack:networking/floatingIp:FloatingIp",
    endpoint: { kind: "collection", collection: "floatingips", member: "floatingip", plural: "floatingips" },
    fields: { description: same("description"), pool: { api: "floating_network_id", externalNetwork: "name" } },
    outputs: { address: "floating_ip_address" },
  },
  {
    type: "openstack:networking/floatingIpAssociate:FloatingIpAssociate",
    endpoint: { kind: "floating-ip-association" },
    fields: { floatingIp: { api: "floating_ip_address", output: "address" }, portId: same("port_id"), fixedIp: same("fixed_ip_address") },
  },
];

export function mappingOf(type: string): ResourceMapping | undefined {
  return RESOURCE_MAPPINGS.find((m) => m.type === type);
}

/** A body for the API, and where each list's order matters. */
export interface ApiFields {
  readonly body: Record<string, unknown>;
  /** Dotted API paths of lists compared in order. */
  readonly ordered: readonly string[];
}

/** The arguments of `type` that name an external network, which the API wants as an id. */
export function networkNameArguments(type: string): string[] {
  return Object.entries(mappingOf(type)?.fields ?? {})
    .filter(([, rule]) => rule.externalNetwork === "name")
    .map(([arg]) => arg);
}

function setPath(target: Record<string, unknown>, dotted: string, value: unknown, from: string): void {
  const keys = dotted.split(".");
  let at = target;
  for (const k of keys.slice(0, -1)) at = (at[k] ??= {}) as Record<string, unknown>;
  const last = keys[keys.length - 1]!;
  if (last in at && JSON.stringify(at[last]) !== JSON.stringify(value)) {
    throw new Error(`${from} and another argument both set ${dotted}, to different values`);
  }
  at[last] = value;
}

/**
 * The API fields of one resource's inputs (references already replaced by real values). Throws,
 * naming the argument, for any argument the table does not know: nothing is sent half-mapped.
 */
export function apiFields(type: string, resourceName: string, inputs: Record<string, unknown>): ApiFields {
  const mapping = mappingOf(type);
  if (!mapping) throw new Error(`${type} "${resourceName}": no mapping to the Neutron API in infra/neutron/field-map.ts`);
  const body: Record<string, unknown> = {};
  const ordered: string[] = [];
  for (const [arg, raw] of Object.entries(inputs)) {
    const rule = mapping.fields[arg];
    if (!rule) {
      throw new Error(
        `${type} "${resourceName}": argument ${arg} has no Neutron field in infra/neutron/field-map.ts; mapped: ${Object.keys(mapping.fields).join(", ")}`,
      );
    }
    let value = rule.value ? rule.value(raw) : raw;
    if (value === undefined) continue;
    if (rule.items) {
      if (!Array.isArray(value)) throw new Error(`${type} "${resourceName}": ${arg} is not a list`);
      value = value.map((item: Record<string, unknown>, i) =>
        Object.fromEntries(
          Object.entries(item).map(([k, v]) => {
            const field = rule.items!.fields[k];
            if (!field) throw new Error(`${type} "${resourceName}": ${arg}[${i}].${k} has no Neutron field in infra/neutron/field-map.ts`);
            return [field, v];
          }),
        ),
      );
    }
    setPath(body, rule.api, value, `${type} "${resourceName}": ${arg}`);
    if (rule.ordered) ordered.push(rule.api);
  }
  return { body, ordered };
}

/** One planned value Neutron did not keep as it was sent. */
export interface FieldMismatch {
  /** API path, e.g. fixed_ips or external_gateway_info.network_id. */
  readonly field: string;
  readonly planned: unknown;
  /** undefined: Neutron's answer lacks the field. */
  readonly actual: unknown;
}

function covers(planned: unknown, actual: unknown, at: string, ordered: readonly string[]): boolean {
  if (planned === null || typeof planned !== "object") return planned === actual;
  if (Array.isArray(planned)) {
    if (!Array.isArray(actual) || actual.length !== planned.length) return false;
    if (ordered.includes(at)) return planned.every((p, i) => covers(p, actual[i], at, ordered));
    const left = [...actual];
    for (const p of planned) {
      const i = left.findIndex((a) => covers(p, a, at, ordered));
      if (i < 0) return false;
      left.splice(i, 1);
    }
    return true;
  }
  if (!actual || typeof actual !== "object" || Array.isArray(actual)) return false;
  return Object.entries(planned).every(([k, v]) => covers(v, (actual as Record<string, unknown>)[k], at, ordered));
}

/**
 * What Neutron changed or dropped: every planned field must come back equal (lists as sets unless
 * ordered, list items and objects compared on their planned keys). What Neutron added (ids, MACs,
 * revision numbers, the pairs' MAC) is not a mismatch.
 */
export function readBackMismatches(planned: Record<string, unknown>, actual: Record<string, unknown>, ordered: readonly string[] = [], prefix = ""): FieldMismatch[] {
  const out: FieldMismatch[] = [];
  for (const [k, v] of Object.entries(planned)) {
    const field = prefix ? `${prefix}.${k}` : k;
    const got = actual[k];
    if (v && typeof v === "object" && !Array.isArray(v) && got && typeof got === "object" && !Array.isArray(got)) {
      out.push(...readBackMismatches(v as Record<string, unknown>, got as Record<string, unknown>, ordered, field));
    } else if (!covers(v, got, field, ordered)) {
      out.push({ field, planned: v, actual: got });
    }
  }
  return out;
}
