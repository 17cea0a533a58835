// Connection setup in the local lab: the probe (measure/connection-setup.ts, connection-setup-probe.c)
// built once per lab with the host's compiler, its listener in the pod namespace, the probe in the
// client namespace.
import { spawn } from "node:child_process";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  describeProbeResult,
  parseProbeOutput,
  SETUP_PROBE_BINARY,
  setupListenArgs,
  setupLog,
  setupProbeArgs,
  setupProbeCompileCommand,
  type SetupProbeResult,
  type SetupProbeRun,
} from "../measure/connection-setup.js";
import { exec } from "./netns.js";
import type { LabTopology } from "./topology.js";

export interface SetupRun extends SetupProbeRun {
  readonly family: "ipv4" | "ipv6";
  /** The namespaces of the probe and of its listener; default the paper's path: the client, and worker 1's pod. */
  readonly roles?: { readonly client: string; readonly listener: string; readonly source: string };
  /** Where to write the D-ITG-format log. */
  readonly logPath: string;
}

export interface SetupOutcome {
  readonly result: SetupProbeResult;
  readonly output: string;
}

function collect(child: ReturnType<typeof spawn>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    let stdout = "";
    let stderr = "";
    child.stdout?.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr?.on("data", (d: Buffer) => (stderr += d.toString()));
    child.once("error", reject);
    child.once("close", (code) => resolve({ code, stdout, stderr }));
  });
}

/** The compiler the lab builds the probe with: clang is among the lab's tools (scripts/deps.sh), cc may not be. */
const LAB_COMPILER = "clang";

/** The probe built for this lab (once, into the lab's run directory). */
export function labSetupProbe(topology: LabTopology): string {
  const binary = join(topology.runDir, SETUP_PROBE_BINARY);
  if (!existsSync(binary)) {
    const r = exec(setupProbeCompileCommand(binary, LAB_COMPILER), { timeoutMs: 120_000 });
    if (r.status !== 0) throw new Error(`building the connection-setup probe failed: ${(r.stderr || r.stdout).trim()}`);
  }
  return binary;
}

/**
 * Starts the pod's listener on the data port (dual-stack), runs the probe from the client namespace,
 * stops the listener and writes the log. The data port is free between D-ITG flows: ITGRecv binds it
 * only while a flow runs.
 */
export async function runSetupProbe(topology: LabTopology, run: SetupRun): Promise<SetupOutcome> {
  const binary = labSetupProbe(topology);
  const roles = run.roles ?? { client: "client", listener: "pod" };
  const listener = topology.spawn(roles.listener, setupListenArgs(binary, run.port));
  const listenerDone = collect(listener);
  try {
    // The listener either says it listens or exits (a taken port): no timer races its start.
    await new Promise<void>((resolve, reject) => {
      let out = "";
      listener.stdout!.on("data", (d: Buffer) => {
        out += d.toString();
        if (out.includes("ready")) resolve();
      });
      void listenerDone.then(({ code, stderr }) => reject(new Error(`connection-setup listener on port ${run.port} exited with ${code}: ${stderr.trim()}`)));
    });
    const { code, stdout, stderr } = await collect(topology.spawn(roles.client, setupProbeArgs(binary, run)));
    let result: SetupProbeResult;
    try {
      result = parseProbeOutput(stdout);
    } catch (error) {
      throw new Error(`${(error as Error).message}; exit ${code}${stderr.trim() ? `: ${stderr.trim()}` : ""}`);
    }
    writeFileSync(
      run.logPath,
      setupLog(result, { source: run.roles?.source ?? topology.addresses.client[run.family], destination: run.address, destinationPort: run.port }),
    );
    return { result, output: describeProbeResult(result) };
  } finally {
    if (listener.exitCode === null && listener.signalCode === null) listener.kill("SIGTERM");
    await listenerDone.catch(() => undefined);
  }
}
