import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { HOST_ROLES, type CloudInitPart } from "../../infra/hosts.js";
import { labPlan } from "../../infra/openstack/address-plan.js";
import {
  CLIENT_PACKAGES,
  mergeCloudInitParts,
  renderCloudConfig,
  renderUserData,
  ROUTER_NETPLAN_FILE,
  ROUTER_SYSCTL_FILE,
} from "../../infra/openstack/cloud-init.js";
import { REMOTE_ARTIFACT_ROOT } from "../../infra/remote-files.js";
import { parseScenario, PLACEHOLDERS, type ScenarioInput } from "../../scenario/schema.js";
import { cloudConfigProblems, cloudInitSchema, embeddedScripts, shellcheck } from "./cloud-init-checks.js";

const scenario = (extra: Partial<ScenarioInput> = {}) => parseScenario({ dataplane: "ebpf", ...PLACEHOLDERS, ...extra });

type WrittenFile = { path: string; content: string; permissions?: string };
type Doc = { packages?: string[]; write_files?: WrittenFile[]; runcmd?: unknown[]; bootcmd?: unknown[]; package_update?: boolean };
const docOf = (userData: string) => parse(userData) as Doc;
const fileOf = (doc: Doc, p: string) => doc.write_files?.find((f) => f.path === p);

/** A part shaped like the cluster layer's node preparation: a shebang script, bootcmd and runcmd. */
const nodePrepLike: CloudInitPart = {
  packages: ["containerd", "chrony"],
  write_files: [
    {
      path: "/usr/local/sbin/prepare-node",
      permissions: "0755",
      content: '#!/bin/bash\nset -euo pipefail\nmodprobe br_netfilter\nfor m in overlay br_netfilter; do\n  echo "$m" >> /etc/modules-load.d/k8s.conf\ndone\n',
    },
  ],
  bootcmd: ["swapoff -a"],
  runcmd: [["/usr/local/sbin/prepare-node"], 'test -e /var/lib/testbed || mkdir -p /var/lib/testbed'],
};

describe("the validators themselves", () => {
  it("cloud-init's schema check rejects a malformed document", () => {
    expect(cloudInitSchema("#cloud-config\npackages: 5\n").ok).toBe(false);
    expect(cloudInitSchema("#cloud-config\npackages: [chrony]\n").ok).toBe(true);
  });

  it("shellcheck rejects an unquoted expansion and runcmd is checked as the script cloud-init writes", () => {
    expect(shellcheck("#!/bin/sh\nrm -rf $dir\n").ok).toBe(false);
    const scripts = embeddedScripts(renderCloudConfig({ runcmd: [["echo", "it's"], "echo ok"] }));
    // cloud-init's own shellify quotes argv entries and prepends #!/bin/sh.
    expect(scripts).toEqual([{ name: "runcmd", script: "#!/bin/sh\n'echo' 'it'\\''s'\necho ok\n" }]);
  });
});

describe("user data of every host", () => {
  for (const families of [["ipv4", "ipv6"], ["ipv4"], ["ipv6"]] as const) {
    it(`is valid cloud-config with clean scripts for every role (families ${families.join("+")})`, () => {
      const s = scenario({ families: [...families] });
      const plan = labPlan(s);
      for (const role of HOST_ROLES) {
        const extra = role === "master" || role === "worker" ? [nodePrepLike] : [];
        const userData = renderUserData(s, plan, role, extra);
        expect(userData.startsWith("#cloud-config\n")).toBe(true);
        expect(cloudConfigProblems(userData), role).toEqual([]);
      }
    });
  }

  it("creates the artifact directory for the SSH user on every host and updates the package index", () => {
    const s = scenario({ openstack: { sshUser: "labuser" } });
    const plan = labPlan(s);
    for (const role of HOST_ROLES) {
      const doc = docOf(renderUserData(s, plan, role));
      expect(doc.package_update).toBe(true);
      expect(doc.runcmd).toContainEqual(["install", "-d", "-m", "0755", REMOTE_ARTIFACT_ROOT]);
      expect(doc.runcmd).toContainEqual(["chown", "labuser:", REMOTE_ARTIFACT_ROOT]);
      expect(fileOf(doc, "/etc/apt/apt.conf.d/20auto-upgrades")?.content).toMatch(/Unattended-Upgrade "0"/);
    }
  });

  it("installs D-ITG on the client only", () => {
    const s = scenario();
    const plan = labPlan(s);
    for (const role of HOST_ROLES) {
      const packages = docOf(renderUserData(s, plan, role)).packages ?? [];
      expect(packages.includes(CLIENT_PACKAGES[0]), role).toBe(role === "client");
    }
  });
});

describe("the router VM", () => {
  it("forwards both families and configures its IPv6 next hops on the data NICs", () => {
    const s = scenario();
    const plan = labPlan(s);
    const doc = docOf(renderUserData(s, plan, "router"));
    const sysctl = fileOf(doc, ROUTER_SYSCTL_FILE)!.content;
    expect(sysctl).toMatch(/^net\.ipv4\.ip_forward = 1$/m);
    expect(sysctl).toMatch(/^net\.ipv6\.conf\.all\.forwarding = 1$/m);
    const netplan = parse(fileOf(doc, ROUTER_NETPLAN_FILE)!.content) as { network: { version: number; ethernets: Record<string, { addresses: string[] }> } };
    // The client NIC (ens4) carries the router's client-side next hop, the data-center NIC (ens5) the other.
    expect(netplan.network).toEqual({
      version: 2,
      ethernets: { ens4: { addresses: ["2001:2:0:10::12/64"] }, ens5: { addresses: ["2001:2:0:20::12/64"] } },
    });
    expect(fileOf(doc, ROUTER_NETPLAN_FILE)!.permissions).toBe("0600");
    expect(doc.runcmd).toContainEqual(["sysctl", "-p", ROUTER_SYSCTL_FILE]);
    expect(doc.runcmd).toContainEqual(["netplan", "apply"]);
  });

  it("follows the scenario's blocks and families", () => {
    const s = scenario({ network: { client: { ipv6: "2001:2:0:a0::/64" } } });
    const doc = docOf(renderUserData(s, labPlan(s), "router"));
    expect(fileOf(doc, ROUTER_NETPLAN_FILE)!.content).toContain("2001:2:0:a0::12/64");

    const v4 = scenario({ families: ["ipv4"] });
    const v4doc = docOf(renderUserData(v4, labPlan(v4), "router"));
    expect(fileOf(v4doc, ROUTER_NETPLAN_FILE)).toBeUndefined();
    expect(fileOf(v4doc, ROUTER_SYSCTL_FILE)!.content).not.toMatch(/ipv6/);
    expect(v4doc.runcmd).not.toContainEqual(["netplan", "apply"]);
  });

  it("puts no forwarding on any other host", () => {
    const s = scenario();
    const plan = labPlan(s);
    for (const role of HOST_ROLES.filter((r) => r !== "router")) {
      expect(renderUserData(s, plan, role)).not.toContain("forwarding");
    }
  });
});

describe("merging parts", () => {
  it("keeps the order of parts and concatenates lists, packages once each", () => {
    const merged = mergeCloudInitParts([
      { packages: ["a", "b"], runcmd: ["echo 1"], bootcmd: ["echo b1"] },
      { packages: ["b", "c"], runcmd: ["echo 2", ["echo", "3"]], write_files: [{ path: "/x", content: "x\n" }] },
    ]);
    expect(merged).toEqual({
      packages: ["a", "b", "c"],
      write_files: [{ path: "/x", content: "x\n" }],
      bootcmd: ["echo b1"],
      runcmd: ["echo 1", "echo 2", ["echo", "3"]],
    });
  });

  it("runs the lab's own steps before a layer's parts", () => {
    const s = scenario();
    const doc = docOf(renderUserData(s, labPlan(s), "worker", [nodePrepLike]));
    const runcmd = doc.runcmd!;
    expect(runcmd.findIndex((c) => JSON.stringify(c).includes(REMOTE_ARTIFACT_ROOT))).toBeLessThan(
      runcmd.findIndex((c) => JSON.stringify(c).includes("prepare-node")),
    );
    expect(doc.bootcmd).toEqual(["swapoff -a"]);
    expect(doc.packages).toEqual(["chrony", "tcpdump", "containerd"]);
  });

  it("refuses two parts that write one file", () => {
    const s = scenario();
    const clash: CloudInitPart = { write_files: [{ path: "/etc/apt/apt.conf.d/20auto-upgrades", content: "x\n" }] };
    expect(() => renderUserData(s, labPlan(s), "master", [clash])).toThrow(/two cloud-init parts write \/etc\/apt\/apt\.conf\.d\/20auto-upgrades/);
  });

  it("reports a part whose script shellcheck rejects", () => {
    const s = scenario();
    const bad: CloudInitPart = { runcmd: ["cd $HOME_DIR_UNQUOTED && ls"] };
    const problems = cloudConfigProblems(renderUserData(s, labPlan(s), "worker", [bad]));
    expect(problems.join("\n")).toMatch(/shellcheck runcmd:.*SC2086/s);
  });
});
