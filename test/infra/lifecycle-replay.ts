// Runs the steps of a modelled deployment (infra/lifecycle.ts) the way the providers would: each
// remote Command's create, update or delete script with bash, each CopyToRemote as the file it
// writes. The tools the scripts call on a host are recording stand-ins (lifecycle-standins.mjs);
// everything else is real (bash, openssl, ssh-keygen, iptables, ip, tc). Each host's fixed paths
// (/opt/testbed, /etc/kubernetes, /var/lib/testbed, ...) are moved into a directory of its own, and
// every script runs in one private network namespace (the lab's data NICs exist there as veth
// links with the link cap) and a private mount namespace, so nothing of this machine changes.
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { DATA_NIC_NAMES } from "../../infra/openstack/address-plan.js";
import { HOST_READY_MARKER, HOST_STATE_DIR } from "../../infra/openstack/cloud-init.js";
import { NODE_PATHS } from "../../infra/cluster/bootstrap.js";
import { NODE_PREP_MARKER } from "../../infra/cluster/node-prep.js";
import type { Step } from "../../infra/lifecycle.js";
import { assetText, type PlannedResource } from "../../infra/offline-engine.js";
import { OFFLINE_CA_CERT_HASH } from "../../infra/offline-fixtures.js";
import { REMOTE_ARTIFACT_ROOT } from "../../infra/remote-files.js";
import { STACK_PROBES } from "../../infra/setup-probe.js";
import { labHosts, type HostName } from "../../infra/hosts.js";

const STANDINS = path.join(import.meta.dirname, "lifecycle-standins.mjs");
const CHECKOUT = path.resolve(import.meta.dirname, "../..");
const SCRIPT_TIMEOUT_MS = 120_000;
const TOOLS = ["kubectl", "helm", "kubeadm", "ssh", "sudo", "cloud-init"];

export interface StandInState {
  readonly calls: { host: string; tool: string; args: string[] }[];
  readonly objects: Record<string, { kind: string; metadata: { name: string; namespace?: string }; spec?: Record<string, unknown> }>;
  /** Deleted Services the worker's dataplane still holds, for readsLeft more reads (-1: for ever). */
  stale?: Record<string, { service: StandInState["objects"][string]; readsLeft: number }>;
  readonly helm: Record<string, { version: string; revision: number; values: Record<string, unknown> }>;
  readonly nodes: Record<string, { name: string; ips: string[] }>;
  readonly daemonsets: string[];
}

export interface StepRun {
  readonly step: Step;
  readonly host?: HostName;
  readonly status: number;
  readonly stdout: string;
  readonly stderr: string;
}

export const canReplay = process.platform === "linux" && process.getuid?.() === 0 && spawnSync("unshare", ["--version"]).status === 0;

const unwrap = (v: unknown): unknown => (v && typeof v === "object" && "$secret" in (v as object) ? (v as { $secret: unknown }).$secret : v);

/**
 * The host a command runs on. Plans carry connections as redacted secrets, but every remote step
 * is deletedWith the server it runs on (lab-servers-<host>).
 */
function hostOf(r: PlannedResource, hosts: readonly HostName[]): HostName {
  const server = /^openstack:compute\/instance:Instance::lab-servers-([\w-]+)$/.exec(r.options?.deletedWith ?? "")?.[1];
  if (!server || !(hosts as readonly string[]).includes(server)) throw new Error(`${r.type}::${r.name}: not deletedWith a lab server of the replay (${hosts.join(", ")}), so its host is unknown`);
  return server as HostName;
}

export class Replay {
  readonly dir = fs.mkdtempSync(path.join(os.tmpdir(), "testbed-lifecycle-"));
  readonly netns = `tblc-${randomBytes(3).toString("hex")}`;
  readonly runs: StepRun[] = [];
  private readonly bin = path.join(this.dir, "bin");
  private readonly stateFile = path.join(this.dir, "cluster.json");

  /** Every host the replay has: the lab's with this many workers. */
  readonly hosts: readonly HostName[];

  /**
   * `kubernetesVersion`: what node preparation installed on the nodes (the stack's
   * testbed:kubernetes.version); `workers`: the most workers any plan of the replay has.
   */
  constructor(kubernetesVersion: string, workers = 1) {
    this.hosts = labHosts(workers).map((h) => h.name);
    fs.mkdirSync(this.bin);
    for (const tool of TOOLS) fs.symlinkSync(STANDINS, path.join(this.bin, tool));
    fs.chmodSync(STANDINS, 0o755);
    this.sh(["ip", "netns", "add", this.netns]);
    // What the hosts' own first boot leaves (cloud-init, the host setup): data NICs under their
    // stable names with the link cap, forwarding, and the markers the readiness checks read.
    const inNs = (...argv: string[]) => this.sh(["ip", "netns", "exec", this.netns, ...argv]);
    inNs("ip", "link", "set", "lo", "up");
    for (const name of Object.values(DATA_NIC_NAMES)) {
      inNs("ip", "link", "add", name, "type", "veth", "peer", "name", `${name}-peer`);
      inNs("tc", "qdisc", "replace", "dev", name, "root", "tbf", "rate", "500mbit", "burst", "131072", "latency", "50ms");
    }
    inNs("sysctl", "-q", "-w", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1");
    for (const role of this.hosts) {
      const marker = this.hostPath(role, HOST_READY_MARKER);
      fs.mkdirSync(path.dirname(marker), { recursive: true });
      fs.writeFileSync(marker, "nics=tb-dc\nlinkcap=500mbit\n");
      fs.mkdirSync(this.hostPath(role, REMOTE_ARTIFACT_ROOT), { recursive: true });
      fs.mkdirSync(this.hostPath(role, "/root"), { recursive: true, mode: 0o700 });
      fs.mkdirSync(path.dirname(this.hostPath(role, NODE_PATHS.sshHostKey)), { recursive: true });
      spawnSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", this.hostPath(role, NODE_PATHS.sshHostKey).replace(/\.pub$/, "")]);
      if (role === "master" || role.startsWith("worker")) {
        fs.writeFileSync(this.hostPath(role, NODE_PREP_MARKER), `kubernetes=${kubernetesVersion}-1.1\ncontainerd=1.7.24\nkernel=5.4.0\n${role === "master" ? "helm=v3.18.6\n" : ""}`);
      }
    }
  }

  /** Where a host's fixed path lives in this replay. */
  hostPath(role: HostName, fixed: string): string {
    return path.join(this.dir, "hosts", role, fixed);
  }

  /** A script with the host's fixed paths moved into its directory and kubeadm pointed at the stand-in. */
  private relocate(role: HostName, script: string): string {
    const moved = [REMOTE_ARTIFACT_ROOT, NODE_PATHS.kubernetesDir, HOST_STATE_DIR, NODE_PATHS.logDir, NODE_PATHS.sshHostKey, ...STACK_PROBES.map((p) => p.probe.binary)];
    let text = script.replaceAll(NODE_PATHS.kubeadm, path.join(this.bin, "kubeadm"));
    for (const p of moved) text = text.replace(new RegExp(`${p.replace(/[.]/g, "\\.")}(?=[/'" \\n]|$)`, "g"), this.hostPath(role, p));
    // The root-only scratch directory appears quoted: SCRATCH='/root', KEY='/root/.ssh/...'.
    return text.replace(/(?<=')\/root(?=[/'])/g, this.hostPath(role, "/root"));
  }

  state(): StandInState {
    return JSON.parse(fs.readFileSync(this.stateFile, "utf8")) as StandInState;
  }

  /** Changes the stand-ins' cluster: what the worker's dataplane holds beyond the API's Services. */
  patchState(patch: (s: StandInState & Record<string, unknown>) => void): void {
    const s = this.state() as StandInState & Record<string, unknown>;
    patch(s);
    fs.writeFileSync(this.stateFile, JSON.stringify(s));
  }

  /** Runs one script on a host as a remote Command's create would (e.g. the step gate alone). */
  runScript(host: HostName, name: string, create: string): StepRun {
    const resource: PlannedResource = { type: "command:remote:Command", name, inputs: { create }, options: { parent: "", dependencies: [], propertyDependencies: {}, deleteBeforeReplace: false, ignoreChanges: [], replaceOnChanges: [], additionalSecretOutputs: [], deletedWith: `openstack:compute/instance:Instance::lab-servers-${host}` } };
    const run = this.runStep({ action: "create", id: `command:remote:Command::${name}`, resource, reason: "run alone" });
    this.runs.push(run);
    return run;
  }

  /** Runs the steps in order; stops at the first failing create or update, as `pulumi up` does. */
  run(steps: readonly Step[]): StepRun[] {
    const done: StepRun[] = [];
    for (const step of steps) {
      const result = this.runStep(step);
      done.push(result);
      this.runs.push(result);
      if (result.status !== 0 && step.action !== "delete") {
        throw new Error(`${step.action} ${step.id} failed (${result.status}):\n${result.stderr}${result.stdout.slice(-2000)}`);
      }
    }
    return done;
  }

  private runStep(step: Step): StepRun {
    const r = step.resource;
    if (r.type === "command:remote:CopyToRemote") {
      const host = hostOf(r, this.hosts);
      if (step.action !== "delete") {
        const file = this.hostPath(host, String(r.inputs.remotePath));
        fs.mkdirSync(path.dirname(file), { recursive: true });
        const content = assetText(r.inputs.source);
        if (content === undefined) throw new Error(`${r.name}: its source is neither a string nor a file asset`);
        fs.writeFileSync(file, content);
      }
      // pulumi-command's CopyToRemote removes nothing on delete.
      return { step, host, status: 0, stdout: "", stderr: "" };
    }
    if (r.type !== "command:remote:Command") return { step, status: 0, stdout: "", stderr: "" };
    const host = hostOf(r, this.hosts);
    const script = step.action === "create" ? r.inputs.create : step.action === "update" ? (r.inputs.update ?? r.inputs.create) : r.inputs.delete;
    if (typeof script !== "string") return { step, host, status: 0, stdout: "", stderr: "" };
    // The plans log in as root (see the test), whose home is a private tmpfs here: the master's
    // authorized_keys land there, never in this machine's /root. A checkout under /root (the stand-ins
    // and their node_modules) is bound back into it, or the tools would fall through to the host's own.
    const sandbox = `set -e
mount --make-rprivate /
mkdir -p "$LIFECYCLE_STASH"
mount --bind "$LIFECYCLE_CHECKOUT" "$LIFECYCLE_STASH"
mount -t tmpfs -o mode=0700 testbed-lifecycle /root
mkdir -p "$LIFECYCLE_CHECKOUT"
mount --bind "$LIFECYCLE_STASH" "$LIFECYCLE_CHECKOUT"
for d in /etc/cni /var/lib/cni /var/run/cilium /sys/fs/bpf; do
  if [ -d "$d" ]; then mount -t tmpfs testbed-lifecycle "$d"; fi
done
set +e
bash -c "$1"`;
    const p = spawnSync("ip", ["netns", "exec", this.netns, "unshare", "--mount", "bash", "-c", sandbox, "replay", this.relocate(host, script)], {
      encoding: "utf8",
      input: typeof unwrap(r.inputs.stdin) === "string" ? String(unwrap(r.inputs.stdin)) : "",
      env: {
        ...process.env,
        PATH: `${this.bin}:${process.env.PATH}`,
        LIFECYCLE_STATE: this.stateFile,
        LIFECYCLE_HOST: host,
        LIFECYCLE_KUBERNETES_DIR: this.hostPath(host, NODE_PATHS.kubernetesDir),
        LIFECYCLE_CA_HASH: OFFLINE_CA_CERT_HASH,
        LIFECYCLE_CHECKOUT: CHECKOUT,
        LIFECYCLE_STASH: path.join(this.dir, "checkout"),
      },
      maxBuffer: 64 << 20,
      // A script that reaches a real tool instead of its stand-in may wait forever (cloud-init status --wait).
      timeout: SCRIPT_TIMEOUT_MS,
    });
    if (p.error) throw new Error(`${step.action} ${r.name} on ${host}: ${p.error.message} (after at most ${SCRIPT_TIMEOUT_MS / 1000} s)`);
    return { step, host, status: p.status ?? -1, stdout: p.stdout, stderr: p.stderr };
  }

  private sh(argv: string[]): void {
    const r = spawnSync(argv[0]!, argv.slice(1), { encoding: "utf8" });
    if (r.status !== 0) throw new Error(`${argv.join(" ")}: ${r.stderr}`);
  }

  close(): void {
    spawnSync("ip", ["netns", "del", this.netns]);
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}
