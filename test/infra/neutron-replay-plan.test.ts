// The pure half of the Neutron replay: which input values come from the cloud, the order resources
// are sent in, and how references become real values. No server here (see test/neutron/).
import { describe, expect, it } from "vitest";
import type { EngineRecording, RegisteredResource } from "../../infra/neutron/engine-recording.js";
import { planNetworkingInChild } from "../../cli/verify-openstack.js";
import { networkingPlan, type PlannedNetworkResource } from "../../infra/neutron/networking-plan.js";
import { externalNetworkNames, novaPortNotes, replayOrder, resolveInputs } from "../../infra/neutron/replay.js";

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

const urn = (name: string, type: string) => `urn:pulumi:s::p::${type}::${name}`;

function registered(name: string, type: string, inputs: Record<string, unknown>, extra: Partial<RegisteredResource> = {}): RegisteredResource {
  return { urn: urn(name, type), type, name, custom: true, parentUrn: "", dependencies: [], propertyDependencies: {}, id: `${name}-id`, state: { ...inputs }, ...extra };
}

/** A small program: a network in a component, a subnet, a router on a looked-up network, a port, a server, a floating IP. */
function smallProgram() {
  const inputs = {
    net: { name: "n" },
    sub: { networkId: "net-id", cidr: "198.18.0.0/24", name: "net-id-like-but-literal" },
    router: { externalNetworkId: "public-network-id" },
    ri: { routerId: "router-id", subnetId: "sub-id" },
    port: { networkId: "net-id", fixedIps: [{ subnetId: "sub-id", ipAddress: "198.18.0.10" }] },
    fip: { pool: "public" },
    assoc: { floatingIp: "203.0.113.10", portId: "port-id" },
    srv: { name: "testbed-x", networks: [{ port: "port-id" }], availabilityZone: "az1" },
  };
  const comp: RegisteredResource = { ...registered("lab-net", T.component, {}), custom: false, id: "" };
  const recording: EngineRecording = {
    resources: [
      comp,
      registered("net", T.net, inputs.net, { parentUrn: comp.urn }),
      registered("sub", T.subnet, inputs.sub, { parentUrn: comp.urn, dependencies: [urn("net", T.net)], propertyDependencies: { networkId: [urn("net", T.net)], name: [urn("net", T.net)] } }),
      registered("router", T.router, inputs.router),
      registered("ri", T.ri, inputs.ri, { dependencies: [urn("router", T.router), urn("sub", T.subnet)], propertyDependencies: { routerId: [urn("router", T.router)], subnetId: [urn("sub", T.subnet)] } }),
      registered("port", T.port, inputs.port, {
        dependencies: [urn("net", T.net), urn("sub", T.subnet)],
        propertyDependencies: { networkId: [urn("net", T.net)], fixedIps: [urn("sub", T.subnet)] },
        state: { ...inputs.port, macAddress: "fa:16:3e:00:00:01" },
      }),
      registered("fip", T.fip, inputs.fip, { state: { ...inputs.fip, address: "203.0.113.10" } }),
      // dependsOn the whole component: every custom resource under it.
      registered("assoc", T.assoc, inputs.assoc, {
        dependencies: [urn("fip", T.fip), urn("port", T.port), comp.urn],
        propertyDependencies: { floatingIp: [urn("fip", T.fip)], portId: [urn("port", T.port)] },
      }),
      registered("srv", T.server, inputs.srv, { dependencies: [urn("port", T.port)], propertyDependencies: { networks: [urn("port", T.port)] } }),
    ],
    invokes: [{ token: "openstack:networking/getNetwork:getNetwork", args: { name: "public", external: true }, result: { name: "public", external: true, id: "public-network-id" } }],
  };
  const resources = Object.entries({ net: T.net, sub: T.subnet, router: T.router, ri: T.ri, port: T.port, fip: T.fip, assoc: T.assoc, srv: T.server }).map(
    ([name, type]) => ({ type, name, inputs: inputs[name as keyof typeof inputs] as Record<string, unknown> }),
  );
  return networkingPlan("s", [], resources, recording);
}

describe("networkingPlan", () => {
  const plan = smallProgram();
  const byName = (n: string) => plan.resources.find((r) => r.name === n)!;

  it("keeps the networking resources only and lists the rest of OpenStack as not replayed", () => {
    expect(plan.resources.map((r) => r.name)).toEqual(["net", "sub", "router", "ri", "port", "fip", "assoc"]);
    expect(plan.notReplayed).toEqual([{ type: T.server, name: "srv" }]);
  });

  it("finds ids, computed addresses and lookups among the inputs, and leaves literals alone", () => {
    expect(byName("sub").references).toEqual([{ path: ["networkId"], resource: "net", output: "id" }]);
    expect(byName("port").references).toEqual([
      { path: ["networkId"], resource: "net", output: "id" },
      { path: ["fixedIps", 0, "subnetId"], resource: "sub", output: "id" },
    ]);
    expect(byName("router").references).toEqual([{ path: ["externalNetworkId"], lookup: 0, output: "id" }]);
    expect(byName("assoc").references).toEqual([
      { path: ["floatingIp"], resource: "fip", output: "address" },
      { path: ["portId"], resource: "port", output: "id" },
    ]);
  });

  it("expands a dependency on a component to the resources under it", () => {
    expect([...byName("assoc").dependsOn].sort()).toEqual(["fip", "net", "port", "sub"]);
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
    expect(resolveInputs(assoc, created, [])).toEqual({ floatingIp: "203.0.113.77", portId: "0b5c" });
    expect(assoc.inputs).toEqual({ floatingIp: "203.0.113.10", portId: "port-id" });
    const router = plan.resources.find((r) => r.name === "router")!;
    expect(resolveInputs(router, new Map(), [{ id: "e7f1" }])).toEqual({ externalNetworkId: "e7f1" });
  });

  it("says which value it lacks", () => {
    expect(() => resolveInputs(assoc, new Map([["port", { id: "p" }]]), [])).toThrow(/assoc: floatingIp needs address of resource fip/);
  });
});

describe("the networking plan of a real stack", () => {
  it("keeps every reference pointing at a planned resource or lookup, and the association waiting for the router interface", async () => {
    const plan = await planNetworkingInChild("ebpf");
    const names = new Set(plan.resources.map((r) => r.name));
    expect(plan.resources.length).toBeGreaterThan(40);
    for (const r of plan.resources) {
      expect(r.type.startsWith("openstack:networking/")).toBe(true);
      for (const ref of r.references) {
        if ("resource" in ref) expect(names.has(ref.resource), `${r.name} -> ${ref.resource}`).toBe(true);
        else expect(plan.lookups[ref.lookup]).toBeDefined();
        expect(r.dependsOn.includes("resource" in ref ? ref.resource : "") || "lookup" in ref).toBe(true);
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
