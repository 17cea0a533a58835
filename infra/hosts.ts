// What the OpenStack layer hands to the layers above it: hosts, how to reach them, their addresses,
// and the cloud-init parts other layers add to a host's user data.
import * as pulumi from "@pulumi/pulumi";
import type * as command from "@pulumi/command";
import type { Family } from "../scenario/cidr.js";

export const HOST_ROLES = ["bastion", "client", "router", "master", "worker"] as const;
export type HostRole = (typeof HOST_ROLES)[number];

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
