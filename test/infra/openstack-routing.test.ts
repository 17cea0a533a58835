// The lab's data-path addressing on a real kernel: network namespaces stand for the client, the
// router VM, the master and the worker, bridges for the two data networks. Each host's data NICs
// appear under PCI-slot names of a q35 machine (enp2s0, ...) with the MACs of their ports, and each
// host runs its rendered first-boot setup, which must rename them to the stable names; netplan's
// own generator reads the file the setup writes together with the one cloud-init would have
// written. Each host then gets exactly what the plan says it receives (fixed IPs, DHCP and
// network_data.json routes); the router gets its forwarding sysctls and IPv6 next hops. Then TCP
// crosses client -> router -> worker in both families. Addresses are the scenario's defaults, inside
// 198.18.0.0/15 and 2001:2::/48; nothing leaves the namespaces, which are removed afterwards.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import type { HostRole } from "../../infra/hosts.js";
import { deliveredRoutes, hostAddress, labPlan, type LabPlan } from "../../infra/openstack/address-plan.js";
import {
  BOOTSTRAP_FAILED_FILE,
  HOST_READY_MARKER,
  HOST_SETUP_SCRIPT,
  HOST_STATE_DIR,
  NIC_NETPLAN_FILE,
  NIC_TABLE_FILE,
  renderUserData,
  ROUTER_SYSCTL_FILE,
} from "../../infra/openstack/cloud-init.js";
import { TEST_MACS } from "../fixtures/scenario.js";
import type { Family } from "../../scenario/cidr.js";
import { parseScenario, PLACEHOLDERS } from "../../scenario/schema.js";

const canRun = process.platform === "linux" && process.getuid?.() === 0;
const ROLES: HostRole[] = ["client", "router", "master", "worker"];
const prefix = `osrt${randomBytes(2).toString("hex")}`;
const ns = (role: HostRole | "sw") => `${prefix}-${role}`;

function sh(argv: string[], allowFailure = false): { status: number | null; out: string } {
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: "utf8", timeout: 30_000 });
  const out = `${r.stdout ?? ""}${r.stderr ?? ""}`;
  if (!allowFailure && r.status !== 0) throw new Error(`${argv.join(" ")} failed: ${out}`);
  return { status: r.status, out };
}

const LISTENER = String.raw`
const net = require("node:net");
const [host, port] = process.argv.slice(1);
net.createServer((c) => { c.end(c.remoteAddress); }).listen({ host, port: Number(port) }, () => console.log("ready"));
`;
const PROBE = String.raw`
const net = require("node:net");
const [host, port] = process.argv.slice(1);
const c = net.connect({ host, port: Number(port), timeout: 2000 });
let data = "";
c.on("data", (d) => (data += d));
c.on("end", () => { console.log(JSON.stringify({ ok: true, seenAs: data, local: c.localAddress })); process.exit(0); });
c.on("timeout", () => { console.log(JSON.stringify({ ok: false, error: "timeout" })); process.exit(0); });
c.on("error", (e) => { console.log(JSON.stringify({ ok: false, error: e.code })); process.exit(0); });
`;

const listeners: ChildProcess[] = [];
async function listen(role: HostRole, host: string, port: number): Promise<void> {
  const child = spawn("ip", ["netns", "exec", ns(role), process.execPath, "-e", LISTENER, host, String(port)], { stdio: ["ignore", "pipe", "pipe"] });
  listeners.push(child);
  // Until it says it listens or exits: no deadline, which a loaded host's Node start-up would lose to.
  await new Promise<void>((resolve, reject) => {
    child.stdout.on("data", (d: Buffer) => {
      if (d.toString().includes("ready")) resolve();
    });
    child.once("exit", (code) => reject(new Error(`listener on ${host}:${port} exited with ${code}`)));
  });
}

function probe(role: HostRole, host: string, port: number): { ok: boolean; seenAs?: string; local?: string; error?: string } {
  const out = sh(["ip", "netns", "exec", ns(role), process.execPath, "-e", PROBE, host, String(port)]).out.trim();
  return JSON.parse(out.split("\n").pop()!) as { ok: boolean; seenAs?: string; local?: string; error?: string };
}

const s = parseScenario({ dataplane: "ebpf", ...PLACEHOLDERS });
const plan: LabPlan = labPlan(s);
// Every host's data ports get MACs of their own (the last byte numbers the host), as Neutron's would.
const HOST_BYTE: Record<HostRole, string> = { bastion: "10", client: "11", router: "12", master: "13", worker: "14" };
const macsOf = (role: HostRole) => ({
  client: TEST_MACS.client.replace(/..$/, HOST_BYTE[role]).replace(":00:00:", ":0c:00:"),
  datacenter: TEST_MACS.datacenter.replace(/..$/, HOST_BYTE[role]).replace(":00:00:", ":0d:00:"),
});
type Doc = { write_files: { path: string; content: string }[] };
const docOf = (role: HostRole) => parse(renderUserData(s, plan, role, macsOf(role))) as Doc;
const fileOf = (role: HostRole, p: string) => docOf(role).write_files.find((f) => f.path === p)?.content;
/** The kernel's name of a data NIC on libvirt's q35 machine type: management is enp1s0. */
const q35Name = (nic: number) => `enp${nic + 1}s0`;
const addr = (role: HostRole, network: "client" | "datacenter", family: Family) => hostAddress(plan, role, network, family)!;
const unmapped = (a: string) => a.replace(/^::ffff:/, "");

// Each host's files live under its own root here; the setup script is the rendered one with its
// paths moved there. `netplan apply` is netplan's real generator over that root, beside the file
// cloud-init would have written from network_data.json (ids = kernel names, set-name to the same).
const workDir = fs.mkdtempSync(path.join(os.tmpdir(), "testbed-nics-"));
const root = (role: HostRole) => path.join(workDir, role);
const shims = path.join(workDir, "bin");
const relocate = (script: string, dir: string) => {
  const moved = [NIC_TABLE_FILE, NIC_NETPLAN_FILE, ROUTER_SYSCTL_FILE, HOST_STATE_DIR];
  return script.replace(new RegExp(moved.map((p) => p.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).join("|"), "g"), (p) => path.join(dir, p));
};

function cloudInitNetplan(role: HostRole): string {
  const ethernets = plan.ports
    .filter((p) => p.role === role && p.network !== "management")
    .map((p) => {
      const id = q35Name(p.nic);
      return `        ${id}:\n            dhcp4: true\n            match:\n                macaddress: ${macsOf(role)[p.network as "client" | "datacenter"]}\n            mtu: 1450\n            set-name: ${id}\n`;
    });
  return `network:\n    ethernets:\n${ethernets.join("")}    version: 2\n`;
}

function runHostSetup(role: HostRole): void {
  const dir = root(role);
  fs.mkdirSync(path.join(dir, "etc/netplan"), { recursive: true });
  fs.mkdirSync(path.join(dir, "etc/testbed"), { recursive: true });
  fs.mkdirSync(path.join(dir, "etc/sysctl.d"), { recursive: true });
  fs.writeFileSync(path.join(dir, "etc/netplan/50-cloud-init.yaml"), cloudInitNetplan(role), { mode: 0o600 });
  for (const f of docOf(role).write_files.filter((w) => w.path === NIC_TABLE_FILE || w.path === ROUTER_SYSCTL_FILE)) {
    fs.writeFileSync(path.join(dir, f.path), f.content);
  }
  fs.mkdirSync(shims, { recursive: true });
  // netplan apply: the generator over this host's root; systemctl (the link cap unit) is not there.
  fs.writeFileSync(path.join(shims, "netplan"), `#!/bin/sh\n[ "$1" = apply ] && exec netplan-real generate --root-dir "$NETPLAN_ROOT"\nexit 1\n`, { mode: 0o755 });
  fs.writeFileSync(path.join(shims, "systemctl"), "#!/bin/sh\nexit 0\n", { mode: 0o755 });
  fs.rmSync(path.join(shims, "netplan-real"), { force: true });
  fs.symlinkSync(spawnSync("sh", ["-c", "command -v netplan"], { encoding: "utf8" }).stdout.trim(), path.join(shims, "netplan-real"));
  const script = relocate(fileOf(role, HOST_SETUP_SCRIPT)!, dir);
  const r = spawnSync("ip", ["netns", "exec", ns(role), "bash", "-c", script], {
    encoding: "utf8",
    env: { ...process.env, PATH: `${shims}:${process.env.PATH}`, NETPLAN_ROOT: dir },
  });
  if (r.status !== 0) throw new Error(`the ${role}'s setup failed: ${r.stdout}${r.stderr}`);
}

// Skipped unless root on Linux: it creates network namespaces, veth pairs and bridges.
describe.skipIf(!canRun)("the data path's addressing on a real kernel (root on Linux only: network namespaces)", () => {
  beforeAll(() => {
    for (const role of [...ROLES, "sw" as const]) sh(["ip", "netns", "add", ns(role)]);
    for (const network of ["client", "datacenter"] as const) {
      sh(["ip", "-n", ns("sw"), "link", "add", `br-${network}`, "type", "bridge"]);
      sh(["ip", "-n", ns("sw"), "link", "set", `br-${network}`, "up"]);
    }
    for (const role of ROLES) {
      sh(["ip", "-n", ns(role), "link", "set", "lo", "up"]);
      // No forwarding until the router's rendered sysctls say so.
      sh(["ip", "netns", "exec", ns(role), "sysctl", "-q", "-w", "net.ipv4.ip_forward=0", "net.ipv6.conf.all.forwarding=0"]);
      for (const port of plan.ports.filter((p) => p.role === role && p.network !== "management")) {
        const peer = `${role}-${port.network === "client" ? "c" : "d"}`;
        const kernelName = q35Name(port.nic);
        const mac = macsOf(role)[port.network as "client" | "datacenter"];
        sh(["ip", "link", "add", kernelName, "netns", ns(role), "address", mac, "type", "veth", "peer", "name", peer, "netns", ns("sw")]);
        sh(["ip", "-n", ns("sw"), "link", "set", peer, "master", `br-${port.network}`, "up"]);
      }
      runHostSetup(role);
      for (const port of plan.ports.filter((p) => p.role === role && p.network !== "management")) {
        const name = port.interfaceName!;
        for (const fixed of port.fixedIps) {
          const length = plan.subnets.find((sn) => sn.network === port.network && sn.family === fixed.family)!.cidr.split("/")[1];
          sh(["ip", "-n", ns(role), "addr", "add", `${fixed.address}/${length}`, "dev", name, ...(fixed.family === "ipv6" ? ["nodad"] : [])]);
        }
      }
      // The routes Neutron hands this host: IPv4 by DHCP (metric 100 under netplan), IPv6 from network_data.json.
      for (const r of deliveredRoutes(plan, role).filter((x) => x.destination !== "default")) {
        const metric = r.source === "dhcp" ? ["metric", "100"] : [];
        sh(["ip", "-n", ns(role), r.family === "ipv6" ? "-6" : "-4", "route", "add", r.destination, "via", r.via, "dev", r.interfaceName!, ...metric]);
      }
    }
    // The router's IPv6 next hops, from the netplan file its setup wrote (networkd would add them).
    const netplan = parse(fs.readFileSync(path.join(root("router"), NIC_NETPLAN_FILE), "utf8")) as {
      network: { ethernets: Record<string, { "set-name": string; addresses?: string[] }> };
    };
    for (const def of Object.values(netplan.network.ethernets)) {
      for (const a of def.addresses ?? []) sh(["ip", "-n", ns("router"), "addr", "add", a, "dev", def["set-name"], "nodad"]);
    }
  });

  afterAll(async () => {
    for (const l of listeners) l.kill("SIGTERM");
    for (const role of [...ROLES, "sw" as const]) sh(["ip", "netns", "del", ns(role)], true);
    fs.rmSync(workDir, { recursive: true, force: true });
  });

  it("renames every data NIC from its PCI-slot name to the stable name, by MAC, and records it", () => {
    for (const role of ROLES) {
      const links = sh(["ip", "-n", ns(role), "-o", "link", "show"]).out;
      for (const port of plan.ports.filter((p) => p.role === role && p.network !== "management")) {
        expect(links, role).toContain(`${port.interfaceName}@`);
        expect(links, role).not.toContain(`${q35Name(port.nic)}@`);
        expect(sh(["ip", "-n", ns(role), "link", "show", port.interfaceName!]).out).toContain(macsOf(role)[port.network as "client" | "datacenter"]);
      }
      expect(fs.readFileSync(path.join(root(role), HOST_READY_MARKER), "utf8")).toMatch(/^nics=tb-/m);
    }
  });

  it("amends cloud-init's own definitions: netplan's generator keeps one NIC per MAC, with the stable name", () => {
    for (const role of ROLES) {
      const generated = path.join(root(role), "run/systemd/network");
      for (const port of plan.ports.filter((p) => p.role === role && p.network !== "management")) {
        const id = q35Name(port.nic);
        const link = fs.readFileSync(path.join(generated, `10-netplan-${id}.link`), "utf8");
        expect(link).toContain(`Name=${port.interfaceName}`);
        expect(link).toContain(macsOf(role)[port.network as "client" | "datacenter"]);
        const network = fs.readFileSync(path.join(generated, `10-netplan-${id}.network`), "utf8");
        expect(network).toMatch(new RegExp(`^Name=${port.interfaceName}$`, "m"));
        // What cloud-init configured stays: DHCP and the MTU.
        expect(network).toContain("DHCP=ipv4");
        expect(network).toContain("MTUBytes=1450");
      }
      // No second definition of a NIC under its stable name.
      expect(fs.readdirSync(generated).filter((f) => f.includes("tb-"))).toEqual([]);
    }
    expect(fs.readFileSync(path.join(root("router"), "run/systemd/network/10-netplan-enp3s0.network"), "utf8")).toContain("Address=2001:2:0:20::12/64");
  });

  it("stops at a NIC it cannot find, and says which", () => {
    const dir = path.join(workDir, "missing");
    fs.mkdirSync(path.join(dir, "etc/testbed"), { recursive: true });
    const script = relocate(fileOf("worker", HOST_SETUP_SCRIPT)!, dir);
    fs.writeFileSync(path.join(dir, NIC_TABLE_FILE), "fa:16:3e:ff:ff:ff tb-dc\n");
    const r = spawnSync("ip", ["netns", "exec", ns("worker"), "bash", "-c", script], { encoding: "utf8", env: { ...process.env, PATH: `${shims}:${process.env.PATH}` } });
    expect(r.status).not.toBe(0);
    expect(fs.readFileSync(path.join(dir, BOOTSTRAP_FAILED_FILE), "utf8")).toMatch(/no NIC has the MAC fa:16:3e:ff:ff:ff of the port the tb-dc NIC belongs to/);
    expect(fs.existsSync(path.join(dir, HOST_READY_MARKER))).toBe(false);
  });

  it("accepts the router's IPv4 route through itself, which its connected route outranks", () => {
    const route = sh(["ip", "-n", ns("router"), "route", "get", addr("worker", "datacenter", "ipv4")]).out;
    expect(route).toMatch(/ dev tb-dc /);
    expect(route).not.toMatch(/ via /);
  });

  it("refuses an IPv6 route through the router's own address: why its next hops are not Neutron fixed IPs", () => {
    const r = sh(
      ["ip", "-n", ns("router"), "-6", "route", "add", s.network.client.ipv6, "via", addr("router", "datacenter", "ipv6"), "dev", "tb-dc", "metric", "2048"],
      true,
    );
    expect(r.status).not.toBe(0);
    expect(r.out).toMatch(/Gateway can not be a local address/);
  });

  it("carries TCP from the client to the worker only once the router's rendered sysctls are applied, in both families", async () => {
    // The router's setup applied them; take them back to see that they are what carries the traffic.
    expect(sh(["ip", "netns", "exec", ns("router"), "sysctl", "-n", "net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"]).out.split("\n").slice(0, 2)).toEqual(["1", "1"]);
    sh(["ip", "netns", "exec", ns("router"), "sysctl", "-q", "-w", "net.ipv4.ip_forward=0", "net.ipv6.conf.all.forwarding=0"]);
    await listen("worker", "::", 31000);
    for (const family of ["ipv4", "ipv6"] as const) {
      expect(probe("client", addr("worker", "datacenter", family), 31000).ok, `${family} before forwarding`).toBe(false);
    }
    for (const line of fileOf("router", ROUTER_SYSCTL_FILE)!.split("\n").filter((l) => l && !l.startsWith("#"))) {
      sh(["ip", "netns", "exec", ns("router"), "sysctl", "-q", "-w", line.replaceAll(" ", "")]);
    }
    for (const family of ["ipv4", "ipv6"] as const) {
      const r = probe("client", addr("worker", "datacenter", family), 31000);
      expect(r.ok, `${family}: ${r.error}`).toBe(true);
      // Routed, not translated: the worker sees the client's own address (externalTrafficPolicy=Local keeps it).
      expect(unmapped(r.seenAs!)).toBe(addr("client", "client", family));
    }
  });

  it("routes the other way too: the master reaches the client through the router", async () => {
    await listen("client", "::", 31001);
    for (const family of ["ipv4", "ipv6"] as const) {
      const r = probe("master", addr("client", "client", family), 31001);
      expect(r.ok, `${family}: ${r.error}`).toBe(true);
      expect(unmapped(r.seenAs!)).toBe(addr("master", "datacenter", family));
    }
  });
});
