// Which Services a programming run changes at a step: pure, for every backend (workloads/) and with
// the lab's endpoints (backends/lab-programming.ts).
import { describe, expect, it } from "vitest";
import { programmingChanges } from "../../backends/lab-programming.js";
import { labScenario, serviceEndpoints } from "../../lab/lab-scenario.js";
import { planTopology } from "../../lab/topology.js";
import { programmingServices } from "../../workloads/programming-services.js";
import { buildServiceSet } from "../../workloads/service-set.js";

const plan = planTopology("dptb0000");
const scenario = labScenario({ plan });

describe("programmingServices", () => {
  it("probes the step's last NodePort Service and adds the sweep's next ones", () => {
    const set = buildServiceSet(scenario, 10);
    const { probed, more } = programmingServices(scenario, set, 100);
    expect(probed).toBe(set.scaled[9]);
    expect(probed.type).toBe("NodePort");
    expect(more.map((s) => s.name)).toEqual(buildServiceSet(scenario, 109).scaled.slice(10).map((s) => s.name));
  });

  it("past the NodePort range probes the last NodePort Service and adds ClusterIP Services", () => {
    const set = buildServiceSet(scenario, 3000);
    const { probed, more } = programmingServices(scenario, set, 100);
    expect(probed).toBe(set.scaled[set.counts.nodePort - 1]);
    expect(more.every((s) => s.type === "ClusterIP")).toBe(true);
  });

  it("refuses a step without NodePort Services, and a count of Services to add below one", () => {
    expect(() => programmingServices(scenario, buildServiceSet(scenario, 0), 100)).toThrow(/needs a NodePort Service to probe; 0 Services hold none/);
    expect(() => programmingServices(scenario, buildServiceSet(scenario, 5), 0)).toThrow(/addMany: 0 is not accepted/);
  });
});

describe("programmingChanges", () => {
  it("gives the step without the probed Service, and with it and the 99 more, reusing the step's Service objects", () => {
    const set = buildServiceSet(scenario, 50);
    const endpoints = serviceEndpoints(set, plan.addresses.pod);
    const { probed, without, withMany } = programmingChanges(scenario, { serviceSet: set, endpoints }, 100);
    expect(probed.service).toBe(set.scaled[49]);
    expect(without).toHaveLength(endpoints.length - 1);
    expect(without).not.toContain(probed);
    expect(withMany).toHaveLength(endpoints.length + 99);
    expect(withMany.slice(0, endpoints.length)).toEqual(endpoints);
    expect(withMany.slice(endpoints.length).every((e) => e.endpoints === probed.endpoints)).toBe(true);
  });
});
