// The shell scripts the worker's hop probes run on the worker, as root, in its own network namespace
// (backends/worker-hops/module.ts sends them). POSIX sh (Ubuntu's dash); every value is quoted;
// each prints `key=value` lines that parseLines() reads back. Pure.
//
// Layout of the work directory (nothing outside it but the tc filters, clsact qdiscs the probes
// added, and two mounts inside it):
//   src/            the probes' and the reader's C, copied over by the install script
//   testbed-hop-probe.o, hop-reader   built on the worker against its own headers
//   bpffs/          a private bpffs; tc pins the maps under bpffs/tc/globals/ (TC_BPF_MNT)
//   state/filters   "host|pod DEVICE DIRECTION" per attached probe
//   state/qdiscs    "host|pod DEVICE" per clsact qdisc the probes added
//   state/podns     the receiver pod's network namespace, bind-mounted while probes sit in it
//   state/cgroups   "CGROUP ATTACH_TYPE PROGRAM" per connect hook attached (the client node's setup runs)
//   testbed-hop-connect.o   the connect call's hooks (hops/hop-connect.c), on the client node; loaded
//                   by bpftool into bpffs/connect/ onto the probes' pinned hop_connects
//   runs/NAME/      a reader's state (pid, lock, summary.json or error); runs/NAME.hops its records
import { CONNECT_HOOKS, CONNECT_MAP } from "../../hops/build.js";
import { CILIUM_TUNNEL_DEVICE, WORKER_CONNECT_OBJECT, WORKER_PLACES, WORKER_PROBE_OBJECT, WORKER_PROBE_PREF, type WorkerInterface, type WorkerPoint } from "./points.js";

/** Quotes a value for sh. */
export function q(value: string): string {
  return /^[A-Za-z0-9_./:=@%+-]+$/.test(value) ? value : `'${value.replace(/'/g, `'\\''`)}'`;
}

/** Tools the scripts use, with the package that brings each on Ubuntu. */
export const WORKER_TOOLS: readonly { tool: string; ubuntu: string }[] = [
  { tool: "clang", ubuntu: "clang" },
  { tool: "tc", ubuntu: "iproute2" },
  { tool: "ip", ubuntu: "iproute2" },
  { tool: "nsenter", ubuntu: "util-linux" },
  { tool: "mount", ubuntu: "mount" },
  { tool: "mountpoint", ubuntu: "util-linux" },
  { tool: "flock", ubuntu: "util-linux" },
  { tool: "timeout", ubuntu: "coreutils" },
  { tool: "pgrep", ubuntu: "procps" },
];
/** What the connect call's hooks need beyond the probes (the client node of clusterip): bpftool loads and attaches cgroup programs, which tc cannot. */
export const CONNECT_TOOLS: readonly { tool: string; ubuntu: string }[] = [{ tool: "bpftool", ubuntu: "linux-tools-$(uname -r)" }];
/** Headers the build needs: the kernel's UAPI (linux/bpf.h) and the C library's. */
export const WORKER_HEADERS: readonly { file: string; ubuntu: string }[] = [
  { file: "/usr/include/linux/bpf.h", ubuntu: "linux-libc-dev" },
  { file: "/usr/include/stdio.h", ubuntu: "libc6-dev" },
];

/** Pure: the `key=value` lines of a script's output (a key may repeat). */
export function parseLines(stdout: string): { key: string; value: string }[] {
  return stdout
    .split("\n")
    .map((l) => /^([a-z-]+)=(.*)$/.exec(l))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => ({ key: m[1]!, value: m[2]! }));
}

const HEADER = (workDir: string) => ["set -eu", "umask 022", `WORK=${q(workDir)}`];

/** Runs a command in the host's namespace or in the receiver pod's (bind-mounted at state/podns). */
const IN_NS = [
  "in_ns() {",
  '  where=$1; shift',
  '  if [ "$where" = pod ]; then nsenter --net="$WORK/state/podns" "$@"; else "$@"; fi',
  "}",
];

/** Removes every probe filter the state lists (its own only: the filter at the probes' priority must be theirs), the qdiscs they added when left empty, the pod's namespace mount. */
const DETACH = [
  ...IN_NS,
  "probe_at() {",
  `  in_ns "$1" tc filter show dev "$2" "$3" pref ${WORKER_PROBE_PREF} 2>/dev/null | grep -qF ${q(`${WORKER_PROBE_OBJECT}:[tc/`)}`,
  "}",
  "detach_all() {",
  '  if [ -s "$WORK/state/filters" ]; then',
  '    while read -r where dev dir; do',
  '      if probe_at "$where" "$dev" "$dir"; then',
  `        in_ns "$where" tc filter del dev "$dev" "$dir" pref ${WORKER_PROBE_PREF} || echo "left=$where $dev $dir"`,
  "      else",
  '        echo "missing=$where $dev $dir"',
  "      fi",
  '    done < "$WORK/state/filters"',
  "  fi",
  '  : > "$WORK/state/filters"',
  '  if [ -s "$WORK/state/qdiscs" ]; then',
  '    while read -r where dev; do',
  '      if [ -z "$(in_ns "$where" tc filter show dev "$dev" ingress 2>/dev/null)$(in_ns "$where" tc filter show dev "$dev" egress 2>/dev/null)" ]; then',
  '        in_ns "$where" tc qdisc del dev "$dev" clsact 2>/dev/null || true',
  "      fi",
  '    done < "$WORK/state/qdiscs"',
  "  fi",
  '  : > "$WORK/state/qdiscs"',
  '  if [ -s "$WORK/state/cgroups" ]; then',
  '    while read -r cg type prog; do',
  '      bpftool cgroup detach "$cg" "$type" pinned "$WORK/bpffs/connect/$prog" 2>/dev/null || echo "left=connect $prog $cg"',
  '    done < "$WORK/state/cgroups"',
  "  fi",
  '  : > "$WORK/state/cgroups"',
  '  if mountpoint -q "$WORK/state/podns" 2>/dev/null; then umount "$WORK/state/podns"; fi',
  "}",
];

/** What the worker offers: kernel, tc, tools and headers, multiarch include directory, leftovers of an earlier session. */
export function factsScript(workDir: string, tools: readonly { tool: string }[] = WORKER_TOOLS): string {
  return [
    "set -u",
    `WORK=${q(workDir)}`,
    'echo "kernel=$(uname -r)"',
    'echo "tc=$(tc -V 2>&1 | head -n 1)"',
    ...tools.map(({ tool }) => `command -v ${tool} >/dev/null 2>&1 || echo "missing=${tool}"`),
    ...WORKER_HEADERS.map(({ file }) => `[ -e ${q(file)} ] || echo "missing=${file}"`),
    'arch=/usr/include/$(uname -m)-linux-gnu',
    'if [ -d "$arch" ]; then echo "multiarch=$arch"; fi',
    'if [ -e "$WORK" ]; then echo "leftover=$WORK"; fi',
    "",
  ].join("\n");
}

const EOF_MARK = "TESTBED_HOPS_EOF";

/** Copies the sources, builds probe object and reader with the given compiler arguments, mounts the private bpffs. */
export function installScript(workDir: string, sources: Readonly<Record<string, string>>, build: { probe: readonly string[]; reader: readonly string[]; connect?: readonly string[] }): string {
  const files = Object.entries(sources).flatMap(([name, text]) => {
    if (!/^[A-Za-z0-9_.-]+$/.test(name)) throw new Error(`source file name "${name}" is not accepted; accepted: letters, digits, _ . -`);
    if (text.split("\n").includes(EOF_MARK)) throw new Error(`source ${name} holds the line ${EOF_MARK}, which ends its copy`);
    return [`cat > "$WORK/src/${name}" <<'${EOF_MARK}'`, text.endsWith("\n") ? text.slice(0, -1) : text, EOF_MARK];
  });
  return [
    ...HEADER(workDir),
    'mkdir -p "$WORK/src" "$WORK/state" "$WORK/runs" "$WORK/bpffs"',
    'touch "$WORK/state/filters" "$WORK/state/qdiscs" "$WORK/state/cgroups"',
    ...files,
    `clang ${build.probe.map(q).join(" ")}`,
    ...(build.connect ? [`clang ${build.connect.map(q).join(" ")}`] : []),
    `clang ${build.reader.map(q).join(" ")}`,
    'if ! mountpoint -q "$WORK/bpffs"; then mount -t bpf bpf "$WORK/bpffs"; fi',
    'echo "installed=$WORK"',
    "",
  ].join("\n");
}

/**
 * How the pod whose interfaces the probes take is found: a process id; or among the worker's
 * ITGRecv processes, the one whose network namespace holds the pod's address, or without an address
 * the only network namespace any of them runs in (several ITGRecv of one pod share it); or a process
 * of a Deployment's pod by its name and the pod's hostname (the pod's name: the Deployment's and two
 * suffixes), as where several receivers share a node, or for the client pod (its process `sleep`).
 */
export type ReceiverLocator = { readonly pid: number } | { readonly address?: string } | { readonly deployment: string; readonly process: string };

/** The pod's part of the locate script: sets chosen= to a process of the pod, or fails. */
function choosePod(receiver: ReceiverLocator): string[] {
  if ("pid" in receiver) {
    if (!(Number.isInteger(receiver.pid) && receiver.pid > 0)) throw new Error(`receiver.pid: ${receiver.pid} is not a process id`);
    return [`chosen=${receiver.pid}`, 'ADDR=""', '[ -e "/proc/$chosen/ns/net" ] || fail "no process $chosen on the worker"'];
  }
  if ("deployment" in receiver) {
    if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(receiver.deployment)) throw new Error(`receiver.deployment: "${receiver.deployment}" is not a Deployment's name`);
    if (!/^[A-Za-z0-9_.-]{1,15}$/.test(receiver.process)) throw new Error(`receiver.process: "${receiver.process}" is not a process name`);
    return [
      'ADDR=""; chosen=""',
      `for p in $(pgrep -x ${q(receiver.process)} || true); do`,
      '  pod="$(nsenter -t "$p" -u hostname 2>/dev/null || true)"',
      // <deployment>-<template hash>-<suffix>: a prefix alone would take ditg-receiver-remote's for ditg-receiver's.
      '  pod="${pod%-*}"',
      `  if [ "\${pod%-*}" = ${q(receiver.deployment)} ]; then chosen=$p; break; fi`,
      "done",
      `[ -n "$chosen" ] || fail ${q(`no ${receiver.process} process of a pod of deployment ${receiver.deployment} on this node`)}`,
    ];
  }
  const address = receiver.address;
  if (address !== undefined && !/^[0-9a-fA-F.:]+$/.test(address)) throw new Error(`receiver.address: "${address}" is not an IP address`);
  return [
    'PIDS="$(pgrep -x ITGRecv || true)"',
    `ADDR=${address === undefined ? "''" : q(address)}`,
    'chosen=""; inode=""',
    "for p in $PIDS; do",
    '  [ -e "/proc/$p/ns/net" ] || continue',
    '  if [ -n "$ADDR" ] && ! nsenter --net="/proc/$p/ns/net" ip -o addr show | grep -qF " $ADDR/"; then continue; fi',
    '  i=$(stat -L -c %i "/proc/$p/ns/net")',
    '  if [ -n "$inode" ] && [ "$i" != "$inode" ]; then fail "ITGRecv processes $chosen and $p run in two network namespaces${ADDR:+ that hold $ADDR}; name the receiver by its pod address or process id"; fi',
    '  inode=$i; chosen=$p',
    "done",
    '[ -n "$chosen" ] || fail "no ITGRecv process ${ADDR:+holding $ADDR }found (processes: ${PIDS:-none})"',
  ];
}

/**
 * Finds the pod's network namespace (when the probes take a pod's interfaces), its interface and
 * the host side of its veth, whether the tunnel device exists, and lists the filters of every hook
 * the probes may take. Prints tunnel=, pid=, pod-if=, veth=, and per hook `filter=IFACE DIRECTION <tc's line>`.
 */
export function locateScript(nic: string, receiver: ReceiverLocator | undefined, places: readonly WorkerPoint[] = WORKER_PLACES, tunnel = CILIUM_TUNNEL_DEVICE): string {
  const hooks = [...new Set(places.map((p) => `show_hook ${p.iface} ${p.direction}`))];
  const pod = receiver === undefined ? [] : [
    ...choosePod(receiver),
    'NS="/proc/$chosen/ns/net"',
    'if [ -n "$ADDR" ]; then',
    '  POD_IF=$(nsenter --net="$NS" ip -o addr show | awk -v a="$ADDR" \'index($4, a "/") == 1 { print $2; exit }\')',
    "else",
    '  POD_IF=$(nsenter --net="$NS" ip -o addr show scope global | awk \'$2 != "lo" { print $2; exit }\')',
    "fi",
    '[ -n "$POD_IF" ] || fail "the pod\'s network namespace has no interface with ${ADDR:-a global address}"',
    'PEER=$(nsenter --net="$NS" ip -o link show dev "$POD_IF" | sed -n \'s/^[0-9]*: [^@:]*@if\\([0-9]*\\):.*/\\1/p\')',
    '[ -n "$PEER" ] || fail "the pod\'s $POD_IF is not one end of a veth pair"',
    'VETH=$(ip -o link show | awk -F\': \' -v i="$PEER" \'$1 == i { sub(/@.*/, "", $2); print $2; exit }\')',
    '[ -n "$VETH" ] || fail "the peer of the pod\'s $POD_IF (ifindex $PEER) is not in the worker\'s network namespace"',
    'echo "pid=$chosen"',
    'echo "pod-if=$POD_IF"',
    'echo "veth=$VETH"',
  ];
  return [
    "set -eu",
    `NIC=${q(nic)}`,
    `TUNNEL=${q(tunnel)}`,
    'fail() { echo "error=$*"; exit 3; }',
    'ip link show dev "$NIC" >/dev/null 2>&1 || fail "the data NIC $NIC does not exist on the worker"',
    'if ip link show dev "$TUNNEL" >/dev/null 2>&1; then echo "tunnel=$TUNNEL"; else TUNNEL=""; fi',
    ...pod,
    "show_hook() {",
    '  case $1 in',
    '    nic) out=$(tc filter show dev "$NIC" "$2") ;;',
    '    tunnel) if [ -n "$TUNNEL" ]; then out=$(tc filter show dev "$TUNNEL" "$2"); else out=""; fi ;;',
    '    pod-veth) out=$(tc filter show dev "$VETH" "$2") ;;',
    '    pod) out=$(nsenter --net="$NS" tc filter show dev "$POD_IF" "$2") ;;',
    "  esac",
    '  printf \'%s\\n\' "$out" | while IFS= read -r line; do if [ -n "$line" ]; then echo "filter=$1 $2 $line"; fi; done',
    "  return 0",
    "}",
    ...hooks,
    "",
  ].join("\n");
}

export interface AttachPlan {
  /** A process of the pod whose interfaces the probes take (locateScript's pid=); none when they take no pod's. */
  readonly pid?: number;
  readonly devices: Readonly<Partial<Record<WorkerInterface, string>>>;
  readonly runName: string;
  /** The reader's arguments after its path (hops/build.ts readerArgs). */
  readonly reader: readonly string[];
  /** The probes to attach; default the paper's worker's. */
  readonly places?: readonly WorkerPoint[];
}

/** Attaches every probe as the first filter of its hook, then starts the run's reader detached. Prints hook= listings and ready. */
export function attachScript(workDir: string, plan: AttachPlan): string {
  if (!/^[A-Za-z0-9_.-]+$/.test(plan.runName)) throw new Error(`run name "${plan.runName}" is not accepted; accepted: letters, digits, _ . -`);
  const places = plan.places ?? WORKER_PLACES;
  const where = (iface: WorkerInterface) => (iface === "pod" ? "pod" : "host");
  const device = (p: WorkerPoint) => {
    const d = plan.devices[p.iface];
    if (d === undefined) throw new Error(`the probe ${p.program} sits on the ${p.iface} interface, which the plan does not name`);
    return d;
  };
  if (places.some((p) => p.iface === "pod") && plan.pid === undefined) throw new Error("the probes take a pod's interface: the plan needs a process of the pod (pid)");
  const attach = places.map((p) => `attach ${where(p.iface)} ${q(device(p))} ${p.direction} ${p.program}`);
  return [
    ...HEADER(workDir),
    ...DETACH,
    ...(plan.pid !== undefined
      ? [
          // The pod's namespace stays reachable under one name for the run, whatever its processes do.
          'touch "$WORK/state/podns"',
          // Bound afresh: one left by a failed run may be an earlier pod's.
          'if mountpoint -q "$WORK/state/podns"; then umount "$WORK/state/podns"; fi',
          `mount --bind /proc/${plan.pid}/ns/net "$WORK/state/podns"`,
        ]
      : []),
    "attach() {",
    '  where=$1; dev=$2; dir=$3; prog=$4',
    '  if ! in_ns "$where" tc qdisc show dev "$dev" | grep -q clsact; then',
    '    in_ns "$where" tc qdisc add dev "$dev" clsact',
    '    echo "$where $dev" >> "$WORK/state/qdiscs"',
    "  fi",
    // A probe of an earlier session left behind (its state lost) would hold the priority.
    `  if probe_at "$where" "$dev" "$dir"; then in_ns "$where" tc filter del dev "$dev" "$dir" pref ${WORKER_PROBE_PREF}; fi`,
    `  in_ns "$where" env TC_BPF_MNT="$WORK/bpffs" tc filter add dev "$dev" "$dir" pref ${WORKER_PROBE_PREF} bpf da obj "$WORK/${WORKER_PROBE_OBJECT}" sec "tc/$prog"`,
    '  echo "$where $dev $dir" >> "$WORK/state/filters"',
    '  in_ns "$where" tc filter show dev "$dev" "$dir" | while IFS= read -r line; do if [ -n "$line" ]; then echo "hook=$where $dev $dir $line"; fi; done',
    "  return 0",
    "}",
    ...attach,
    `mkdir -p "$WORK/runs/${plan.runName}"`,
    `"$WORK/hop-reader" ${plan.reader.map(q).join(" ")} 2>&1 | sed 's/^/reader=/'`,
    "",
  ].join("\n");
}

/**
 * Stops the run's reader (it drains what is left and writes its summary), detaches every probe,
 * and makes the records readable for the copy. Prints missing= for a probe that was no longer
 * there (something removed it during the run), summary= or error=.
 */
export function endScript(workDir: string, runName: string): string {
  if (!/^[A-Za-z0-9_.-]+$/.test(runName)) throw new Error(`run name "${runName}" is not accepted; accepted: letters, digits, _ . -`);
  return [
    ...HEADER(workDir),
    ...DETACH,
    `RUN="$WORK/runs/${runName}"`,
    'if [ -s "$RUN/pid" ]; then',
    '  kill -TERM "$(cat "$RUN/pid")" 2>/dev/null || true',
    // The reader holds the lock until it exits: its summary is whole then.
    '  timeout 60 flock "$RUN/lock" true || echo "error=the reader did not end within 60 s"',
    "fi",
    "detach_all",
    'if [ -s "$RUN/summary.json" ]; then echo "summary=$(cat "$RUN/summary.json")"; fi',
    'if [ -s "$RUN/error" ]; then echo "error=$(cat "$RUN/error")"; fi',
    `chmod 644 "$WORK/runs/${runName}.hops" 2>/dev/null || true`,
    "",
  ].join("\n");
}

/**
 * Attaches the connect call's hooks for a setup run on the client node (clusterip): the call's
 * stamp on the cgroup of the client pod's process `pid` (its container's), the done stamp after the
 * socket hooks of the nearest cgroup above it that has any not of the probes (Cilium's socket load
 * balancer, at the node's root cgroup), or on the container's cgroup when none has (kube-proxy).
 * Loads the hooks first (bpftool, onto the probes' pinned hop_connects: attachScript ran). Prints
 * connect-cgroups=CALL DONE and, from the container's cgroup up to the root, `cgroup=DIR <bpftool's
 * JSON>`: the kernel runs a cgroup's hooks before its parents' (multi-attach), so these give the order.
 */
export function connectScript(workDir: string, pid: number): string {
  if (!(Number.isInteger(pid) && pid > 0)) throw new Error(`pid: ${pid} is not a process id`);
  const hooks = Object.entries(CONNECT_HOOKS).map(([name, h]) => `attach_hook "$${h.point === "call" ? "CALL" : "DONE"}" ${h.attachType} ${name}`);
  return [
    ...HEADER(workDir),
    'fail() { echo "error=$*"; exit 3; }',
    `PID=${pid}`,
    '[ -r "/proc/$PID/cgroup" ] || fail "no process $PID on the worker"',
    // The first mount of the whole cgroup v2 hierarchy (mountinfo: field 4 the mount's root in it, 5 the mount point; the type follows the "-").
    `ROOT=$(awk '{ for (i = 7; i <= NF; i++) if ($i == "-") { if ($(i + 1) == "cgroup2" && $4 == "/") { print $5; exit } break } }' /proc/self/mountinfo)`,
    '[ -n "$ROOT" ] || fail "the worker has no cgroup v2 hierarchy mounted; socket hooks attach to cgroup v2"',
    'ROOT=${ROOT%/}',
    `REL=$(awk -F: '$1 == "0" { print $3; exit }' "/proc/$PID/cgroup")`,
    '[ -n "$REL" ] || fail "process $PID is in no cgroup v2 cgroup"',
    'CALL=$ROOT${REL%/}',
    '[ -d "$CALL" ] || fail "the cgroup $CALL of process $PID is not under $ROOT"',
    // Connect hooks of a cgroup not the probes' (bpftool names the attach type connect4 before 5.x, cgroup_inet4_connect after).
    "foreign() {",
    `  bpftool cgroup show "$1" 2>/dev/null | awk '($2 == "connect4" || $2 == "connect6" || $2 == "cgroup_inet4_connect" || $2 == "cgroup_inet6_connect") && $3 !~ /^hc_/ { n++ } END { print n + 0 }'`,
    "}",
    `[ "$(foreign "$CALL")" = 0 ] || fail "the client container's own cgroup $CALL holds connect hooks, which would run before the probe's"`,
    'DONE=""; dir=$CALL',
    'while [ "$dir" != "$ROOT" ] && [ -n "$dir" ]; do',
    '  dir=${dir%/*}',
    '  [ -n "$dir" ] || dir=/',
    '  if [ "$(foreign "$dir")" != 0 ]; then DONE=$dir; break; fi',
    '  [ "$dir" != / ] || break',
    "done",
    '[ -n "$DONE" ] || DONE=$CALL',
    `MAP="$WORK/bpffs/tc/globals/${CONNECT_MAP}"`,
    `[ -e "$MAP" ] || fail "the probes' map $MAP is not pinned (the probes attach first)"`,
    'if [ ! -e "$WORK/bpffs/connect/hc_call4" ]; then',
    '  rm -rf "$WORK/bpffs/connect"',
    `  bpftool prog loadall "$WORK/${WORKER_CONNECT_OBJECT}" "$WORK/bpffs/connect" map name ${CONNECT_MAP} pinned "$MAP"`,
    "fi",
    'attach_hook() {',
    '  bpftool cgroup attach "$1" "$2" pinned "$WORK/bpffs/connect/$3" multi',
    '  echo "$1 $2 $3" >> "$WORK/state/cgroups"',
    "}",
    ...hooks,
    'echo "connect-cgroups=$CALL $DONE"',
    'dir=$CALL',
    "while :; do",
    '  echo "cgroup=$dir $(bpftool -j cgroup show "$dir" 2>/dev/null || echo "[]")"',
    '  if [ "$dir" = "$ROOT" ] || [ "$dir" = / ]; then break; fi',
    '  dir=${dir%/*}',
    '  [ -n "$dir" ] || dir=/',
    "done",
    "",
  ].join("\n");
}

/** Deletes a run's files once copied. */
export function forgetRunScript(workDir: string, runName: string): string {
  if (!/^[A-Za-z0-9_.-]+$/.test(runName)) throw new Error(`run name "${runName}" is not accepted; accepted: letters, digits, _ . -`);
  return [...HEADER(workDir), `rm -rf "$WORK/runs/${runName}" "$WORK/runs/${runName}.hops"`, ""].join("\n");
}

/** Removes everything: readers, probes, qdiscs they added, mounts, the work directory. Prints left= for anything that stayed. */
export function removeScript(workDir: string): string {
  return [
    "set -u",
    `WORK=${q(workDir)}`,
    '[ -e "$WORK" ] || exit 0',
    ...DETACH,
    'for pidfile in "$WORK"/runs/*/pid; do',
    '  [ -s "$pidfile" ] || continue',
    '  kill -TERM "$(cat "$pidfile")" 2>/dev/null || true',
    '  timeout 60 flock "$(dirname "$pidfile")/lock" true || echo "left=reader $(cat "$pidfile")"',
    "done",
    '[ -d "$WORK/state" ] && detach_all',
    'if mountpoint -q "$WORK/bpffs" 2>/dev/null; then umount "$WORK/bpffs" || echo "left=mount $WORK/bpffs"; fi',
    'if mountpoint -q "$WORK/state/podns" 2>/dev/null; then echo "left=mount $WORK/state/podns"; fi',
    'if ! mountpoint -q "$WORK/bpffs" 2>/dev/null && ! mountpoint -q "$WORK/state/podns" 2>/dev/null; then rm -rf "$WORK"; fi',
    '[ -e "$WORK" ] && echo "left=directory $WORK"',
    "exit 0",
    "",
  ].join("\n");
}
