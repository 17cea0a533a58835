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
