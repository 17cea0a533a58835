// The table from provider arguments to Neutron API fields: every argument it maps is one the
// provider declares, and the translation and read-back comparison behave as documented.
import * as fs from "node:fs";
import * as path from "node:path";
import ts from "typescript";
import { describe, expect, it } from "vitest";
import { apiFields, networkNameArguments, providerDeclaration, readBackMismatches, RESOURCE_MAPPINGS } from "../../infra/neutron/field-map.js";

const PROVIDER = path.resolve("node_modules/@pulumi/openstack");

/** Member names of an interface declared (at any depth, e.g. inside `namespace networking`) in a .d.ts file. */
function declaredMembers(file: string, name: string): string[] {
  const source = ts.createSourceFile(file, fs.readFileSync(file, "utf8"), ts.ScriptTarget.ES2022, true);
  let members: string[] | undefined;
  const visit = (node: ts.Node) => {
    if (ts.isInterfaceDeclaration(node) && node.name.text === name) {
      members = node.members.filter(ts.isPropertySignature).map((m) => (m.name as ts.Identifier).text);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  if (!members) throw new Error(`${file} declares no interface ${name}`);
  return members;
}

describe("the mapping table against @pulumi/openstack's declarations", () => {
  it("covers the provider version the project pins", () => {
    const version = (JSON.parse(fs.readFileSync(path.join(PROVIDER, "package.json"), "utf8")) as { version: string }).version;
    expect(version).toMatch(/^v?3\.15\./);
  });

  for (const mapping of RESOURCE_MAPPINGS) {
    const declaration = providerDeclaration(mapping.type);
    it(`${mapping.type}: every mapped argument is declared in ${declaration.file}`, () => {
      const file = path.join(PROVIDER, declaration.file);
      const declared = declaredMembers(file, declaration.argsInterface);
      const token = fs.readFileSync(file.replace(/\.d\.ts$/, ".js"), "utf8").match(/__pulumiType = '([^']+)'/)?.[1];
      expect(token).toBe(mapping.type);
      for (const arg of Object.keys(mapping.fields)) expect(declared, `${declaration.argsInterface}.${arg}`).toContain(arg);
      for (const [arg, rule] of Object.entries(mapping.fields)) {
        if (!rule.items) continue;
        const items = declaredMembers(path.join(PROVIDER, "types/input.d.ts"), rule.items.type);
        for (const field of Object.keys(rule.items.fields)) expect(items, `${arg}: ${rule.items.type}.${field}`).toContain(field);
      }
    });
  }

  it("knows each provider type once", () => {
    const types = RESOURCE_MAPPINGS.map((m) => m.type);
    expect(new Set(types).size).toBe(types.length);
  });
});

describe("apiFields", () => {
  it("renames arguments, nests dotted fields and renames list items", () => {
    expect(
      apiFields("openstack:networking/router:Router", "r", { name: "up", externalNetworkId: "ext", externalFixedIps: [{ subnetId: "s", ipAddress: "203.0.113.5" }] }).body,
    ).toEqual({ name: "up", external_gateway_info: { network_id: "ext", external_fixed_ips: [{ subnet_id: "s", ip_address: "203.0.113.5" }] } });
    expect(
      apiFields("openstack:networking/subnet:Subnet", "s", { hostRoutes: [{ destinationCidr: "198.18.1.0/24", nextHop: "198.18.0.12" }] }).body,
    ).toEqual({ host_routes: [{ destination: "198.18.1.0/24", nexthop: "198.18.0.12" }] });
  });

  it("sends what the provider sends for switches: noGateway as a null gateway, noSecurityGroups as an empty list", () => {
    expect(apiFields("openstack:networking/subnet:Subnet", "s", { noGateway: true }).body).toEqual({ gateway_ip: null });
    expect(apiFields("openstack:networking/subnet:Subnet", "s", { noGateway: false }).body).toEqual({});
    expect(apiFields("openstack:networking/port:Port", "p", { noSecurityGroups: true }).body).toEqual({ security_groups: [] });
  });

  it("refuses two arguments that set one field differently", () => {
    expect(() => apiFields("openstack:networking/port:Port", "p", { noSecurityGroups: true, securityGroupIds: ["sg"] })).toThrow(
      /port:Port "p": securityGroupIds and another argument both set security_groups/,
    );
  });

  it("stops at an argument it has no field for, naming it and what is mapped", () => {
    expect(() => apiFields("openstack:networking/secGroup:SecGroup", "sg", { name: "x", deleteDefaultRules: true })).toThrow(
      /SecGroup "sg": argument deleteDefaultRules has no Neutron field in infra\/neutron\/field-map.ts; mapped: name, description/,
    );
    expect(() => apiFields("openstack:networking/port:Port", "p", { fixedIps: [{ subnetId: "s", bogus: 1 }] })).toThrow(/fixedIps\[0\]\.bogus has no Neutron field/);
    expect(() => apiFields("openstack:networking/trunk:Trunk", "t", {})).toThrow(/trunk:Trunk "t": no mapping to the Neutron API/);
  });

  it("marks resolver lists as ordered and floating IP pools as network names", () => {
    expect(apiFields("openstack:networking/subnet:Subnet", "s", { dnsNameservers: ["192.0.2.53"] }).ordered).toEqual(["dns_nameservers"]);
    expect(networkNameArguments("openstack:networking/floatingIp:FloatingIp")).toEqual(["pool"]);
    expect(networkNameArguments("openstack:networking/port:Port")).toEqual([]);
  });
});

describe("readBackMismatches", () => {
  const port = {
    fixed_ips: [
      { subnet_id: "a", ip_address: "198.18.0.12" },
      { subnet_id: "b", ip_address: "2001:2:0:10::12" },
    ],
    allowed_address_pairs: [{ ip_address: "198.18.1.0/24" }],
    security_groups: ["sg1", "sg2"],
    qos_policy_id: "q",
  };

  it("accepts what Neutron only added to, and lists in another order", () => {
    const actual = {
      ...port,
      id: "p",
      fixed_ips: [...port.fixed_ips].reverse(),
      allowed_address_pairs: [{ ip_address: "198.18.1.0/24", mac_address: "fa:16:3e:00:00:01" }],
      security_groups: ["sg2", "sg1"],
    };
    expect(readBackMismatches(port, actual)).toEqual([]);
  });

  it("reports a changed value, a dropped value and a dropped list item, by API field", () => {
    const actual = {
      fixed_ips: [{ subnet_id: "a", ip_address: "198.18.0.12" }, { subnet_id: "b", ip_address: "2001:2:0:10::13" }],
      allowed_address_pairs: [],
      security_groups: ["sg1", "sg2"],
    };
    expect(readBackMismatches(port, actual).map((m) => m.field)).toEqual(["fixed_ips", "allowed_address_pairs", "qos_policy_id"]);
    expect(readBackMismatches(port, actual)[2]).toEqual({ field: "qos_policy_id", planned: "q", actual: undefined });
  });

  it("compares ordered lists in order and nested objects key by key", () => {
    const planned = { dns_nameservers: ["192.0.2.53", "192.0.2.54"], external_gateway_info: { network_id: "e", enable_snat: false } };
    const actual = { dns_nameservers: ["192.0.2.54", "192.0.2.53"], external_gateway_info: { network_id: "e", enable_snat: true, external_fixed_ips: [] } };
    expect(readBackMismatches(planned, actual, ["dns_nameservers"])).toEqual([
      { field: "dns_nameservers", planned: ["192.0.2.53", "192.0.2.54"], actual: ["192.0.2.54", "192.0.2.53"] },
      { field: "external_gateway_info.enable_snat", planned: false, actual: true },
    ]);
    expect(readBackMismatches(planned, actual).map((m) => m.field)).toEqual(["external_gateway_info.enable_snat"]);
  });

  it("takes a null gateway back only as null", () => {
    expect(readBackMismatches({ gateway_ip: null }, { gateway_ip: null })).toEqual([]);
    expect(readBackMismatches({ gateway_ip: null }, { gateway_ip: "198.18.0.1" })).toEqual([{ field: "gateway_ip", planned: null, actual: "198.18.0.1" }]);
  });
});
