// The cluster's kubeconfig: kubeadm's admin.conf, read by the command that built the cluster, with
// its server rewritten to where the Pulumi host reaches the API server.
import { parseDocument } from "yaml";
import { hostPort } from "./kubeadm.js";

export function apiServerUrl(host: string, port: number): string {
  return `https://${hostPort(host, port)}`;
}

interface KubeconfigCluster {
  name?: string;
  cluster?: { server?: string; "certificate-authority-data"?: string };
}

/**
 * Returns the kubeconfig with every cluster's server set to `server`. Throws, without echoing the
 * text (it holds a client key), when it is not a kubeconfig with a cluster CA and a client credential.
 */
export function kubeconfigWithServer(text: string, server: string): string {
  const doc = parseDocument(text);
  const config = doc.toJS() as { kind?: string; clusters?: KubeconfigCluster[]; users?: { user?: Record<string, unknown> }[] } | null;
  const problem = !config || config.kind !== "Config"
    ? "is not a kubeconfig (kind: Config)"
    : !config.clusters?.length || config.clusters.some((c) => !c.cluster?.server || !c.cluster["certificate-authority-data"])
      ? "has no cluster with a server and a certificate-authority-data"
      : !config.users?.some((u) => u.user && ("client-certificate-data" in u.user || "token" in u.user))
        ? "has no user with a client certificate or token"
        : undefined;
  if (problem) throw new Error(`the master's /etc/kubernetes/admin.conf ${problem} (${text.length} bytes read)`);
  config!.clusters!.forEach((_, i) => doc.setIn(["clusters", i, "cluster", "server"], server));
  return doc.toString({ lineWidth: 0 });
}

export interface Endpoint {
  readonly host: string;
  readonly port: number;
}

/** Parses testbed:kubernetes.apiEndpoint ("HOST:PORT" or "[IPv6]:PORT"). */
export function parseEndpoint(text: string): Endpoint {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(text);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port < 1 || port > 65535) {
    throw new Error(`testbed:kubernetes.apiEndpoint "${text}": accepted: HOST:PORT or [IPv6]:PORT with a port from 1 to 65535, e.g. 127.0.0.1:6443`);
  }
  return { host: (m[1] ?? m[2])!, port };
}

/** True for 127.0.0.0/8, ::1 and localhost: the endpoint is a local SSH forward. */
export function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/** The SSH command that forwards the local endpoint to the API server through the bastion. */
export function apiTunnelCommand(args: { local: Endpoint; apiServer: string; apiPort: number; user: string; bastion: string }): string {
  const bind = args.local.host.includes(":") ? `[${args.local.host}]` : args.local.host;
  const target = args.apiServer.includes(":") ? `[${args.apiServer}]` : args.apiServer;
  return `ssh -N -L ${bind}:${args.local.port}:${target}:${args.apiPort} ${args.user}@${args.bastion}`;
}
