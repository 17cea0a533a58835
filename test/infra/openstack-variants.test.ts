// The ebpf stack with created flavors and no link cap: the two switches the committed stacks leave off.
import { beforeAll, describe, expect, it } from "vitest";
import { HOST_ROLES } from "../../infra/hosts.js";
import type { OfflineRun } from "../../infra/offline-engine.js";
import type { Scenario } from "../../scenario/schema.js";
import { cloudConfigProblems } from "./cloud-init-checks.js";
import { named, OPENSTACK_TYPES as T, ofType, runStack } from "./openstack-stack-checks.js";

let run: OfflineRun;
let s: Scenario;
beforeAll(async () => {
  ({ run, scenario: s } = await runStack("ebpf", {
    "testbed:flavors": JSON.stringify({ create: true, hostCpuMHz: 3000 }),
    "testbed:linkMbps": "0",
    "testbed:hosts": JSON.stringify({ worker: { vcpus: 4, ramMiB: 8192, diskGiB: 80 } }),
  }));
});

describe("testbed:flavors.create", () => {
  it("creates one private flavor per role with the scenario's sizing and the 1500 MHz cap as a CPU quota", () => {
    const flavors = ofType(run, T.flavor);
    expect(flavors.map((f) => f.name)).toEqual(HOST_ROLES.map((r) => `lab-flavors-${r}`));
    for (const role of HOST_ROLES) {
      const f = named(run, T.flavor, `lab-flavors-${role}`).inputs;
      expect(f).toMatchObject({
        name: `testbed-ebpf-${role}`,
        vcpus: s.hosts[role].vcpus,
        ram: s.hosts[role].ramMiB,
        disk: s.hosts[role].diskGiB,
        isPublic: false,
        // 100 ms period; 1500 of 3000 MHz is half of it, per vCPU.
        extraSpecs: { "quota:cpu_period": "100000", "quota:cpu_quota": "50000" },
      });
      // By id: nova's flavor list leaves private flavors out, so a name would not resolve.
      expect(named(run, T.instance, `lab-servers-${role}`).inputs).toMatchObject({ flavorId: `lab-flavors-${role}-id` });
      expect(named(run, T.instance, `lab-servers-${role}`).inputs.flavorName).toBeUndefined();
    }
    expect(named(run, T.flavor, "lab-flavors-worker").inputs).toMatchObject({ vcpus: 4, ram: 8192, disk: 80 });
    expect(named(run, T.flavor, "lab-flavors-master").inputs).toMatchObject({ vcpus: 2, ram: 4096, disk: 40 });
    expect(named(run, T.flavor, "lab-flavors-client").inputs).toMatchObject({ vcpus: 1, ram: 2048, disk: 20 });
  });
});

describe("testbed:linkMbps 0", () => {
  it("declares no QoS policy, caps no port and shapes no NIC in a guest", () => {
    expect(ofType(run, T.qosPolicy)).toEqual([]);
    expect(ofType(run, T.qosRule)).toEqual([]);
    expect(ofType(run, T.port)).toHaveLength(10);
    expect(ofType(run, T.port).filter((p) => "qosPolicyId" in p.inputs)).toEqual([]);
    expect(run.resources.some((r) => r.type === "testbed:openstack:LinkQos")).toBe(false);
    for (const server of ofType(run, T.instance)) expect(String(server.inputs.userData), server.name).not.toContain("testbed-link-cap");
  });

  it("still renders valid user data", () => {
    for (const server of ofType(run, T.instance)) expect(cloudConfigProblems(server.inputs.userData as string), server.name).toEqual([]);
  });
});
