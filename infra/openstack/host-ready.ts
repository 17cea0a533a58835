// The readiness check of one host, run over SSH before anything that depends on the host: its
// cloud-init finished, its own setup succeeded, and the facts the measured path relies on hold on
// the host itself (data NICs under their stable names, the router's forwarding, the link cap).
import type { Scenario } from "../../scenario/schema.js";
import { shellAssignments } from "../cluster/shell.js";
import type { HostRole } from "../hosts.js";
import type { LabPlan } from "./address-plan.js";
import { BOOTSTRAP_FAILED_FILE, cappedNics, guestShapes, HOST_READY_MARKER, routerSysctls } from "./cloud-init.js";

/** What a host must show before it is used. */
export interface HostExpectations {
  readonly role: HostRole;
  /** Data NICs by their stable names. */
  readonly nics: readonly string[];
  /** sysctl name -> value that must hold (the router's forwarding). */
  readonly sysctls: Readonly<Record<string, string>>;
  /** NICs that must carry the tbf link cap (linkShaping guest). */
  readonly cappedNics: readonly string[];
}

export function hostExpectations(s: Pick<Scenario, "families" | "linkShaping" | "linkMbps">, plan: LabPlan, role: HostRole): HostExpectations {
  return {
    role,
    nics: plan.ports.filter((p) => p.role === role && p.interfaceName !== undefined).map((p) => p.interfaceName!),
    sysctls: role === "router" ? routerSysctls(s) : {},
    cappedNics: guestShapes(s) ? cappedNics(plan, role) : [],
  };
}

/** Waits for cloud-init, then checks the host's own setup; prints the setup's marker. */
export function hostReadyScript(e: HostExpectations): string {
  const sysctls = Object.entries(e.sysctls).map(([k, v]) => `${k}=${v}`);
  return `set -euo pipefail
${shellAssignments({ ROLE: e.role, NICS: e.nics.join(" "), SYSCTLS: sysctls.join(" "), CAPPED: e.cappedNics.join(" "), FAILED: BOOTSTRAP_FAILED_FILE, MARKER: HOST_READY_MARKER })}
# 0 done, 2 done with recoverable errors, 1 failed: the reasons below say more than the code.
status=0
cloud-init status --wait >/dev/null || status=$?
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
cat "$MARKER"`;
}
