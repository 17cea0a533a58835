// The pure half of the Neutron replay: which input values come from the cloud, the order resources
// are sent in, and how references become real values. No server here (see test/neutron/).
import { describe, expect, it } from "vitest";
import { planNetworkingInChild } from "../../cli/verify-openstack.js";
import { networkingPlan, type PlannedNetworkResource } from "../../infra/neutron/networking-plan.js";
import { externalNetworkNames, novaPortNotes, replayOrder, resolveInputs } from "../../infra/neutron/replay.js";
import type { PlannedResource, RegistrationOptions } from "../../infra/offline-engine.js";

const T = {
  net: "openstack:networking/network:Network",
  subnet: "openstack:networking/subnet:Subnet",
  port: "openstack:networking/port:Port",
  router: "openstack:networking/router:Router",
  ri: "openstack:networking/routerInterface:RouterInterface",
  fip: "openstack:networking/floatingIp:FloatingIp",
  assoc: "openstack:networking/floatingIpAssociate:FloatingIpAssociate",
  server: "openstack:compute/instance:Instance",
  component: "testbed:openstack:Networks",
};

/** A resource as the offline engine records it; ids in options are type::name. */
function recorded(type: string, name: string, inputs: Record<string, unknown>, options: Partial<RegistrationOptions> = {}): PlannedResource {
  const propertyDependencies = options.propertyDependencies ?? {};
  const dependencies = [...new Set([...(options.dependencies ?? []), ...Object.values(propertyDependencies).flat()])];
  return {
    type,
    name,
    inputs,
    options: { parent: "", deleteBeforeReplace: false, ignoreChanges: [], replaceOnChanges: [], additionalSecretOutputs: [], deletedWith: "", ...options, dependencies, propertyDependencies },
  };
}

/**
 * A small program as the offline engine answers it (ids `<name>-id`, getNetwork `<name>-network-id`,
 * the floating IP's address 203.0.113.10): a network in a component, a subnet, a router on a looked-up
 * network, a port, a server, a floating IP and its association.
 */
function smallProgram() {
  const comp = "testbed:openstack:Networks::lab-net";
  const resources = [
    recorded(T.component, "lab-net", {}),
    recorded(T.net, "net", { name: "n" }, { parent: comp }),
    recorded(T.subnet, "sub", { networkId: "net-id", cidr: "198.18.0.0/24", name: "net-id-like-but-literal" }, { parent: comp, propertyDependencies: { networkId: [`${T.net}::net`] } }),
    recorded(T.router, "router", { externalNetworkId: "public-network-id", name: "public-network-id" }, { parent: comp }),
    recorded(T.ri, "ri", { routerId: "router-id", subnetId: "sub-id" }, { propertyDependencies: { routerId: [`${T.router}::router`], subnetId: [`${T.subnet}::sub`] } }),
    recorded(T.port, "port", { networkId: "net-id", fixedIps: [{ subnetId: "sub-id", ipAddress: "198.18.0.10" }] }, {
      propertyDependencies: { networkId: [`${T.net}::net`], fixedIps: [`${T.subnet}::sub`] },
    }),
    recorded(T.fip, "fip", { pool: "public" }),
    // dependsOn the whole component: every resource under it.
    recorded(T.assoc, "assoc", { floatingIp: "203.0.113.10", portId: "port-id" }, {
      dependencies: [comp],
      propertyDependencies: { floatingIp: [`${T.fip}::fip`], portId: [`${T.port}::port`] },
    }),
    recorded(T.server, "srv", { name: "testbed-x", networks: [{ port: "port-id" }], availabilityZone: "az1" }, { propertyDependencies: { networks: [`${T.port}::port`] } }),
  ];
  return networkingPlan("s", [], resources);
}

describe("networkingPlan", () => {
  const plan = smallProgram();
  const byName = (n: string) => plan.resources.find((r) => r.name === n)!;

  it("keeps the networking resources only and lists the rest of OpenStack as not replayed", () => {
    expect(plan.resources.map((r) => r.name)).toEqual(["net", "sub", "router", "ri", "port", "fip", "assoc"]);
    expect(plan.notReplayed).toEqual([{ type: T.server, name: "srv" }]);
  });

  it("finds ids, computed addresses and looked-up networks among the inputs, and leaves literals alone", () => {
    expect(byName("sub").references).toEqual([{ path: ["networkId"], resource: "net", output: "id" }]);
    expect(byName("port").references).toEqual([
      { path: ["networkId"], resource: "net", output: "id" },
      { path: ["fixedIps", 0, "subnetId"], resource: "sub", output: "id" },
    ]);
    // Only the argument that takes a looked-up network: a name that looks like one stays a name.
    expect(byName("router").references).toEqual([{ path: ["externalNetworkId"], externalNetwork: "public" }]);
    expect(byName("assoc").references).toEqual([
      { path: ["floatingIp"], resource: "fip", output: "address" },
      { path: ["portId"], resource: "port", output: "id" },
    ]);
  });

  it("expands a dependency on a component to the resources under it", () => {
    expect([...byName("assoc").dependsOn].sort()).toEqual(["fip", "net", "port", "router", "sub"]);
  });

  it("records which ports each server attaches, for what Nova would add", () => {
    expect(plan.servers).toEqual([{ resource: "srv", name: "testbed-x", availabilityZone: "az1", ports: ["port"] }]);
    expect(novaPortNotes(plan)).toEqual([
      expect.objectContaining({ port: "port", server: "testbed-x", sets: expect.objectContaining({ device_owner: "compute:az1", device_id: "the id of server testbed-x" }) }),
    ]);
  });

  it("names the external networks an operator must provide: looked up and floating IP pools", () => {
    expect(externalNetworkNames(plan)).toEqual(["public"]);
  });
});

const node = (name: string, dependsOn: string[] = []): PlannedNetworkResource => ({ type: T.net, name, inputs: {}, dependsOn, references: [] });

describe("replayOrder", () => {
  it("puts every resource after what it waits for", () => {
    const resources = [node("a"), node("b", ["a"]), node("c", ["b", "a"]), node("d"), node("e", ["d", "c"])];
    const order = replayOrder(resources).map((r) => r.name);
    expect([...order].sort()).toEqual(["a", "b", "c", "d", "e"]);
    for (const r of resources) for (const d of r.dependsOn) expect(order.indexOf(d)).toBeLessThan(order.indexOf(r.name));
  });

  it("creates a resource nothing waits for as late as possible: a forgotten dependency is not hidden by declaration order", () => {
    // Declared first, needed by the association only through a dependsOn the program may forget.
    const withDependency = [node("interface"), node("port"), node("association", ["port", "interface"])];
    const forgotten = [node("interface"), node("port"), node("association", ["port"])];
    const order = (rs: PlannedNetworkResource[]) => replayOrder(rs).map((r) => r.name);
    expect(order(withDependency)).toEqual(["interface", "port", "association"]);
    expect(order(forgotten)).toEqual(["port", "association", "interface"]);
  });

  it("refuses a cycle, naming it", () => {
    expect(() => replayOrder([node("a", ["b"]), node("b", ["a"])])).toThrow(/dependency cycle: .*a -> b -> a|b -> a -> b/);
  });
});

describe("resolveInputs", () => {
  const plan = smallProgram();
  const assoc = plan.resources.find((r) => r.name === "assoc")!;

  it("puts the real values in place of the mock's, leaving the plan as it was", () => {
    const created = new Map<string, Record<string, string>>([
      ["fip", { id: "f1", address: "203.0.113.77" }],
      ["port", { id: "0b5c", macAddress: "fa:16:3e:12:34:56" }],
    ]);
    expect(resolveInputs(assoc, created, new Map())).toEqual({ floatingIp: "203.0.113.77", portId: "0b5c" });
    expect(assoc.inputs).toEqual({ floatingIp: "203.0.113.10", portId: "port-id" });
    const external = new Map([["public", "e7f1"]]);
    const router = plan.resources.find((r) => r.name === "router")!;
    expect(resolveInputs(router, new Map(), external)).toEqual({ externalNetworkId: "e7f1", name: "public-network-id" });
    // A floating IP's pool is a name the API wants as an id.
    expect(resolveInputs(plan.resources.find((r) => r.name === "fip")!, new Map(), external)).toEqual({ pool: "e7f1" });
  });

  it("says which value it lacks", () => {
    expect(() => resolveInputs(assoc, new Map([["port", { id: "p" }]]), new Map())).toThrow(/assoc: floatingIp needs address of resource fip/);
    expect(() => resolveInputs(plan.resources.find((r) => r.name === "fip")!, new Map(), new Map())).toThrow(/fip: pool needs the id of external network public/);
  });
});

describe("the networking plan of a real stack", () => {
  it("keeps every reference pointing at a planned resource or the external network, and the association waiting for the router interface", async () => {
    const plan = await planNetworkingInChild("ebpf");
    const names = new Set(plan.resources.map((r) => r.name));
    expect(plan.resources.length).toBeGreaterThan(40);
    for (const r of plan.resources) {
      expect(r.type.startsWith("openstack:networking/")).toBe(true);
      for (const ref of r.references) {
        if ("resource" in ref) {
          expect(names.has(ref.resource), `${r.name} -> ${ref.resource}`).toBe(true);
          expect(r.dependsOn).toContain(ref.resource);
        } else {
          expect(ref.externalNetwork).toBe("public");
        }
      }
    }
    const association = plan.resources.find((r) => r.type.endsWith("floatingIpAssociate:FloatingIpAssociate"))!;
    const routerInterface = plan.resources.find((r) => r.type.endsWith("routerInterface:RouterInterface"))!;
    expect(association.dependsOn).toContain(routerInterface.name);
    // Every port is attached to a server, so Nova's part is known for each one.
    const ports = plan.resources.filter((r) => r.type === T.port).map((r) => r.name).sort();
    expect(plan.servers.flatMap((s) => s.ports).sort()).toEqual(ports);
    expect(plan.notReplayed.map((r) => r.type)).toContain(T.server);
  });
});
