// The lab's data-path addressing on a real kernel: network namespaces stand for the client, the
// router VM, the master and the worker, bridges for the two data networks. Each host gets exactly
// what the plan says it receives (fixed IPs, DHCP and network_data.json routes); the router gets its
// rendered cloud-init (sysctls, IPv6 next hops). Then TCP crosses client -> router -> worker in both
// families. Addresses are the scenario's defaults, inside 198.18.0.0/15 and 2001:2::/48; nothing
// leaves the namespaces, which are removed afterwards.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import type { HostRole } from "../../infra/hosts.js";
import { deliveredRoutes, hostAddress, labPlan, type LabPlan } from "../../infra/openstack/address-plan.js";
import { renderUserData, ROUTER_NETPLAN_FILE, ROUTER_SYSCTL_FILE } from "../../infra/openstack/cloud-init.js";
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
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`listener on ${host}:${port} did not start`)), 10_000);
    child.stdout.on("data", (d: Buffer) => {
      if (d.toString().includes("ready")) {
        clearTimeout(timer);
        resolve();
      }
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
const routerDoc = parse(renderUserData(s, plan, "router")) as { write_files: { path: string; content: string }[] };
const routerFile = (p: string) => routerDoc.write_files.find((f) => f.path === p)!.content;
const addr = (role: HostRole, network: "client" | "datacenter", family: Family) => hostAddress(plan, role, network, family)!;
const unmapped = (a: string) => a.replace(/^::ffff:/, "");

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
        sh(["ip", "link", "add", port.interfaceName, "netns", ns(role), "type", "veth", "peer", "name", peer, "netns", ns("sw")]);
        sh(["ip", "-n", ns("sw"), "link", "set", peer, "master", `br-${port.network}`, "up"]);
        sh(["ip", "-n", ns(role), "link", "set", port.interfaceName, "up"]);
        for (const fixed of port.fixedIps) {
          const length = plan.subnets.find((sn) => sn.network === port.network && sn.family === fixed.family)!.cidr.split("/")[1];
          sh(["ip", "-n", ns(role), "addr", "add", `${fixed.address}/${length}`, "dev", port.interfaceName, ...(fixed.family === "ipv6" ? ["nodad"] : [])]);
        }
      }
      // The routes Neutron hands this host: IPv4 by DHCP (metric 100 under netplan), IPv6 from network_data.json.
      for (const r of deliveredRoutes(plan, role).filter((x) => x.destination !== "default")) {
        const metric = r.source === "dhcp" ? ["metric", "100"] : [];
        sh(["ip", "-n", ns(role), r.family === "ipv6" ? "-6" : "-4", "route", "add", r.destination, "via", r.via, "dev", r.interfaceName, ...metric]);
      }
    }
    // The router's IPv6 next hops, from the netplan file its cloud-init writes.
    const netplan = parse(routerFile(ROUTER_NETPLAN_FILE)) as { network: { ethernets: Record<string, { addresses: string[] }> } };
    for (const [ifname, { addresses }] of Object.entries(netplan.network.ethernets)) {
      for (const a of addresses) sh(["ip", "-n", ns("router"), "addr", "add", a, "dev", ifname, "nodad"]);
    }
  });

  afterAll(async () => {
    for (const l of listeners) l.kill("SIGTERM");
    for (const role of [...ROLES, "sw" as const]) sh(["ip", "netns", "del", ns(role)], true);
  });

  it("accepts the router's IPv4 route through itself, which its connected route outranks", () => {
    const route = sh(["ip", "-n", ns("router"), "route", "get", addr("worker", "datacenter", "ipv4")]).out;
    expect(route).toMatch(/ dev ens5 /);
    expect(route).not.toMatch(/ via /);
  });

  it("refuses an IPv6 route through the router's own address: why its next hops are not Neutron fixed IPs", () => {
    const r = sh(
      ["ip", "-n", ns("router"), "-6", "route", "add", s.network.client.ipv6, "via", addr("router", "datacenter", "ipv6"), "dev", "ens5", "metric", "2048"],
      true,
    );
    expect(r.status).not.toBe(0);
    expect(r.out).toMatch(/Gateway can not be a local address/);
  });

  it("carries TCP from the client to the worker only once the router's rendered sysctls are applied, in both families", async () => {
    await listen("worker", "::", 31000);
    for (const family of ["ipv4", "ipv6"] as const) {
      expect(probe("client", addr("worker", "datacenter", family), 31000).ok, `${family} before forwarding`).toBe(false);
    }
    for (const line of routerFile(ROUTER_SYSCTL_FILE).split("\n").filter((l) => l && !l.startsWith("#"))) {
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
