// The readiness check of one host, run over SSH before anything that depends on the host: its
// cloud-init finished, its own setup succeeded, and the facts the measured path relies on hold on
// the host itself (data NICs under their stable names, the router's forwarding, the link cap).
import type { Scenario } from "../../scenario/schema.js";
import { shellAssignments, type ScriptBound } from "../cluster/shell.js";
import { roleOf, type HostName } from "../hosts.js";
import type { LabPlan } from "./address-plan.js";
import { BOOTSTRAP_FAILED_FILE, cappedNics, guestShapes, HOST_READY_MARKER, ROLE_TOOLS, routerSysctls } from "./cloud-init.js";

/** What a host must show before it is used. */
export interface HostExpectations {
  /** The host (its role's name, or worker-N), as its messages name it. */
  readonly host: HostName;
  /** Data NICs by their stable names. */
  readonly nics: readonly string[];
  /** sysctl name -> value that must hold (the router's forwarding). */
  readonly sysctls: Readonly<Record<string, string>>;
  /** NICs that must carry the tbf link cap (linkShaping guest). */
  readonly cappedNics: readonly string[];
  /** Commands and files the role's packages put there (ROLE_TOOLS). */
  readonly tools: { readonly commands: readonly string[]; readonly files: readonly string[] };
}

/** Seconds the check waits for cloud-init: a first boot installs packages and prepares a node. */
export const CLOUD_INIT_WAIT_S = 1500;

/** The check's own limit: cloud-init's wait and the checks after it. */
export function hostReadyBound(): ScriptBound {
  return { limitS: CLOUD_INIT_WAIT_S + 120, waitingFor: "cloud-init to finish the host's first boot" };
}

export function hostExpectations(s: Pick<Scenario, "families" | "linkShaping" | "linkMbps">, plan: LabPlan, host: HostName): HostExpectations {
  const role = roleOf(host);
  return {
    host,
    nics: plan.ports.filter((p) => p.host === host && p.interfaceName !== undefined).map((p) => p.interfaceName!),
    sysctls: role === "router" ? routerSysctls(s) : {},
    cappedNics: guestShapes(s) ? cappedNics(plan, host) : [],
    tools: ROLE_TOOLS[role] ?? { commands: [], files: [] },
  };
}

/**
 * Waits for cloud-init (at most CLOUD_INIT_WAIT_S), then checks the host's own setup; prints the
 * setup's marker. `boot` names what would have restarted the host (HostAccess.boot): a reboot
 * changes it, and the check runs again.
 */
export function hostReadyScript(e: HostExpectations, at: { readonly boot?: string } = {}): string {
  const sysctls = Object.entries(e.sysctls).map(([k, v]) => `${k}=${v}`);
  return `set -euo pipefail
${at.boot ? `# boot: ${at.boot}\n` : ""}${shellAssignments({
  ROLE: e.host,
  NICS: e.nics.join(" "),
  SYSCTLS: sysctls.join(" "),
  CAPPED: e.cappedNics.join(" "),
  TOOLS: e.tools.commands.join(" "),
  TOOL_FILES: e.tools.files.join(" "),
  FAILED: BOOTSTRAP_FAILED_FILE,
  MARKER: HOST_READY_MARKER,
  CLOUD_INIT_WAIT_S,
})}
# 0 done, 2 done with recoverable errors, 1 failed: the reasons below say more than the code.
status=0
timeout "$CLOUD_INIT_WAIT_S" cloud-init status --wait >/dev/null || status=$?
if [ "$status" -eq 124 ]; then
  echo "the $ROLE's cloud-init did not finish within $CLOUD_INIT_WAIT_S s; the end of its log:" >&2
  tail -n 40 /var/log/cloud-init-output.log >&2
  exit 1
fi
if [ -s "$FAILED" ]; then
  echo "the $ROLE's bootstrap failed:" >&2
  cat "$FAILED" >&2
  exit 1
fi
if [ ! -f "$MARKER" ]; then
  echo "the $ROLE's setup did not finish (cloud-init status $status); the end of its log:" >&2
  tail -n 40 /var/log/cloud-init-output.log >&2
  exit 1
fi
for nic in $NICS; do
  if ! ip link show dev "$nic" >/dev/null 2>&1; then
    echo "the $ROLE has no NIC named $nic; its NICs are: $(ls /sys/class/net | tr '\\n' ' ')" >&2
    exit 1
  fi
done
for pair in $SYSCTLS; do
  have="$(sysctl -n "\${pair%%=*}")"
  if [ "$have" != "\${pair#*=}" ]; then
    echo "the $ROLE has \${pair%%=*} = $have, the measured path needs \${pair#*=}" >&2
    exit 1
  fi
done
for nic in $CAPPED; do
  # Read whole, then searched: grep -q on a pipe under pipefail can fail on the writer's SIGPIPE.
  qdiscs="$(tc qdisc show dev "$nic" root)"
  if ! grep -q '^qdisc tbf' <<<"$qdiscs"; then
    echo "the $ROLE's $nic carries no link cap (tbf); testbed:linkShaping guest puts one there" >&2
    exit 1
  fi
done
for tool in $TOOLS; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "the $ROLE has no $tool on PATH: its cloud-init installs it (cloud-init status $status); the end of its log:" >&2
    tail -n 20 /var/log/cloud-init-output.log >&2
    exit 1
  fi
done
for file in $TOOL_FILES; do
  if [ ! -f "$file" ]; then
    echo "the $ROLE has no $file: its cloud-init installs the package that holds it (cloud-init status $status)" >&2
    exit 1
  fi
done
cat "$MARKER"`;
}
