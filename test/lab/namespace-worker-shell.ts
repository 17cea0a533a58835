// A lab topology's worker namespace as the worker's hop probes reach a stack's worker: scripts run by
// sh as root in the worker's network namespace (nsenter --net only: mounts stay in this host's mount
// namespace, as a real worker's stay in its own, so a bpffs mounted by one script is there for the
// next), and file copies from this host's file system.
import { spawn } from "node:child_process";
import { copyFileSync } from "node:fs";
import type { CommandResult } from "../../backends/cloud.js";
import type { WorkerShell } from "../../backends/worker-hops/module.js";

export function namespaceWorkerShell(namespace: string): WorkerShell & { readonly scripts: string[] } {
  const scripts: string[] = [];
  return {
    scripts,
    run: (script) =>
      new Promise<CommandResult>((resolve, reject) => {
        scripts.push(script);
        const child = spawn("nsenter", [`--net=/run/netns/${namespace}`, "sh", "-c", script], { stdio: ["ignore", "pipe", "pipe"] });
        let stdout = "";
        let stderr = "";
        child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
        child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
        child.once("error", reject);
        child.once("close", (code) => resolve({ code: code ?? 255, stdout, stderr }));
      }),
    fetch: async (remotePath, localPath) => copyFileSync(remotePath, localPath),
  };
}
