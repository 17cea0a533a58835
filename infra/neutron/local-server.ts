// A real Neutron API server (Debian's neutron-server, OpenStack Zed) on this host, for checking the
// networking layer against Neutron's own validation and default policies: no Keystone, no message
// bus, no agents. It listens on a free 127.0.0.1 port, keeps everything in a temporary directory,
// and stop() ends the server and every worker it forked.
import { spawn, execFile, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { promisify } from "node:util";

/** Debian's modules are visible to the system interpreter only (not to pyenv or venv pythons). */
export const SYSTEM_PYTHON = "/usr/bin/python3";
export const NEUTRON_SERVER = "/usr/bin/neutron-server";
export const STOCK_API_PASTE = "/etc/neutron/api-paste.ini";
/** util-linux's: gives the server a parent-death signal, so that it dies with the process that started it. */
export const SETPRIV = "/usr/bin/setpriv";

const NEUTRON_INSTALL_HINT =
  "install Debian's neutron-server (Debian 12 or later): `npm test` as root installs it, or as root " +
  "`apt-get install --no-install-recommends neutron-server` with a /usr/sbin/policy-rc.d that exits 101, so that no service starts";

/** What is missing on this host for a local Neutron; empty when it can run. */
export function missingNeutronParts(exists: (p: string) => boolean = fs.existsSync): string[] {
  return [NEUTRON_SERVER, STOCK_API_PASTE, SYSTEM_PYTHON, SETPRIV].filter((p) => !exists(p));
}

/** Why a local Neutron cannot run here and how to install it; undefined when it can. */
export function neutronUnavailable(exists: (p: string) => boolean = fs.existsSync): string | undefined {
  const missing = missingNeutronParts(exists);
  return missing.length === 0 ? undefined : `no local Neutron: ${missing.join(", ")} not found; ${NEUTRON_INSTALL_HINT}`;
}

/**
 * The stock api-paste.ini with its noauth pipeline replaced by the keystone pipeline minus token
 * validation: the keystonecontext filter then builds the request context from the X-Project-Id,
 * X-User-Id and X-Roles headers, so a request runs as a member or an admin of a project under
 * Neutron's real policies. (The stock noauth pipeline's fake_project_id ignores X-Roles.)
 */
export function headerContextApiPaste(stock: string): string {
  const lines = stock.split("\n");
  const start = lines.findIndex((l) => l.trim() === "[composite:neutronapi_v2_0]");
  if (start < 0) throw new Error(`${STOCK_API_PASTE} has no [composite:neutronapi_v2_0] section`);
  let end = lines.findIndex((l, i) => i > start && l.trim().startsWith("["));
  if (end < 0) end = lines.length;
  const keyOf = (l: string) => l.split("=")[0]!.trim();
  const keystone = lines.slice(start, end).find((l) => keyOf(l) === "keystone");
  const noauthAt = lines.findIndex((l, i) => i > start && i < end && keyOf(l) === "noauth");
  if (!keystone || noauthAt < 0) throw new Error(`${STOCK_API_PASTE}: [composite:neutronapi_v2_0] lacks a noauth or keystone pipeline`);
  const filters = keystone.slice(keystone.indexOf("=") + 1).trim().split(/\s+/);
  if (!filters.includes("authtoken") || !filters.includes("keystonecontext")) {
    throw new Error(`${STOCK_API_PASTE}: the keystone pipeline "${filters.join(" ")}" has no authtoken and keystonecontext filters`);
  }
  const out = [...lines];
  out[noauthAt] = `noauth = ${filters.filter((f) => f !== "authtoken").join(" ")}`;
  return out.join("\n");
}

export interface NeutronConfigFiles {
  readonly "neutron.conf": string;
  readonly "ml2_conf.ini": string;
}

/**
 * neutron.conf and ml2_conf.ini for a server rooted at `dir` on `port`: ML2 with the openvswitch
 * mechanism driver (ports stay unbound, which the API does not mind), the port-security and QoS
 * extensions a cloud for this lab needs, the router and QoS service plugins, SQLite, the in-memory
 * message transport, Nova notifications off, and Neutron's in-code default policies.
 */
export function neutronConfig(dir: string, port: number): NeutronConfigFiles {
  const conf = `[DEFAULT]
auth_strategy = noauth
core_plugin = ml2
service_plugins = router,qos
bind_host = 127.0.0.1
bind_port = ${port}
api_workers = 1
rpc_workers = 0
rpc_state_report_workers = 0
# One request at a time: SQLite takes one writer, and a green thread waiting for its lock would block
# the one holding it. Without keep-alive, one client's idle connection does not hold the only slot.
wsgi_default_pool_size = 1
wsgi_keep_alive = false
api_paste_config = ${dir}/etc/api-paste.ini
state_path = ${dir}/state
transport_url = fake:/
notify_nova_on_port_status_changes = false
notify_nova_on_port_data_changes = false
dhcp_agent_notification = false

[database]
# Its periodic worker writes to the same SQLite file (quota reservations, agent state): a write that finds
# it locked waits up to SQLITE_BUSY_SECONDS instead of pysqlite's 5 s, which a loaded host exceeds (the
# API then answered 500 "database is locked"); the file is in WAL mode (schemaScript), so reads never wait.
connection = sqlite:///${dir}/state/neutron.sqlite?timeout=${SQLITE_BUSY_SECONDS}
sqlite_synchronous = false

[oslo_concurrency]
lock_path = ${dir}/state/lock

[oslo_messaging_notifications]
driver = noop

[oslo_policy]
# The in-code defaults, whatever the host's /etc/neutron/policy.d holds.
policy_file = ${dir}/etc/policy.yaml
policy_dirs = ${dir}/etc/policy.d
enforce_new_defaults = false
enforce_scope = false
`;
  const ml2 = `[ml2]
type_drivers = flat,vlan,vxlan
tenant_network_types = vxlan
mechanism_drivers = openvswitch
extension_drivers = port_security,qos

[ml2_type_flat]
flat_networks = *

[ml2_type_vlan]
network_vlan_ranges = physnet1:100:199

[ml2_type_vxlan]
vni_ranges = 1:1000

[securitygroup]
firewall_driver = openvswitch
`;
  return { "neutron.conf": conf, "ml2_conf.ini": ml2 };
}

/**
 * Neutron's head schema from its models, as its unit tests build it (the migrations do not run on SQLite), in a
 * database file in WAL mode: readers and the one writer no longer block each other.
 */
export function schemaScript(databaseFile: string): string {
  return [
    "import sqlite3",
    "import sqlalchemy as sa",
    "from neutron.db.migration.models import head",
    `head.get_metadata().create_all(sa.create_engine(${JSON.stringify(`sqlite:///${databaseFile}`)}))`,
    `sqlite3.connect(${JSON.stringify(databaseFile)}).execute("PRAGMA journal_mode=WAL").fetchall()`,
  ].join("\n");
}

/**
 * How long a write waits for the SQLite lock: longer than any transaction of Neutron's periodic worker on a
 * loaded 2-core host, shorter than a test's timeout.
 */
export const SQLITE_BUSY_SECONDS = 120;

/** Process ids whose parent is `pid`, read from /proc. */
export function childPids(pid: number, procDir = "/proc"): number[] {
  const children: number[] = [];
  for (const entry of fs.readdirSync(procDir)) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = fs.readFileSync(path.join(procDir, entry, "stat"), "utf8");
    } catch {
      continue; // exited meanwhile
    }
    // The command name is in parentheses and may hold spaces: the fields after the last ")" are fixed.
    const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
    if (ppid === pid) children.push(Number(entry));
  }
  return children;
}

/** Every descendant of `pid`, deepest first, so that a parent never outlives the check of its children. */
export function descendantPids(pid: number, procDir = "/proc"): number[] {
  const out: number[] = [];
  for (const child of childPids(pid, procDir)) out.push(...descendantPids(child, procDir), child);
  return out;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  // A zombie has exited; only its parent's wait is missing.
  try {
    return !/^\S+ \(.*\) Z/.test(fs.readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return false;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A port the kernel just handed out on 127.0.0.1; free unless someone takes it in the next instant. */
export async function freeLocalPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

export interface LocalNeutron {
  /** e.g. http://127.0.0.1:40123 */
  readonly url: string;
  readonly pid: number;
  readonly dir: string;
  /** Ends the workers, then the server, and removes the directory. */
  stop(): Promise<void>;
}

export interface StartOptions {
  /** Seconds to wait for the API to answer. */
  readonly readySeconds?: number;
}

const execFileP = promisify(execFile);

function logTail(file: string, lines = 25): string {
  try {
    return fs.readFileSync(file, "utf8").trimEnd().split("\n").slice(-lines).join("\n");
  } catch {
    return "(no log)";
  }
}

async function answers(url: string): Promise<boolean> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
    await res.arrayBuffer();
    return res.status === 200;
  } catch {
    return false;
  }
}

/** Processes whose command line names `marker` (the server's config file): a worker that lost its parent too. */
export function processesNaming(marker: string, procDir = "/proc"): number[] {
  const found: number[] = [];
  for (const entry of fs.readdirSync(procDir)) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      if (fs.readFileSync(path.join(procDir, entry, "cmdline"), "utf8").includes(marker)) found.push(Number(entry));
    } catch {
      // exited meanwhile
    }
  }
  return found;
}

function signal(pids: readonly number[], sig: NodeJS.Signals): void {
  for (const p of pids) {
    try {
      process.kill(p, sig);
    } catch {
      // already gone
    }
  }
}

/**
 * Ends the server's workers, then the server. The server is frozen first, so that it cannot respawn
 * a worker between the look-up and the kill; killed first, it would leave its workers behind.
 */
async function stopServer(child: ChildProcess, marker: string, graceMs = 5_000): Promise<void> {
  const pid = child.pid;
  if (pid === undefined) return;
  const exited = new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once("exit", () => resolve());
  });
  signal([pid], "SIGSTOP");
  const workers = [...new Set([...descendantPids(pid), ...processesNaming(marker)])].filter((p) => p !== pid);
  signal(workers, "SIGTERM");
  const deadline = Date.now() + graceMs;
  while (workers.some(alive) && Date.now() < deadline) await sleep(100);
  signal(workers.filter(alive), "SIGKILL");
  signal([pid], "SIGKILL");
  await exited;
  signal(processesNaming(marker).filter(alive), "SIGKILL");
}

/** The same, synchronously, for a process that is exiting and cannot wait. */
function killServerNow(pid: number, marker: string): void {
  signal([pid], "SIGSTOP");
  signal([...descendantPids(pid), ...processesNaming(marker)].filter((p) => p !== pid), "SIGKILL");
  signal([pid], "SIGKILL");
}

/**
 * Starts neutron-server in a fresh temporary directory on a free 127.0.0.1 port and resolves once
 * GET / answers 200. Throws, with the server's log, when the packages are missing or it never answers.
 */
export async function startLocalNeutron(options: StartOptions = {}): Promise<LocalNeutron> {
  const unavailable = neutronUnavailable();
  if (unavailable) throw new Error(unavailable);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "testbed-neutron-"));
  try {
    for (const sub of ["etc/policy.d", "state/lock", "log"]) fs.mkdirSync(path.join(dir, sub), { recursive: true });
    fs.writeFileSync(path.join(dir, "etc/api-paste.ini"), headerContextApiPaste(fs.readFileSync(STOCK_API_PASTE, "utf8")));
    await execFileP(SYSTEM_PYTHON, ["-c", schemaScript(path.join(dir, "state/neutron.sqlite"))], { env: systemPythonEnv() }).catch(
      (err: { stderr?: string; message: string }) => {
        throw new Error(`creating Neutron's schema failed: ${err.stderr?.trim() || err.message}`);
      },
    );
    // A port taken between the look-up and neutron-server's bind: try another.
    for (let attempt = 1; ; attempt++) {
      const port = await freeLocalPort();
      const started = await startOn(dir, port, options.readySeconds ?? 180);
      if (started.ok) {
        const child = started.child;
        // A test run or command that dies with the server still up takes it along.
        const onExit = () => killServerNow(child.pid!, serverMarker(dir));
        process.once("exit", onExit);
        return {
          url: `http://127.0.0.1:${port}`,
          pid: child.pid!,
          dir,
          async stop() {
            await stopServer(child, serverMarker(dir));
            process.off("exit", onExit);
            fs.rmSync(dir, { recursive: true, force: true });
          },
        };
      }
      if (!started.portTaken || attempt === 3) throw new Error(started.reason);
    }
  } catch (err) {
    fs.rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}

/** The system interpreter must not see a virtualenv's or pyenv's module paths. */
function systemPythonEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const key of ["PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYENV_VERSION"]) delete env[key];
  return env;
}

/** Every process of one server names its configuration file on its command line. */
const serverMarker = (dir: string) => path.join(dir, "etc/neutron.conf");

type StartResult = { ok: true; child: ChildProcess } | { ok: false; reason: string; portTaken: boolean };

async function startOn(dir: string, port: number, readySeconds: number): Promise<StartResult> {
  const files = neutronConfig(dir, port);
  for (const [name, text] of Object.entries(files)) fs.writeFileSync(path.join(dir, "etc", name), text);
  const log = path.join(dir, "log", `server-${port}.log`);
  // SIGKILL when the starting process dies, however it dies; the workers follow their server.
  const child = spawn(
    SETPRIV,
    ["--pdeathsig", "KILL", NEUTRON_SERVER, "--config-file", path.join(dir, "etc/neutron.conf"), "--config-file", path.join(dir, "etc/ml2_conf.ini"), "--log-file", log],
    { stdio: ["ignore", "ignore", "pipe"], env: systemPythonEnv() },
  );
  let stderr = "";
  child.stderr!.on("data", (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000);
  });
  const deadline = Date.now() + readySeconds * 1000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) break;
    if (await answers(`http://127.0.0.1:${port}/`)) return { ok: true, child };
    await sleep(250);
  }
  const tail = logTail(log);
  await stopServer(child, serverMarker(dir));
  const portTaken = /Address already in use|Could not bind/i.test(tail + stderr);
  const why = child.exitCode !== null ? `exited with status ${child.exitCode}` : `did not answer on port ${port} within ${readySeconds} s`;
  return { ok: false, portTaken, reason: `neutron-server ${why}; its log ends:\n${tail}${stderr ? `\nstderr:\n${stderr.trim()}` : ""}` };
}
