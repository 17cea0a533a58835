// When a sweep step is measurable: every scaled Service has a ready endpoint in every family, and the
// worker's dataplane holds exactly the step's scaled Services, no more and no fewer. A step down
// (10000 -> 1000) prunes Services from the API at once, while kube-proxy or Cilium drops them from
// the worker's rules or maps only at its next sync: a check that counted only the missing ones would
// pass at once and measure the larger rule set under the smaller step's name.
//
// The gate is counted where the dataplane keeps the Services (infra/cluster/dataplanes/*.ts
// programmedClusterIps), and only the scaled Services count there: the receiver's, the API server's
// and kube-dns's share the tables. A stale entry of a pruned Service still names it (kube-proxy's rule
// comments and chain names, Cilium's service flags), so it counts as one too many.
//
// The apply step runs the gate after `kubectl apply` (infra/workloads.ts); stepGateCommand runs it
// alone, for `testbed campaign` to check a step again when no `pulumi up` ran (a resumed campaign at
// an unchanged count). Both end with the same step line.
import type { Scenario } from "../scenario/schema.js";
import { SCALED_SERVICE_NAME_PATTERN } from "../workloads/service-set.js";
import { clusterDataplane } from "./cluster/dataplanes/index.js";
import { readinessWaitS } from "./cluster/readiness.js";
import { asRootCommand, shellAssignments, type ScriptBound } from "./cluster/shell.js";

/**
 * What `kubectl get endpointslices -o jsonpath=...` prints per slice: its Service, its address type
 * and whether each endpoint is ready (`SERVICE IPv4 true true`), one line each.
 */
export const ENDPOINT_READINESS_JSONPATH =
  '{range .items[*]}{.metadata.labels.kubernetes\\.io/service-name}{" "}{.addressType}{" "}{.endpoints[*].conditions.ready}{"\\n"}{end}';

/** The line the gate ends with; parseStepReadiness reads it. */
export const STEP_LINE_PREFIX = "step ";
/** Seconds between two reads of the endpoints or of the dataplane. */
export const STEP_POLL_S = 5;
export const ADMIN_KUBECONFIG = "/etc/kubernetes/admin.conf";

/** When a step became measurable, and what the worker held then (the gate's last line). */
export interface StepReadiness {
  readonly services: number;
  /** Seconds after the apply (or after the gate started, run alone) until every endpoint was ready. */
  readonly endpointsReadyAfterS: number;
  /** Seconds until the worker's dataplane held exactly the step's Services. */
  readonly programmedAfterS: number;
  /** Scaled Services the worker's dataplane held when the gate passed (equal to services, or it fails). */
  readonly programmedServices: number;
}

export type GateScenario = Pick<Scenario, "workloads" | "services" | "families" | "dataplane">;

export interface StepGateArgs {
  /** The worker's node name: its dataplane is the one that must hold the Services. */
  readonly workerNode: string;
  /** Scaled Services of the step; default: the scenario's testbed:services. */
  readonly services?: number;
  /** Seconds the gate waits for both conditions together; default: readinessWaitS of the step. */
  readonly waitS?: number;
  /** Seconds between reads; default STEP_POLL_S. */
  readonly pollS?: number;
}

/** The variables the gate's body reads, for the top of a script. */
export function stepGateAssignments(s: GateScenario, a: StepGateArgs): string {
  const services = a.services ?? s.services;
  const waitS = a.waitS ?? readinessWaitS(s, services);
  const pollS = a.pollS ?? STEP_POLL_S;
  for (const [key, v, min] of [["services", services, 0], ["waitS", waitS, 1], ["pollS", pollS, 1]] as const) {
    if (!Number.isInteger(v) || v < min) throw new Error(`step gate ${key} ${v}: accepted: a whole number >= ${min}`);
  }
  return `${shellAssignments({
    DATAPLANE: s.dataplane,
    SCALED_NS: s.workloads.namespace,
    SCALED_NAME: SCALED_SERVICE_NAME_PATTERN,
    KEEP: services,
    FAMILIES: s.families.length,
    SERVICE_FAMILIES: s.families.join(" "),
    WORKER_NODE: a.workerNode,
    WAIT_S: waitS,
    POLL_S: pollS,
  })}
# Read by the dataplane's snippet.
export SERVICE_FAMILIES`;
}

/** Shell functions the apply script and the gate share: time stamps and the scratch directory. */
export const GATE_PRELUDE = `export KUBECONFIG=${ADMIN_KUBECONFIG}
# comm and sort must agree on one order.
export LC_ALL=C
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
waiting_for="the start"
# Ended by its time limit (asRootCommand): say what it was waiting for.
trap 'echo "stopped while waiting for $waiting_for" >&2; exit 124' TERM
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT`;

/**
 * The gate itself (bash, after stepGateAssignments and GATE_PRELUDE, with $started the time it
 * counts from): waits, then prints the step line. One deadline bounds both waits; a failure says what
 * the worker held (how many extra and missing ClusterIPs, with examples).
 */
export function stepGateBody(s: Pick<Scenario, "dataplane">): string {
  return `# The ClusterIPs the worker's dataplane forwards to a backend, each with its Service (the ${s.dataplane} dataplane's own view).
# (Not indented: the dataplane's snippet may hold a program in a language that minds indentation. A
# subshell: the snippet's exit ends one read, not the gate.)
programmed_cluster_ips() (
${clusterDataplane(s.dataplane).programmedClusterIps}
)
# "CLUSTER_IP NAMESPACE/NAME" lines of the scaled Services only, once each.
scaled_only() {
  awk -v ns="$SCALED_NS" -v pattern="$SCALED_NAME" '{ split($2, id, "/") } id[1] == ns && id[2] ~ pattern { print $1, $2 }' | sort -u
}
# Up to three lines of comm's column (13: extra, 23: missing) as " (e.g. ...)"; awk reads to the end, as a
# head would not: comm's SIGPIPE under pipefail would end the gate while it waits.
examples() {
  comm "-$1" "$work/expected" "$work/programmed" | awk 'NR <= 3 { printf "%s%s %s", (NR > 1 ? ", " : " (e.g. "), $2, $1 } END { if (NR > 0) printf ")" }'
}
deadline=$(( $(date +%s) + WAIT_S ))

# 1. Every scaled Service of the step has a ready endpoint in every family. Until then kube-proxy
#    writes REJECT rules for the ones without, which is not the rule set the step claims to measure.
waiting_for="a ready endpoint of each of the $KEEP scaled Services in each of its $FAMILIES families"
want=$((KEEP * FAMILIES))
while :; do
  ready="$(kubectl -n "$SCALED_NS" get endpointslices -o jsonpath='${ENDPOINT_READINESS_JSONPATH}' \\
    | awk -v pattern="$SCALED_NAME" -v keep="$KEEP" '{ number = $1; sub(/^[^0-9]*/, "", number) }
        $1 ~ pattern && number + 0 <= keep && $3 ~ /true/ && !(($1 " " $2) in seen) { seen[$1 " " $2] = 1; n++ }
        END { print n + 0 }')" || ready=0
  if [ "$ready" -ge "$want" ]; then break; fi
  if [ "$(date +%s)" -ge "$deadline" ]; then
    echo "after \${WAIT_S} s only $ready of $want (Service, family) pairs have a ready endpoint; kube-controller-manager writes them at its --kube-api-qps" >&2
    exit 1
  fi
  sleep "$POLL_S"
done
endpoints_ready="$(since "$started")"

# 2. The worker's dataplane holds exactly the step's scaled Services: every ClusterIP of the step,
#    and none of a larger step's (pruned from the API, perhaps still in the rules or maps).
waiting_for="the $DATAPLANE dataplane on $WORKER_NODE to hold exactly the $KEEP scaled Services of the step"
kubectl -n "$SCALED_NS" get services -o jsonpath='{range .items[*]}{.metadata.name}{" "}{.spec.clusterIPs[*]}{"\\n"}{end}' \\
  | awk -v ns="$SCALED_NS" -v pattern="$SCALED_NAME" '$1 ~ pattern { for (i = 2; i <= NF; i++) print $i, ns "/" $1 }' | sort -u >"$work/expected"
count="$(awk '{ print $2 }' "$work/expected" | sort -u | wc -l)"
if [ "$count" -ne "$KEEP" ]; then
  echo "namespace $SCALED_NS holds $count scaled Services, the step asks for $KEEP" >&2
  exit 1
fi
while :; do
  if programmed_cluster_ips >"$work/table" 2>"$work/table.err"; then
    scaled_only <"$work/table" >"$work/programmed"
    missing="$(comm -23 "$work/expected" "$work/programmed" | wc -l)"
    extra="$(comm -13 "$work/expected" "$work/programmed" | wc -l)"
    held="$(awk '{ print $2 }' "$work/programmed" | sort -u | wc -l)"
    if [ "$missing" -eq 0 ] && [ "$extra" -eq 0 ]; then break; fi
    found="holds $held scaled Services: $extra ClusterIPs more than the step's$(examples 13), $missing of its ClusterIPs missing$(examples 23)"
  else
    found="could not be read: $(tail -n 3 "$work/table.err" | tr '\\n' ' ')"
  fi
  if [ "$(date +%s)" -ge "$deadline" ]; then
    echo "after \${WAIT_S} s the $DATAPLANE dataplane on $WORKER_NODE $found; the step asks for exactly $KEEP scaled Services ($(wc -l <"$work/expected") ClusterIPs)" >&2
    exit 1
  fi
  sleep "$POLL_S"
done
programmed="$(since "$started")"
echo "${STEP_LINE_PREFIX}services=$KEEP endpointsReadyAfterS=$endpoints_ready programmedAfterS=$programmed programmedServices=$held"`;
}

/** The gate alone, as a bash script for the master: waits, then prints the step line. */
export function stepGateScript(s: GateScenario, a: StepGateArgs): string {
  return `set -euo pipefail
# step gate
${stepGateAssignments(s, a)}
${GATE_PRELUDE}
started="$(now)"
${stepGateBody(s)}
`;
}

/** How long the gate alone may run: its wait and the reads of the last round. */
export function stepGateBound(s: GateScenario, a: StepGateArgs): ScriptBound {
  const services = a.services ?? s.services;
  return {
    limitS: (a.waitS ?? readinessWaitS(s, services)) + 300,
    waitingFor: `the ${s.dataplane} dataplane on ${a.workerNode} to hold exactly the step's ${services} scaled Services`,
  };
}

/**
 * The remote command line of the gate alone, for the master's login (sudo): what `testbed campaign`
 * runs to check a step without an apply. Its stdout ends with the step line (parseStepReadiness).
 */
export function stepGateCommand(s: GateScenario, a: StepGateArgs): string {
  return asRootCommand(stepGateScript(s, a), stepGateBound(s, a));
}

export function parseStepReadiness(stdout: string): StepReadiness {
  const line = stdout.split("\n").find((l) => l.startsWith(STEP_LINE_PREFIX));
  const field = (name: string) => {
    const m = new RegExp(`\\b${name}=([0-9.]+)(?:\\s|$)`).exec(line ?? "");
    if (!m) throw new Error(`the step gate printed no "${STEP_LINE_PREFIX}... ${name}=..." line; its output ends: ${stdout.trim().split("\n").slice(-3).join(" / ")}`);
    return Number(m[1]);
  };
  return {
    services: field("services"),
    endpointsReadyAfterS: field("endpointsReadyAfterS"),
    programmedAfterS: field("programmedAfterS"),
    programmedServices: field("programmedServices"),
  };
}
