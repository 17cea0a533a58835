// What the OpenStack lab hands to the layers above: SSH connections through the bastion, addresses,
// interface names, and cloud-init parts merged into the right hosts.
import * as fs from "node:fs";
import * as path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { HOST_ROLES } from "../../infra/hosts.js";
import { readStackConfig, runOffline, type OfflineRun } from "../../infra/offline-engine.js";
import { cloudConfigProblems } from "./cloud-init-checks.js";
import { named, OPENSTACK_TYPES as T, plainStrings, PROJECT_DIR } from "./openstack-stack-checks.js";

const KEY = "offline-stand-in-private-key";
let run: OfflineRun;
beforeAll(async () => {
  const { values, secretKeys } = readStackConfig(PROJECT_DIR, "iptables", (p) => fs.readFileSync(p, "utf8"));
  run = await runOffline({
    stack: "iptables",
    config: { ...values, "testbed:openstack": JSON.stringify({ sshUser: "labuser" }) },
    secretKeys,
    program: path.join(PROJECT_DIR, "test/infra/openstack-access.program.ts"),
  });
});

type Connection = { host: string; user: string; privateKey: string; proxy?: { host: string; user: string; privateKey: string } };

describe("HostAccess", () => {
  it("is a secret connection for every host, carrying the private key", () => {
    const connections = run.outputs.connections as Record<string, { $secret?: Connection }>;
    expect(Object.keys(connections)).toEqual([...HOST_ROLES]);
    for (const role of HOST_ROLES) {
      const c = connections[role]!;
      expect(Object.keys(c), role).toEqual(["$secret"]);
      expect(c.$secret!.privateKey).toBe(KEY);
      expect(c.$secret!.user).toBe("labuser");
    }
    // The key appears nowhere in the clear: not in any resource, not in any output.
    expect(plainStrings([...run.resources.map((r) => r.inputs), run.outputs]).filter((v) => v.includes(KEY))).toEqual([]);
  });

  it("reaches the bastion at its floating IP and every other host at its management address through it", () => {
    const connections = run.outputs.connections as Record<string, { $secret: Connection }>;
    const bastion = run.outputs.bastionAddress as string;
    expect(bastion).toMatch(/^\d+\.\d+\.\d+\.\d+$/);
    expect(connections.bastion!.$secret).toEqual({ host: bastion, user: "labuser", privateKey: KEY });
    for (const role of HOST_ROLES.filter((r) => r !== "bastion")) {
      const c = connections[role]!.$secret;
      const management = (run.outputs.addresses as Record<string, { management: { ipv4: string } }>)[role]!.management.ipv4;
      expect(c.host, role).toBe(management);
      expect(c.host.startsWith("198.19.0.")).toBe(true);
      expect(c.proxy, role).toEqual({ host: bastion, user: "labuser", privateKey: KEY });
    }
  });

  it("gives addresses per network and family and the guest's interface names", () => {
    const addresses = run.outputs.addresses as Record<string, Record<string, Record<string, string>>>;
    expect(addresses.worker).toEqual({
      management: { ipv4: "198.19.0.14", ipv6: "2001:2:0:30::14" },
      datacenter: { ipv4: "198.18.1.14", ipv6: "2001:2:0:20::14" },
    });
    expect(addresses.router!.client).toEqual({ ipv4: "198.18.0.12", ipv6: "2001:2:0:10::12" });
    // Data NICs by the names the guests give them (matched by MAC); management keeps cloud-init's name.
    expect(run.outputs.interfaces).toEqual({
      bastion: {},
      client: { client: "tb-client" },
      router: { client: "tb-client", datacenter: "tb-dc" },
      master: { datacenter: "tb-dc" },
      worker: { datacenter: "tb-dc" },
    });
    const urns = run.outputs.serverUrns as Record<string, string>;
    for (const role of HOST_ROLES) expect(urns[role]).toMatch(new RegExp(`openstack:compute/instance:Instance::lab-servers-${role}$`));
  });

  it("merges the parts of other layers into exactly the hosts they are for", () => {
    const userData = (role: string) => named(run, T.instance, `lab-servers-${role}`).inputs.userData as string;
    expect(userData("master")).toContain("/var/lib/master-part");
    expect(userData("master")).toMatch(/- etcd-client$/m);
    expect(userData("worker")).toContain("/var/lib/worker-part");
    for (const role of ["bastion", "client", "router"]) expect(userData(role)).not.toMatch(/-part/);
    expect(userData("worker")).not.toContain("master-part");
    for (const role of ["master", "worker"]) expect(cloudConfigProblems(userData(role)), role).toEqual([]);
  });
});
