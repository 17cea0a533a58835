// Records what the stack's measurement commands print, from a real run on this host: the very
// scripts of infra/measurement.ts. The runs' script against a real ITGRecv on loopback, then the
// pairing script against a real sshd (standing for the bastion, the client and the worker) that
// fetches the logs with scp through ProxyJump and decodes them with infra/measurement-decode.ts, all
// inside private network and mount namespaces (so that the scenario's ports and sshd cannot collide
// with anything else on the host). The recordings are the offline engine's stdout of those commands
// (infra/offline-fixtures.ts).
//
// Run as root on Linux with d-itg and openssh-server installed:
//   npx tsx scripts/record-measurement-fixture.ts [--runs 2] [--seconds 2]
// writes infra/fixtures/measurement-<profile>-<family>.txt (runs) and .pairing.txt for both
// profiles and both families.
import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import type { Family } from "../scenario/cidr.js";
import { FAMILIES, parseScenario, PLACEHOLDERS } from "../scenario/schema.js";
import { CHECKOUT_DIR, measurementPlan, measurementScript, pairingScript, type MeasuredProfile } from "../infra/measurement.js";
import { itgRecvArgs } from "../workloads/receiver.js";

const run = promisify(execFile);

export const FIXTURE_DIR = resolve(dirname(fileURLToPath(import.meta.url)), "../infra/fixtures");
export const PROFILES: readonly MeasuredProfile[] = ["latency", "throughput"];

export function fixturePath(profile: MeasuredProfile, family: Family, command: "runs" | "pairing" = "runs"): string {
  return join(FIXTURE_DIR, `measurement-${profile}-${family}${command === "pairing" ? ".pairing" : ""}.txt`);
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
  for (const tool of ["ITGSend", "ITGRecv", "unshare", "ip", "ss", "ssh", "scp", "ssh-keygen", "/usr/sbin/sshd"]) {
    try {
      await run("sh", ["-c", `command -v ${tool}`]);
    } catch {
      return `needs ${tool} (Debian packages d-itg, util-linux, iproute2, openssh-client, openssh-server)`;
    }
  }
  return undefined;
}

const SPLIT = "=== testbed-recorder: pairing follows";

// Inside the namespaces: loopback up; the cloud receiver's ITGRecv command with SIGPIPE ignored (as
// in the receiver pod); an sshd on the loopback that lets the test's key log in as root, with the SFTP
// subsystem of Ubuntu's stock sshd_config (OpenSSH 9's scp speaks SFTP); wait for
// both ports; the runs' script; then the pairing script in the checkout with the key on its standard
// input. Stops ITGRecv (it handles SIGINT) and sshd.
const NAMESPACE_RUNNER = `set -eu
runs_script="$1"; pairing_script="$2"; port="$3"; work="$4"; checkout="$5"; shift 5
ip link set lo up
sh -c "trap '' PIPE; exec \\"\\$@\\"" sh "$@" >"$work/itgrecv.out" 2>&1 &
receiver=$!
ssh-keygen -q -t ed25519 -N '' -C testbed-host -f "$work/host_key"
ssh-keygen -q -t ed25519 -N '' -C testbed-pairing -f "$work/user_key"
cp "$work/user_key.pub" "$work/authorized_keys"
printf '%s\\n' "HostKey $work/host_key" "ListenAddress 127.0.0.1" "PermitRootLogin prohibit-password" "UsePAM no" "StrictModes no" \\
  "AuthorizedKeysFile $work/authorized_keys" "PidFile $work/sshd.pid" "Subsystem sftp internal-sftp" >"$work/sshd_config"
mount -t tmpfs testbed-sshd /run
mkdir -p /run/sshd
/usr/sbin/sshd -D -f "$work/sshd_config" -E "$work/sshd.log" &
sshd=$!
trap 'kill -INT "$receiver" 2>/dev/null || true; kill "$sshd" 2>/dev/null || true' EXIT
listening() { [ -n "$(ss -Hltn "sport = :$1")" ]; }
for _ in $(seq 1 300); do
  if listening "$port" && listening 22; then break; fi
  sleep 0.1
done
if ! listening "$port"; then echo "ITGRecv does not listen on $port:" >&2; cat "$work/itgrecv.out" >&2; exit 1; fi
if ! listening 22; then echo "sshd does not listen on 22:" >&2; cat "$work/sshd.log" >&2; exit 1; fi
bash -c "$runs_script" >"$work/runs.out"
(cd "$checkout" && bash -c "$pairing_script" <"$work/user_key" >"$work/pairing.out")
cat "$work/runs.out"
echo "${SPLIT}"
cat "$work/pairing.out"
`;

/** What the two commands printed. */
export interface RecordedMeasurement {
  readonly runs: string;
  readonly pairing: string;
}

/**
 * Runs the stack's measurement on loopback: the runs' script, then the pairing through a real sshd,
 * and returns both outputs. The scenario is the default one with the given profile, family, runs and
 * flow length; ITGRecv listens on the signaling NodePort and data port the scenario names, as the
 * sender reaches them on the worker.
 */
export async function runMeasurementOnLoopback(m: LoopbackMeasurement): Promise<RecordedMeasurement> {
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
    const plan = { ...measurementPlan(s, s.measure!, endpoint), senderDir: work, receiverDir: work, receiverNodeDir: work };
    // No NodePort translation on loopback: ITGRecv listens on the signaling NodePort number itself.
    const receiver = itgRecvArgs({ ...s, receiver: { ...s.receiver, signalingPort: endpoint.signalingPort } });
    // The runs' output the pairing names is not known before the runs: a fixed stand-in names it here.
    const pairing = pairingScript(plan, { bastion: "127.0.0.1", client: "127.0.0.1", worker: "127.0.0.1", user: "root" }, `recorded ${m.runId}`);
    const { stdout } = await run(
      "unshare",
      ["--net", "--mount", "sh", "-c", NAMESPACE_RUNNER, "sh", measurementScript(plan), pairing, String(endpoint.signalingPort), work, CHECKOUT_DIR, ...receiver],
      { maxBuffer: 16 << 20, timeout: (m.runs * (m.flowSeconds + 60) + 60) * 1000 },
    );
    const at = stdout.indexOf(`${SPLIT}\n`);
    if (at < 0) throw new Error(`the recorder printed no "${SPLIT}" line:\n${stdout.slice(-2000)}`);
    return { runs: stdout.slice(0, at), pairing: stdout.slice(at + SPLIT.length + 1) };
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
      const recorded = await runMeasurementOnLoopback({ profile, family, runs, flowSeconds, runId: "recorded" });
      await writeFile(fixturePath(profile, family, "runs"), recorded.runs);
      await writeFile(fixturePath(profile, family, "pairing"), recorded.pairing);
      const paired = [...recorded.pairing.matchAll(/^(decoded|failed)\b/gm)].map((v) => v[1]).join(", ");
      console.log(`${fixturePath(profile, family)} and its pairing: ${runs} runs (${paired})`);
    }
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((err: unknown) => {
    console.error(err instanceof Error ? err.message : String(err));
    process.exit(1);
  });
}
