import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { HOST_ROLES, type CloudInitPart, type HostRole } from "../../infra/hosts.js";
import { labPlan } from "../../infra/openstack/address-plan.js";
import {
  BOOTSTRAP_FAILED_FILE,
  bootstrapHostnames,
  CLIENT_PACKAGES,
  HOST_SETUP_SCRIPT,
  LINK_CAP_SCRIPT,
  LINK_CAP_UNIT,
  mergeCloudInitParts,
  NIC_TABLE_FILE,
  renderCloudConfig,
  renderUserData as renderWithMacs,
  ROUTER_SYSCTL_FILE,
  WORKER_PACKAGES,
  type NicMacs,
  type UserDataScenario,
} from "../../infra/openstack/cloud-init.js";
import type { LabPlan } from "../../infra/openstack/address-plan.js";
import { TEST_MACS } from "../fixtures/scenario.js";
import { REMOTE_ARTIFACT_ROOT } from "../../infra/remote-files.js";
import { parseScenario, PLACEHOLDERS, type ScenarioInput } from "../../scenario/schema.js";
import { cloudConfigProblems, cloudInitSchema, embeddedScripts, shellcheck } from "./cloud-init-checks.js";

const renderUserData = (s: UserDataScenario, plan: LabPlan, role: HostRole, extra: CloudInitPart[] = [], macs: NicMacs = TEST_MACS) =>
  renderWithMacs(s, plan, role, macs, extra);
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
  it("forwards both families, and names its data NICs by MAC with its IPv6 next hops on them", () => {
    const s = scenario();
    const plan = labPlan(s);
    const doc = docOf(renderUserData(s, plan, "router"));
    const sysctl = fileOf(doc, ROUTER_SYSCTL_FILE)!.content;
    expect(sysctl).toMatch(/^net\.ipv4\.ip_forward = 1$/m);
    expect(sysctl).toMatch(/^net\.ipv6\.conf\.all\.forwarding = 1$/m);
    // MAC, stable name, the addresses the guest adds itself: the client side's next hop on the
    // client NIC, the data-center side's on the other.
    expect(fileOf(doc, NIC_TABLE_FILE)!.content).toBe(
      "fa:16:3e:00:00:0c tb-client 2001:2:0:10::12/64\nfa:16:3e:00:00:0d tb-dc 2001:2:0:20::12/64\n",
    );
    expect(fileOf(doc, HOST_SETUP_SCRIPT)!.content).toContain(`sysctl -p ${ROUTER_SYSCTL_FILE}`);
    expect(doc.runcmd).toContainEqual([HOST_SETUP_SCRIPT]);
  });

  it("follows the scenario's blocks and families", () => {
    const s = scenario({ network: { client: { ipv6: "2001:2:0:a0::/64" } } });
    const doc = docOf(renderUserData(s, labPlan(s), "router"));
    expect(fileOf(doc, NIC_TABLE_FILE)!.content).toContain("tb-client 2001:2:0:a0::12/64");

    const v4 = scenario({ families: ["ipv4"] });
    const v4doc = docOf(renderUserData(v4, labPlan(v4), "router"));
    expect(fileOf(v4doc, NIC_TABLE_FILE)!.content).toBe("fa:16:3e:00:00:0c tb-client\nfa:16:3e:00:00:0d tb-dc\n");
    expect(fileOf(v4doc, ROUTER_SYSCTL_FILE)!.content).not.toMatch(/ipv6/);
  });

  it("puts no forwarding on any other host", () => {
    const s = scenario();
    const plan = labPlan(s);
    for (const role of HOST_ROLES.filter((r) => r !== "router")) {
      expect(renderUserData(s, plan, role)).not.toContain("forwarding");
    }
  });
});

describe("data NICs named by MAC", () => {
  it("lists each host's data NICs with the MAC of its port and the stable name, management left alone", () => {
    const s = scenario();
    const plan = labPlan(s);
    const table = (role: HostRole) => fileOf(docOf(renderUserData(s, plan, role)), NIC_TABLE_FILE)!.content;
    expect(table("worker")).toBe("fa:16:3e:00:00:0d tb-dc\n");
    expect(table("master")).toBe("fa:16:3e:00:00:0d tb-dc\n");
    expect(table("client")).toBe("fa:16:3e:00:00:0c tb-client\n");
    expect(table("bastion")).toBe("");
  });

  it("refuses to render a host whose data port has no MAC", () => {
    const s = scenario();
    expect(() => renderUserData(s, labPlan(s), "worker", [], { client: TEST_MACS.client })).toThrow(/the worker's datacenter port has no MAC address/);
    expect(() => renderUserData(s, labPlan(s), "worker", [], { datacenter: "not-a-mac" })).toThrow(/no MAC address \("not-a-mac"\)/);
  });
});

describe("resolvers checked first", () => {
  it("checks at boot, before packages, that the names the host's bootstrap needs resolve, naming testbed:openstack.dnsNameservers", () => {
    const s = scenario({ openstack: { dnsNameservers: ["192.0.2.53"] } });
    const doc = docOf(renderUserData(s, labPlan(s), "master"));
    const check = String(doc.bootcmd![0]);
    for (const name of ["pkgs.k8s.io", "registry.k8s.io", "quay.io", "get.helm.sh", "helm.cilium.io"]) expect(check).toContain(name);
    expect(check).toContain("testbed:openstack.dnsNameservers (now: 192.0.2.53)");
    expect(check).toContain(BOOTSTRAP_FAILED_FILE);
  });

  it("asks each role for what it downloads: the receiver's registry and Debian on the worker", () => {
    const s = scenario();
    expect(bootstrapHostnames(s, "worker")).toEqual(["pkgs.k8s.io", "registry.k8s.io", "quay.io", "registry-1.docker.io", "deb.debian.org"]);
    expect(bootstrapHostnames(scenario({ receiver: { image: "ghcr.io/lab/ditg:1" } }), "worker")).toContain("ghcr.io");
    expect(bootstrapHostnames(s, "client")).toEqual([]);
  });
});

describe("the link cap in the guests (linkShaping guest)", () => {
  it("shapes exactly the measured NICs with tbf at linkMbps, and starts the unit at every boot", () => {
    const s = scenario({ linkMbps: 300 });
    const plan = labPlan(s);
    const capOf = (role: HostRole) => fileOf(docOf(renderUserData(s, plan, role)), LINK_CAP_SCRIPT)?.content;
    expect(capOf("client")).toMatch(/^tc qdisc replace dev tb-client root tbf rate 300000000bit /m);
    expect(capOf("router")).toMatch(/dev tb-client root tbf[^\n]*\ntc qdisc replace dev tb-dc root tbf/);
    expect(capOf("worker")).toMatch(/^tc qdisc replace dev tb-dc root tbf/m);
    // The master's data-center NIC is not on the measured path, the bastion has none.
    expect(capOf("master")).toBeUndefined();
    expect(capOf("bastion")).toBeUndefined();
    const worker = docOf(renderUserData(s, plan, "worker"));
    expect(fileOf(worker, `/etc/systemd/system/${LINK_CAP_UNIT}`)!.content).toMatch(/ExecStart=\/usr\/local\/sbin\/testbed-link-cap/);
    expect(fileOf(worker, HOST_SETUP_SCRIPT)!.content).toContain(`systemctl enable --now ${LINK_CAP_UNIT}`);
  });

  it("shapes nothing in the guests with linkShaping neutron or none, or a cap of 0", () => {
    for (const extra of [{ linkShaping: "neutron" as const }, { linkShaping: "none" as const }, { linkMbps: 0 }]) {
      const s = scenario(extra);
      const doc = renderUserData(s, labPlan(s), "worker");
      expect(doc, JSON.stringify(extra)).not.toContain("tbf");
      expect(doc).not.toContain(LINK_CAP_UNIT);
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
    // The resolver check comes first, then the part's own boot commands.
    expect(doc.bootcmd).toHaveLength(2);
    expect(String(doc.bootcmd![0])).toContain("getent ahosts");
    expect(doc.bootcmd![1]).toBe("swapoff -a");
    expect(doc.packages).toEqual(["chrony", "tcpdump", ...WORKER_PACKAGES, "containerd"]);
  });

  it("puts the hop probes' and the connection flush's tools on the worker, the probe's compiler on the client, from the archive", () => {
    const s = scenario();
    const packages = (role: "client" | "worker" | "router" | "master") => docOf(renderUserData(s, labPlan(s), role)).packages;
    expect(packages("worker")).toEqual(["chrony", "tcpdump", "clang", "gcc", "libc6-dev", "linux-libc-dev", "iproute2", "conntrack"]);
    expect(packages("client")).toEqual(["chrony", "tcpdump", "d-itg", "gcc", "libc6-dev"]);
    expect(packages("router")).toEqual(["chrony", "tcpdump"]);
    expect(packages("master")).toEqual(["chrony", "tcpdump"]);
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
