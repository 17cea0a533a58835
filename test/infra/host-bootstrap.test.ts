// What every host's own bootstrap checks before anything depends on it: at boot, that the names it
// downloads from resolve (a failure names testbed:openstack.dnsNameservers); then, over SSH, the
// readiness check that runs before any other command on the host. Both run for real with bash; the
// readiness check inside a network namespace with the host's data NIC, forwarding and link cap.
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { labPlan } from "../../infra/openstack/address-plan.js";
import { BOOTSTRAP_FAILED_FILE, dnsCheckScript, HOST_READY_MARKER, HOST_STATE_DIR } from "../../infra/openstack/cloud-init.js";
import { hostExpectations, hostReadyScript } from "../../infra/openstack/host-ready.js";
import { testScenario } from "../fixtures/scenario.js";

const work = fs.mkdtempSync(path.join(os.tmpdir(), "host-bootstrap-"));
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

/** A directory of stand-in commands, first on PATH. */
function stubs(name: string, commands: Record<string, string>): string {
  const dir = path.join(work, `bin-${name}`);
  fs.mkdirSync(dir, { recursive: true });
  for (const [cmd, body] of Object.entries(commands)) fs.writeFileSync(path.join(dir, cmd), `#!/usr/bin/env bash\n${body}\n`, { mode: 0o755 });
  return dir;
}

/** The script with the host's state directory moved under `root`. */
const relocate = (script: string, root: string) => script.replaceAll(HOST_STATE_DIR, path.join(root, HOST_STATE_DIR));

describe("the resolver check at boot", () => {
  const s = testScenario({ openstack: { dnsNameservers: ["192.0.2.53", "198.51.100.53"] } });
  // getent resolves every name but those in $UNRESOLVED; sleep does not wait.
  const bin = stubs("dns", {
    getent: 'for n in $UNRESOLVED; do [ "$2" = "$n" ] && exit 2; done; echo "198.18.0.1 STREAM $2"',
    sleep: "exit 0",
  });
  const check = (role: "master" | "worker" | "client", unresolved: string) => {
    const root = path.join(work, `dns-${role}-${unresolved.replace(/\W/g, "_")}`);
    const r = spawnSync("sh", ["-c", relocate(dnsCheckScript(s, role), root)], { encoding: "utf8", env: { ...process.env, PATH: `${bin}:${process.env.PATH}`, UNRESOLVED: unresolved } });
    const failed = path.join(root, BOOTSTRAP_FAILED_FILE);
    return { ...r, failed: fs.existsSync(failed) ? fs.readFileSync(failed, "utf8") : undefined };
  };

  it("leaves no failure when every name resolves", () => {
    const r = check("master", "");
    expect(r.status).toBe(0);
    expect(r.failed).toBeUndefined();
  });

  it("names what does not resolve, the key that sets the resolvers and their values", () => {
    const r = check("master", "pkgs.k8s.io get.helm.sh");
    expect(r.failed).toMatch(/resolves none of: pkgs\.k8s\.io get\.helm\.sh\./);
    expect(r.failed).toContain("testbed:openstack.dnsNameservers (now: 192.0.2.53, 198.51.100.53)");
    expect(r.stderr).toContain(r.failed!.trim());
  });

  it("checks each role's own names: the worker's registry, not the master's Helm", () => {
    expect(check("worker", "get.helm.sh").failed).toBeUndefined();
    expect(check("worker", "registry-1.docker.io").failed).toMatch(/registry-1\.docker\.io/);
    expect(check("client", "pkgs.k8s.io").failed).toBeUndefined();
  });
});

const canNetns = process.platform === "linux" && process.getuid?.() === 0;

describe.skipIf(!canNetns)("the readiness check of a host (a network namespace as the router)", () => {
  const s = testScenario();
  const plan = labPlan(s);
  const ns = `tbhr-${randomBytes(3).toString("hex")}`;
  const root = path.join(work, "router");
  const sh = (...argv: string[]) => {
    const r = spawnSync(argv[0]!, argv.slice(1), { encoding: "utf8" });
    if (r.status !== 0) throw new Error(`${argv.join(" ")}: ${r.stderr}`);
  };
  const bin = stubs("ready", { "cloud-init": 'exit "${CLOUD_INIT_STATUS:-0}"' });
  const ready = (env: Record<string, string> = {}) =>
    spawnSync("ip", ["netns", "exec", ns, "bash", "-c", relocate(hostReadyScript(hostExpectations(s, plan, "router")), root)], {
      encoding: "utf8",
      env: { ...process.env, PATH: `${bin}:${process.env.PATH}`, ...env },
    });

  beforeAll(() => {
    sh("ip", "netns", "add", ns);
    for (const nic of ["tb-client", "tb-dc"]) {
      sh("ip", "-n", ns, "link", "add", nic, "type", "veth", "peer", "name", `${nic}-p`);
      sh("ip", "netns", "exec", ns, "tc", "qdisc", "replace", "dev", nic, "root", "tbf", "rate", "500mbit", "burst", "131072", "latency", "50ms");
    }
    sh("ip", "netns", "exec", ns, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1");
    fs.mkdirSync(path.dirname(path.join(root, HOST_READY_MARKER)), { recursive: true });
    fs.writeFileSync(path.join(root, HOST_READY_MARKER), "nics=tb-client,tb-dc\nlinkcap=500mbit\n");
  });
  afterAll(() => {
    spawnSync("ip", ["netns", "del", ns]);
  });

  it("passes on a router with its NICs, forwarding and the link cap, and prints the setup's marker", () => {
    const r = ready();
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    expect(r.stdout).toBe("nics=tb-client,tb-dc\nlinkcap=500mbit\n");
  });

  it("reports a failed bootstrap's own reason first (e.g. the resolvers)", () => {
    const failed = path.join(root, BOOTSTRAP_FAILED_FILE);
    fs.writeFileSync(failed, "testbed: this host resolves none of: pkgs.k8s.io.\n");
    try {
      const r = ready({ CLOUD_INIT_STATUS: "1" });
      expect(r.status).toBe(1);
      expect(r.stderr).toBe("the router's bootstrap failed:\ntestbed: this host resolves none of: pkgs.k8s.io.\n");
    } finally {
      fs.rmSync(failed);
    }
  });

  it("refuses a host without forwarding, naming the sysctl", () => {
    sh("ip", "netns", "exec", ns, "sysctl", "-q", "-w", "net.ipv6.conf.all.forwarding=0");
    try {
      const r = ready();
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(/the router has net\.ipv6\.conf\.all\.forwarding = 0, the measured path needs 1/);
    } finally {
      sh("ip", "netns", "exec", ns, "sysctl", "-q", "-w", "net.ipv6.conf.all.forwarding=1");
    }
  });

  it("refuses a measured NIC without the link cap", () => {
    sh("ip", "netns", "exec", ns, "tc", "qdisc", "del", "dev", "tb-dc", "root");
    try {
      const r = ready();
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(/the router's tb-dc carries no link cap \(tbf\)/);
    } finally {
      sh("ip", "netns", "exec", ns, "tc", "qdisc", "replace", "dev", "tb-dc", "root", "tbf", "rate", "500mbit", "burst", "131072", "latency", "50ms");
    }
  });

  it("refuses a host whose data NIC is not under its stable name", () => {
    sh("ip", "-n", ns, "link", "set", "tb-client", "name", "enp2s0");
    try {
      const r = ready();
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(/the router has no NIC named tb-client; its NICs are: .*enp2s0/);
    } finally {
      sh("ip", "-n", ns, "link", "set", "enp2s0", "name", "tb-client");
    }
  });

  it("refuses a host whose setup never finished", () => {
    const marker = path.join(root, HOST_READY_MARKER);
    fs.renameSync(marker, `${marker}.away`);
    try {
      const r = ready({ CLOUD_INIT_STATUS: "1" });
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(/the router's setup did not finish \(cloud-init status 1\)/);
    } finally {
      fs.renameSync(`${marker}.away`, marker);
    }
  });
});
