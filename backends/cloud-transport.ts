// The real transports of the cloud backend: the Pulumi stack through the Automation API (which
// drives the `pulumi` CLI) and SSH/scp through the bastion with ProxyJump.
import { spawn } from "node:child_process";
import { accessSync, chmodSync, constants, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { LocalWorkspace, StackNotFoundError, type Stack } from "@pulumi/pulumi/automation/index.js";
import { CONFIG_NAMESPACE } from "../scenario/schema.js";
import { CloudSetupError, type CommandResult, type RemoteHost, type SshAccess, type StackControl } from "./cloud.js";
import type { RemoteProcess, StreamingShell } from "./cloud-programming.js";

/** The first executable called `name` on a PATH string, or undefined. */
export function findOnPath(name: string, pathValue = process.env.PATH ?? ""): string | undefined {
  for (const dir of pathValue.split(path.delimiter)) {
    if (!dir) continue;
    const candidate = path.join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** A deployed stack of this project, driven through the Pulumi CLI. */
export class PulumiStack implements StackControl {
  private constructor(
    readonly name: string,
    private readonly stack: Stack,
  ) {}

  /** Selects an existing stack of the project in `workDir`. */
  static async select(name: string, workDir: string): Promise<PulumiStack> {
    if (!findOnPath("pulumi")) {
      throw new CloudSetupError(
        `the Pulumi CLI (\`pulumi\`) is not on PATH; \`testbed campaign --stack ${name}\` reads the stack's outputs and updates its Service count through it. Install it (https://www.pulumi.com/docs/iac/download-install/) and log in to the backend that holds the stack, or run \`testbed campaign --loopback\` for a dry run on this host`,
      );
    }
    try {
      return new PulumiStack(name, await LocalWorkspace.selectStack({ stackName: name, workDir }));
    } catch (err) {
      if (err instanceof StackNotFoundError) {
        throw new CloudSetupError(
          `stack ${name} does not exist in the Pulumi project at ${workDir}; accepted: an existing, deployed stack (see \`pulumi stack ls\`), e.g. iptables or ebpf after \`pulumi up --stack ${name}\``,
        );
      }
      throw new CloudSetupError(`cannot select stack ${name}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  async outputs(): Promise<Record<string, { value: unknown; secret?: boolean }>> {
    return this.stack.outputs();
  }

  async config(): Promise<Record<string, { value: string; secret?: boolean }>> {
    return this.stack.getAllConfig();
  }

  async setServices(services: number): Promise<void> {
    await this.stack.setConfig(`${CONFIG_NAMESPACE}:services`, { value: String(services) });
    try {
      await this.stack.up();
    } catch (err) {
      throw new Error(`pulumi up --stack ${this.name} with ${services} Services failed: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
}

/** Why an SSH command failed, in words a user can act on. */
export function describeSshFailure(host: RemoteHost, access: SshAccess, stderr: string): string {
  const where = host === "bastion" ? `the bastion (${access.bastion.address}:${access.bastion.port})` : `the ${host} (${access.hosts[host]}) through the bastion ${access.bastion.address}`;
  const lines = stderr.split(/\r?\n/).map((l) => l.trim()).filter(Boolean);
  const telling = /refused|denied|timed out|No route|unreachable|resolve|verification|IDENTIFICATION/i;
  const line = lines.find((l) => telling.test(l)) ?? lines.at(-1) ?? "";
  if (/Connection refused/i.test(stderr)) {
    return `cannot reach ${where} over SSH: connection refused; check that the stack is deployed and its hosts are up, and that testbed:adminCidr admits this machine (${line})`;
  }
  if (/Permission denied/i.test(stderr)) {
    return `SSH to ${where} as ${access.user} was refused (permission denied): testbed:sshPrivateKey must be the private half of testbed:sshPublicKey (${line})`;
  }
  if (/timed out|No route to host|Network is unreachable/i.test(stderr)) {
    return `cannot reach ${where} over SSH: ${line}; check testbed:adminCidr and that the bastion has its public address`;
  }
  if (/Could not resolve hostname/i.test(stderr)) return `cannot resolve ${where}: ${line}`;
  if (/Host key verification failed|REMOTE HOST IDENTIFICATION HAS CHANGED/i.test(stderr)) {
    return `the host key of ${where} does not match the one seen earlier in this session (${line})`;
  }
  return `SSH to ${where} failed: ${line || "no output"}`;
}

/** ssh's exit status when the connection itself failed (not the remote command). */
const SSH_TRANSPORT_FAILURE = 255;

/**
 * ssh and scp through the bastion. A private directory (mode 0700) holds the key (0600), an
 * ssh_config with one alias per host and ProxyJump through the bastion, the session's
 * known_hosts (trust on first use: the lab's hosts are new VMs whose keys nobody has seen) and the
 * control sockets that let every run reuse one connection per host.
 */
export class SshShell implements StreamingShell {
  private readonly dir: string;
  private readonly configFile: string;
  private readonly used = new Set<RemoteHost>();

  constructor(private readonly access: SshAccess) {
    this.dir = mkdtempSync(path.join(tmpdir(), "testbed-ssh-"));
    chmodSync(this.dir, 0o700);
    const keyFile = path.join(this.dir, "id");
    writeFileSync(keyFile, access.privateKey.endsWith("\n") ? access.privateKey : `${access.privateKey}\n`, { mode: 0o600 });
    this.configFile = path.join(this.dir, "ssh_config");
    writeFileSync(this.configFile, sshConfig(access, this.dir, keyFile), { mode: 0o600 });
  }

  private exec(cmd: "ssh" | "scp", args: string[]): Promise<CommandResult> {
    return new Promise((resolve, reject) => {
      const child = spawn(cmd, ["-F", this.configFile, ...args], { stdio: ["ignore", "pipe", "pipe"] });
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
      child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
      child.once("error", (e) => reject(new CloudSetupError(`cannot run ${cmd}: ${e.message}; install the OpenSSH client`)));
      child.once("close", (code) => resolve({ code: code ?? SSH_TRANSPORT_FAILURE, stdout, stderr }));
    });
  }

  async run(host: RemoteHost, command: string): Promise<CommandResult> {
    this.used.add(host);
    const r = await this.exec("ssh", [host, command]);
    if (r.code === SSH_TRANSPORT_FAILURE) throw new CloudSetupError(describeSshFailure(host, this.access, await this.diagnose(host, r.stderr)));
    return r;
  }

  /**
   * Starts a command on the host and hands back its process, stdin and stdout open (the programming
   * probe, which reads marks on its stdin and exits when it closes).
   */
  start(host: RemoteHost, command: string): RemoteProcess {
    this.used.add(host);
    return spawn("ssh", ["-F", this.configFile, host, command], { stdio: ["pipe", "pipe", "pipe"] });
  }

  /**
   * stderr that says why a connection failed. A connection that would have become the control
   * master runs its ProxyJump in the background, whose error (refused, timed out) is lost; one
   * plain connection attempt without multiplexing shows it.
   */
  private async diagnose(host: RemoteHost, stderr: string): Promise<string> {
    const plain = await this.exec("ssh", ["-o", "ControlMaster=no", "-o", "ControlPath=none", host, "true"]);
    return `${plain.stderr}\n${stderr}`;
  }

  async fetch(host: RemoteHost, remotePath: string, localPath: string): Promise<void> {
    this.used.add(host);
    const r = await this.exec("scp", ["-q", `${host}:${remotePath}`, localPath]);
    if (r.code !== 0) {
      throw new Error(
        /No such file/i.test(r.stderr)
          ? `${host}:${remotePath} does not exist (the flow wrote no log)`
          : describeSshFailure(host, this.access, await this.diagnose(host, r.stderr)),
      );
    }
  }

  async close(): Promise<void> {
    for (const host of this.used) await this.exec("ssh", ["-O", "exit", host]).catch(() => undefined);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** The ssh_config of a session: aliases bastion, client, master, receiver. */
export function sshConfig(access: SshAccess, dir: string, keyFile: string): string {
  const hosts = Object.entries(access.hosts)
    .map(([alias, address]) => `Host ${alias}\n  HostName ${address}\n  ProxyJump bastion\n`)
    .join("");
  return [
    `Host bastion\n  HostName ${access.bastion.address}\n  Port ${access.bastion.port}\n`,
    hosts,
    "Host *",
    `  User ${access.user}`,
    `  IdentityFile ${keyFile}`,
    "  IdentitiesOnly yes",
    "  BatchMode yes",
    "  StrictHostKeyChecking accept-new",
    `  UserKnownHostsFile ${path.join(dir, "known_hosts")}`,
    "  ConnectTimeout 15",
    "  ServerAliveInterval 15",
    "  ControlMaster auto",
    `  ControlPath ${path.join(dir, "cm-%C")}`,
    "  ControlPersist 600",
    "",
  ].join("\n");
}
