// Records what the stack's measurement command prints, from a real run on this host: the very script
// of infra/measurement.ts, against a real ITGRecv on loopback inside a private network namespace
// (so that the scenario's ports cannot collide with anything else on the host). The recordings are
// the offline engine's stdout of that command (infra/offline-fixtures.ts).
//
// Run as root on Linux with d-itg installed:
//   npx tsx scripts/record-measurement-fixture.ts [--runs 2] [--seconds 2]
// writes infra/fixtures/measurement-<profile>-<family>.txt for both profiles and both families.
import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import type { Family } from "../scenario/cidr.js";
import { FAMILIES, parseScenario, PLACEHOLDERS } from "../scenario/schema.js";
import { measurementPlan, measurementScript, type MeasuredProfile } from "../infra/measurement.js";
import { itgRecvArgs } from "../workloads/receiver.js";

const run = promisify(execFile);

export const FIXTURE_DIR = resolve(dirname(fileURLToPath(import.meta.url)), "../infra/fixtures");
export const PROFILES: readonly MeasuredProfile[] = ["latency", "throughput"];

export function fixturePath(profile: MeasuredProfile, family: Family): string {
  return join(FIXTURE_DIR, `measurement-${profile}-${family}.txt`);
}

export interface LoopbackMeasurement {
  readonly profile: MeasuredProfile;
  readonly family: Family;
  readonly runs: number;
  readonly flowSeconds: number;
  readonly runId: string;
}

/** Why this host cannot run the measurement on loopback, or undefined when it can. */
export async function loopbackUnavailable(): Promise<string | undefined> {
  if (process.platform !== "linux") return "needs Linux (network namespaces)";
  if (process.getuid?.() !== 0) return "needs root (unshare --net)";
  for (const tool of ["ITGSend", "ITGRecv", "ITGDec", "unshare", "ip", "ss"]) {
    try {
      await run("sh", ["-c", `command -v ${tool}`]);
    } catch {
      return `needs ${tool} (Debian packages d-itg, util-linux, iproute2)`;
    }
  }
  return undefined;
}

// Inside the namespace: loopback up, the cloud receiver's ITGRecv command with SIGPIPE ignored (as in
// the receiver pod), wait for its signaling port, run the script, stop ITGRecv (it handles SIGINT).
const NAMESPACE_RUNNER = `set -eu
script="$1"; port="$2"; work="$3"; shift 3
ip link set lo up
sh -c "trap '' PIPE; exec \\"\\$@\\"" sh "$@" >"$work/itgrecv.out" 2>&1 &
receiver=$!
trap 'kill -INT "$receiver" 2>/dev/null || true' EXIT
listening() { [ -n "$(ss -Hltn "sport = :$port")" ]; }
for _ in $(seq 1 100); do
  if listening; then break; fi
  sleep 0.1
done
if ! listening; then echo "ITGRecv does not listen on $port:" >&2; cat "$work/itgrecv.out" >&2; exit 1; fi
bash -c "$script"
`;

/**
 * Runs the stack's measurement script on loopback and returns its stdout. The scenario is the default
 * one with the given profile, family, runs and flow length; ITGRecv listens on the signaling NodePort
 * and data port the scenario names, as the sender reaches them on the worker.
 */
export async function runMeasurementOnLoopback(m: LoopbackMeasurement): Promise<string> {
  const s = parseScenario({
    dataplane: "ebpf",
    ...PLACEHOLDERS,
    measure: { profile: m.profile, family: m.family, runs: m.runs, runId: m.runId },
    sweep: { flowSeconds: m.flowSeconds },
  });
  const work = await mkdtemp(join(tmpdir(), "testbed-measurement-"));
  try {
    const endpoint = {
      address: m.family === "ipv4" ? "127.0.0.1" : "::1",
      signalingPort: s.receiver.signalingNodePort,
      dataPort: s.receiver.dataPort,
      protocols: ["TCP", "UDP"] as const,
    };
    const plan = { ...measurementPlan(s, s.measure!, endpoint), senderDir: work, receiverDir: work };
    // No NodePort translation on loopback: ITGRecv listens on the signaling NodePort number itself.
    const receiver = itgRecvArgs({ ...s, receiver: { ...s.receiver, signalingPort: endpoint.signalingPort } });
    const { stdout } = await run(
      "unshare",
      ["--net", "sh", "-c", NAMESPACE_RUNNER, "sh", measurementScript(plan), String(endpoint.signalingPort), work, ...receiver],
      { maxBuffer: 16 << 20, timeout: (m.runs * (m.flowSeconds + 30) + 30) * 1000 },
    );
    return stdout;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

function flag(name: string, fallback: number): number {
  const at = process.argv.indexOf(name);
  if (at < 0) return fallback;
  const value = Number(process.argv[at + 1]);
  if (!Number.isInteger(value) || value < 1) {
    throw new Error(`${name} ${process.argv[at + 1] ?? ""}: accepted: a whole number >= 1`);
  }
  return value;
}

async function main(): Promise<void> {
  const why = await loopbackUnavailable();
  if (why) throw new Error(`record-measurement-fixture ${why}`);
  const runs = flag("--runs", 2);
  const flowSeconds = flag("--seconds", 2);
  for (const profile of PROFILES) {
    for (const family of FAMILIES) {
      const stdout = await runMeasurementOnLoopback({ profile, family, runs, flowSeconds, runId: "recorded" });
      const file = fixturePath(profile, family);
      await writeFile(file, stdout);
      const verdicts = [...stdout.matchAll(/^status=(\w+)$/gm)].map((v) => v[1]).join(", ");
      console.log(`${file}: ${runs} runs (${verdicts})`);
    }
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((err: unknown) => {
    console.error(err instanceof Error ? err.message : String(err));
    process.exit(1);
  });
}
