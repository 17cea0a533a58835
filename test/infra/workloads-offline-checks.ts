// Checks shared by the per-stack workloads tests (one Pulumi program run per test file).
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { expect } from "vitest";
import { parseAllDocuments } from "yaml";
import { scriptOfRootCommand } from "../../infra/cluster/shell.js";
import { assetText, type OfflineRun } from "../../infra/offline-engine.js";

interface Probe {
  exec?: { command: string[] };
  tcpSocket?: unknown;
  httpGet?: unknown;
  grpc?: unknown;
}

export function checkWorkloads(run: OfflineRun, services: number): void {
  const uploads = run.resources.filter((r) => r.type === "command:remote:CopyToRemote" && String(r.inputs.remotePath).startsWith("/opt/testbed/manifests/"));
  expect(uploads.map((u) => u.inputs.remotePath).sort()).toEqual(
    ["ditg-receiver.yaml", "namespaces.yaml", "scale-backend.yaml", "scale-services.yaml"].map((f) => `/opt/testbed/manifests/${f}`),
  );
  // Uploads and the apply go over the master's connection, which holds the private key as a secret.
  for (const u of uploads) expect(Object.keys(u.inputs.connection as object)).toEqual(["$secret"]);

  const scaled = parseAllDocuments(assetText(uploads.find((u) => String(u.inputs.remotePath).endsWith("scale-services.yaml"))!.inputs.source)!).map((d) => d.toJS());
  expect(scaled).toHaveLength(services);
  for (const svc of scaled.filter((s) => s.spec.type === "NodePort")) expect(svc.spec.externalTrafficPolicy).toBe("Local");

  const receiverDocs = parseAllDocuments(assetText(uploads.find((u) => String(u.inputs.remotePath).endsWith("ditg-receiver.yaml"))!.inputs.source)!).map((d) => d.toJS());
  const deployment = receiverDocs.find((d) => d.kind === "Deployment");
  const service = receiverDocs.find((d) => d.kind === "Service");
  expect(service.spec.ports.map((p: { nodePort: number }) => p.nodePort)).toContain(30900);
  const container = deployment.spec.template.spec.containers[0];
  // A TCP or HTTP probe resets the signaling connection, which kills ITGRecv: exec checks only.
  for (const probe of [container.startupProbe, container.readinessProbe, container.livenessProbe] as Probe[]) {
    expect(probe.exec?.command.length).toBeGreaterThan(0);
    expect(probe.tcpSocket ?? probe.httpGet ?? probe.grpc).toBeUndefined();
  }

  const apply = run.resources.find((r) => r.name === "workloads-apply")!;
  expect(apply.type).toBe("command:remote:Command");
  // No triggers: a new set is an update of the one command (its create names each file's hash, and
  // checks the uploaded file against it before applying it).
  expect(apply.inputs.triggers).toBeUndefined();
  const script = scriptOfRootCommand(apply.inputs.create as string);
  for (const u of uploads) {
    const hash = createHash("sha256").update(assetText(u.inputs.source)!).digest("hex");
    expect(script).toContain(`echo '${hash}  ${String(u.inputs.remotePath)}' | sha256sum --check --status`);
  }
  expect(script).toContain("kubectl apply --server-side");
  execFileSync("shellcheck", ["-s", "bash", "-"], { input: script });

  const endpoints = run.outputs.ditgEndpoints as Record<string, { address: string; signalingPort: number; dataPort: number }>;
  expect(Object.keys(endpoints).sort()).toEqual(["ipv4", "ipv6"]);
  expect(endpoints.ipv4).toMatchObject({ signalingPort: 30900, dataPort: 31000 });
  expect(endpoints.ipv4!.address).toMatch(/^198\.18\.1\./);
}
