// What the OpenStack layer hands to the layers above it: hosts, how to reach them, their addresses,
// and the cloud-init parts other layers add to a host's user data.
import * as pulumi from "@pulumi/pulumi";
import type * as command from "@pulumi/command";
import type { Family } from "../scenario/cidr.js";

export const HOST_ROLES = ["bastion", "client", "router", "master", "worker"] as const;
export type HostRole = (typeof HOST_ROLES)[number];

/**
 * A host by its name: each role's own name, and `worker-N` for the N-th worker from the second on.
 * Worker 1 keeps the name `worker`, so the paper's one-worker lab keeps every resource it has when
 * workers are added (testbed:workers).
 */
export type HostName = HostRole | `worker-${number}`;

/** Server metadata key naming the host's role; `testbed plan` names cloud-init files by it. */
export const ROLE_METADATA_KEY = "testbed-role";
/**
 * Server metadata key naming a host whose name is not its role's (worker-2, ...); `testbed plan`
 * names its cloud-init file by it.
 */
export const HOST_METADATA_KEY = "testbed-host";

/** One host of the lab. */
export interface LabHost {
  readonly name: HostName;
  readonly role: HostRole;
  /** A worker's number, from 1; undefined for the other roles. */
  readonly worker?: number;
}

/** The name of the n-th worker (1-based). */
export function workerHostName(n: number): HostName {
  if (!Number.isInteger(n) || n < 1) throw new Error(`worker ${n}: accepted: a whole number from 1`);
  return n === 1 ? "worker" : `worker-${n}`;
}

/** The role of a host, from its name. */
export function roleOf(host: HostName): HostRole {
  if ((HOST_ROLES as readonly string[]).includes(host)) return host as HostRole;
  if (/^worker-[1-9][0-9]*$/.test(host)) return "worker";
  throw new Error(`"${host}" is not a host of the lab; accepted: ${HOST_ROLES.join(", ")} or worker-N`);
}

/** Every host of a lab with this many workers, in the order of HOST_ROLES, the workers after worker 1 last. */
export function labHosts(workers: number): LabHost[] {
  if (!Number.isInteger(workers) || workers < 1) throw new Error(`${workers} workers: accepted: a whole number from 1`);
  const hosts: LabHost[] = HOST_ROLES.map((role) => (role === "worker" ? { name: role, role, worker: 1 } : { name: role, role }));
  for (let n = 2; n <= workers; n++) hosts.push({ name: workerHostName(n), role: "worker", worker: n });
  return hosts;
}

/** A host's access together with its name, for components that declare resources per host. */
export interface NamedHost {
  readonly name: HostName;
  readonly access: HostAccess;
}

/** The networks of the paper's lab; the measured path is client -> router -> worker. */
export type LabNetwork = "client" | "datacenter" | "management";

export interface HostAccess {
  /** SSH over the management network, through the bastion (ProxyJump); carries the private key (secret). */
  readonly connection: pulumi.Output<command.types.input.remote.ConnectionArgs>;
  /** The host's fixed addresses, per network it is attached to and per family. */
  readonly addresses: Partial<Record<LabNetwork, Partial<Record<Family, pulumi.Output<string>>>>>;
  /** Name of the NIC on each network inside the guest (e.g. the data-center NIC Cilium pins). */
  readonly interfaces: Partial<Record<LabNetwork, string>>;
  /** The server, for deletedWith of commands that run on it. */
  readonly server: pulumi.Resource;
  /**
   * What would restart the host, as text: its server (a new image, user data or key pair is a new
   * server) and its flavor (a resize reboots the server in place, and no command runs again by
   * itself). Checks that must run again after a reboot name it in their script, so that a reboot
   * is an update of each of them.
   */
  readonly boot: pulumi.Output<string>;
  /**
   * The host's readiness check (cloud-init done, its own setup checked on the host): what every
   * command that runs on the host, or relies on it, depends on.
   */
  readonly ready: pulumi.Resource;
}

/**
 * A host's SSH connection that retries without limit while the VM boots, bounded by the command's
 * customTimeouts (pulumi-command gives up after 10 failed dials by default, quickly exhausted).
 */
export function patientConnection(connection: pulumi.Input<command.types.input.remote.ConnectionArgs>): pulumi.Output<command.types.input.remote.ConnectionArgs> {
  return pulumi.secret(
    pulumi.output(connection).apply((c) => ({
      ...c,
      dialErrorLimit: -1,
      perDialTimeout: 30,
      ...(c.proxy ? { proxy: { ...(c.proxy as command.types.input.remote.ProxyConnectionArgs), dialErrorLimit: -1, perDialTimeout: 30 } } : {}),
    })),
  );
}

/**
 * A fragment of cloud-config that a layer contributes to a host's user data. The OpenStack layer
 * merges fragments in order (lists are concatenated) and validates the result with cloud-init's schema.
 */
export interface CloudInitPart {
  readonly packages?: readonly string[];
  readonly write_files?: readonly { path: string; content: string; permissions?: string; owner?: string }[];
  /** Shell commands; each entry runs as `sh -c` by cloud-init. */
  readonly runcmd?: readonly (string | readonly string[])[];
  readonly bootcmd?: readonly (string | readonly string[])[];
}
