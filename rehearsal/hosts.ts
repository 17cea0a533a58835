// The rehearsal's hosts: each a process tree in its own network, mount, PID and UTS namespaces whose
// first process is Debian's sshd. Its root is an overlay of this machine's root with an upper
// directory of its own, so whatever the host writes (/opt/testbed, /etc/kubernetes,
// /var/lib/dataplane-testbed, /var/tmp/testbed-ditg, ...) lands in the rehearsal's directory and
// nothing of this machine's file system changes. The run directory (its own state, the stand-ins'
// state, sshd's configuration and log), the checkout and /run/netns are bound in unchanged.
//
// What a host's first boot would leave (cloud-init, kubeadm) is written into its upper directory
// before it starts (seed), as far as the later steps need it.
import { spawnSync, type ChildProcess } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { LabTopology } from "../lab/topology.js";

/** The checkout: the stand-ins run from it on the hosts. */
export const CHECKOUT = fileURLToPath(new URL("../", import.meta.url));
/** How long sshd may take to listen, on a busy host. */
const SSHD_START_TIMEOUT_MS = 60_000;

export interface HostOptions {
  /** The host's role: its namespace in the topology, and its directory. */
  readonly role: string;
  readonly hostname: string;
  /** Addresses sshd listens on (port 22). */
  readonly listen: readonly string[];
  /** The public key allowed to log in as root. */
  readonly authorizedKey: string;
  /** DEBUG1 logs every forwarded connection (the bastion's jumps); VERBOSE every login. */
  readonly logLevel: "VERBOSE" | "DEBUG1";
}

/** The host's directory in the run: its overlay's upper and work directories, sshd's files, its log. */
export function hostDir(topology: Pick<LabTopology, "runDir">, role: string): string {
  return path.join(topology.runDir, "hosts", role);
}

/** The path on this machine where the host sees `fixed`, as its first boot would have left it. */
export function seedPath(topology: Pick<LabTopology, "runDir">, role: string, fixed: string): string {
  return path.join(hostDir(topology, role), "upper", fixed);
}

/** Writes a file into the host's file system before it starts. */
export function seedFile(topology: Pick<LabTopology, "runDir">, role: string, fixed: string, content: string, mode = 0o644): void {
  const file = seedPath(topology, role, fixed);
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, content, { mode });
  chmodSync(file, mode);
}

/** Pure: the host's sshd_config. */
export function sshdConfig(dir: string, o: Pick<HostOptions, "listen" | "logLevel">): string {
  return [
    ...o.listen.map((a) => `ListenAddress ${a.includes(":") ? `[${a}]` : a}:22`),
    `HostKey ${path.join(dir, "ssh", "ssh_host_ed25519_key")}`,
    `AuthorizedKeysFile ${path.join(dir, "ssh", "authorized_keys")}`,
    "PermitRootLogin prohibit-password",
    "PasswordAuthentication no",
    "KbdInteractiveAuthentication no",
    // No PAM: nothing of this machine's session setup (systemd-logind, motd) belongs to a rehearsal host.
    "UsePAM no",
    "PidFile none",
    "AllowTcpForwarding yes",
    // As Ubuntu's sshd_config has it: scp speaks SFTP since OpenSSH 9.
    "Subsystem sftp /usr/lib/openssh/sftp-server",
    `LogLevel ${o.logLevel}`,
    "",
  ].join("\n");
}

/**
 * The host's first process, run by bash as PID 1 of its new namespaces until it becomes sshd: the
 * overlay root, a /proc of its own PID namespace, the namespace's /sys, the shared directories.
 */
const INIT = String.raw`set -euo pipefail
root="$HOST_DIR/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$HOST_DIR/upper,workdir=$HOST_DIR/work" "$root"
mount -t proc proc "$root/proc"
mount --rbind /sys "$root/sys"
mount --rbind /dev "$root/dev"
for shared in /run/netns "$RUN_DIR"; do
  mkdir -p "$root$shared"
  mount --rbind "$shared" "$root$shared"
done
mkdir -p "$root$CHECKOUT"
mount --bind "$CHECKOUT" "$root$CHECKOUT"
mount -o remount,bind,ro "$root$CHECKOUT"
mkdir -p "$root/run/sshd"
hostname "$HOST_NAME"
exec chroot "$root" /usr/sbin/sshd -D -f "$HOST_DIR/ssh/sshd_config" -E "$HOST_DIR/sshd.log"
`;

/** A running host. */
export class NamespaceHost {
  private exited: Promise<void>;
  private stderr = "";

  private constructor(
    private readonly topology: LabTopology,
    readonly options: HostOptions,
    private readonly child: ChildProcess,
  ) {
    this.exited = new Promise((resolve) => child.once("exit", () => resolve()));
    child.stderr?.on("data", (d: Buffer) => (this.stderr = (this.stderr + d.toString()).slice(-4000)));
  }

  get role(): string {
    return this.options.role;
  }

  get dir(): string {
    return hostDir(this.topology, this.role);
  }

  /** sshd's log (its logins, and on the bastion the connections it forwarded). */
  sshdLog(): string {
    const file = path.join(this.dir, "sshd.log");
    return existsSync(file) ? readFileSync(file, "utf8") : "";
  }

  /**
   * The host's PID 1 as this machine numbers it (sshd, the init of its PID namespace): what a
   * process must enter to run on the host (nsenter --target).
   */
  initPid(): number {
    const pid = this.child.pid!;
    const children = readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number);
    if (children.length !== 1) throw new Error(`host ${this.role}: its namespaces' first process is gone (${this.stderr.trim() || "no output"})`);
    return children[0]!;
  }

  /** Starts the host and resolves once sshd listens on every address. Files seeded before stay. */
  static async start(topology: LabTopology, options: HostOptions): Promise<NamespaceHost> {
    const dir = hostDir(topology, options.role);
    for (const sub of ["upper", "work", "root", "ssh"]) mkdirSync(path.join(dir, sub), { recursive: true });
    const hostKey = path.join(dir, "ssh", "ssh_host_ed25519_key");
    if (!existsSync(hostKey)) {
      const keygen = spawnSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", `${options.hostname} host key`, "-f", hostKey], { encoding: "utf8" });
      if (keygen.status !== 0) throw new Error(`ssh-keygen for host ${options.role}: ${keygen.stderr.trim()}`);
    }
    writeFileSync(path.join(dir, "ssh", "authorized_keys"), `${options.authorizedKey.trim()}\n`, { mode: 0o600 });
    writeFileSync(path.join(dir, "ssh", "sshd_config"), sshdConfig(dir, options));
    // sudo resolves its own host name, as cloud-init's manage_etc_hosts lets it.
    seedFile(topology, options.role, "/etc/hosts", `${readFileSync("/etc/hosts", "utf8").trimEnd()}\n127.0.1.1 ${options.hostname}\n`);

    const child = topology.spawn(options.role, ["unshare", "--mount", "--pid", "--uts", "--fork", "--kill-child", "--propagation", "slave", "bash", "-c", INIT], {
      env: { ...process.env, HOST_DIR: dir, RUN_DIR: topology.runDir, CHECKOUT: CHECKOUT.replace(/\/$/, ""), HOST_NAME: options.hostname },
      stdio: ["ignore", "ignore", "pipe"],
    });
    const host = new NamespaceHost(topology, options, child);
    topology.onTeardown(() => host.kill());
    const spawnError = new Promise<never>((_, reject) => child.once("error", (e) => reject(new Error(`host ${options.role}: cannot start: ${e.message}`))));
    await Promise.race([host.untilListening(), spawnError]);
    return host;
  }

  private running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  private listening(): boolean {
    const r = this.topology.exec(this.role, ["ss", "-H", "-l", "-t", "-n", "sport", "=", ":22"]);
    const sockets = r.stdout;
    return this.options.listen.every((a) => sockets.includes(a.includes(":") ? `[${a}]:22` : `${a}:22`));
  }

  /** Waits for sshd's listening sockets in the host's socket table. */
  private async untilListening(): Promise<void> {
    const deadline = Date.now() + SSHD_START_TIMEOUT_MS;
    while (!this.listening()) {
      if (!this.running()) throw new Error(`host ${this.role}: its first process exited: ${this.stderr.trim() || "no output"}${this.sshdLog() ? ` / sshd: ${this.sshdLog().trim()}` : ""}`);
      if (Date.now() > deadline) throw new Error(`host ${this.role}: sshd does not listen on ${this.options.listen.join(", ")} after ${SSHD_START_TIMEOUT_MS / 1000} s`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** Ends every process of the host (its PID namespace goes with its first process). */
  kill(): void {
    if (!this.running()) return;
    try {
      process.kill(this.initPid(), "SIGKILL");
    } catch {
      this.child.kill("SIGKILL");
    }
  }

  async stop(): Promise<void> {
    this.kill();
    if (this.running()) await this.exited;
  }
}
