// The D-ITG receiver: two ITGRecv processes in one pod on the worker, behind a NodePort Service.
//
// Two ITGRecv. ITGRecv takes no new session in the second it waits before it closes a finished flow
// (backends/ditg-close-wait.ts): the pod runs a second one on ports of its own (scenario
// receiver.alternate), behind NodePorts of its own, so that a flow can start while the one before it
// closes on the other. The start script starts the second in the background and execs the first;
// the checks pass only while both listen, and a container whose second ITGRecv died fails its
// liveness check and is restarted.
//
// Bind address. One `ITGRecv -a ::` serves both families: IPv4 flows arrive on its dual-stack
// sockets as v4-mapped addresses. Observed with Debian d-itg 2.8.1-r1023-6 on loopback inside a
// network namespace: UDP, TCP and rttm flows to 127.0.0.1 and UDP and TCP flows to ::1 all delivered
// their packets to one `-a ::` receiver. It holds only while net.ipv6.bindv6only is 0 (the kernel
// default of every new network namespace); with 1, the IPv4 flows fail. `-a 0.0.0.0` instead serves
// IPv4 only (the IPv6 UDP flow "finished" with 0 packets received). So: `-a ::` when IPv6 is enabled
// (the start script refuses to run if bindv6only is 1), `-a 0.0.0.0` on an IPv4-only testbed.
//
// Ports. The data port cannot share the signaling port's number: ITGRecv listens for signaling on
// TCP, and a TCP data flow on the same number fails to bind ("Error on bind to receiver side").
// The receiver therefore holds two NodePort numbers.
//
// Robustness. No TCP probe touches the signaling port: a reset connection there kills ITGRecv. The
// probes are exec checks that read the kernel's socket table. SIGPIPE is ignored before exec (ITGRecv
// leaves it at its default, which kills the process); kubelet restarts a dead ITGRecv.
//
// Image. The default is a stock Debian image: an init container downloads the pinned d-itg and its
// one missing library into an emptyDir, and the receiver installs them from there with dpkg at every
// start (offline, about a second). A container restart reuses the downloaded packages; only a new pod
// downloads again. The image built from workloads/Dockerfile carries d-itg already, and then both
// steps do nothing.
import { RECEIVER_INSTANCES, receiverPortKeys, type ReceiverInstance, type Scenario } from "../scenario/schema.js";

/** The Debian package version the receiver runs (Debian 12 "bookworm"); workloads/Dockerfile pins the same. */
export const DITG_DEBIAN_VERSION = "2.8.1-r1023-6";
/** d-itg's one dependency missing from debian:bookworm-slim. */
export const LIBSCTP_DEBIAN_VERSION = "1.0.19+dfsg-2";

/** Where the init container leaves the .deb files for the receiver container. */
export const PACKAGE_DIR = "/var/cache/ditg";
/** Receiver logs (`ITGSend -x /logs/NAME`) are written here inside the pod... */
export const RECEIVER_LOG_DIR = "/logs";
/**
 * ...and land here on the worker (a hostPath volume), where `testbed campaign` fetches them over the
 * management network with scp: no copy through the API server, nothing sent over the measured path.
 */
export const RECEIVER_NODE_LOG_DIR = "/var/lib/dataplane-testbed/ditg-logs";
/** Receiver and sender log buffer, in records (D-ITG's default is 50). */
export const LOG_BUFFER_RECORDS = 1000;

type ReceiverScenario = Pick<Scenario, "receiver" | "families">;

/** The address ITGRecv binds its data sockets to. */
export function receiverBindAddress(s: Pick<Scenario, "families">): "::" | "0.0.0.0" {
  return s.families.includes("ipv6") ? "::" : "0.0.0.0";
}

/** The argument vector of one of the pod's ITGRecv (the first unless told). */
export function itgRecvArgs(s: ReceiverScenario, instance: ReceiverInstance = 0): string[] {
  return ["ITGRecv", "-Sp", String(receiverPortKeys(s, instance).signalingPort), "-a", receiverBindAddress(s), "-q", String(LOG_BUFFER_RECORDS)];
}

/** The init container's script: fetch the pinned packages unless the image already has ITGRecv. */
export function packageFetchScript(): string {
  return [
    "set -eu",
    "if command -v ITGRecv >/dev/null 2>&1; then exit 0; fi",
    `cd ${PACKAGE_DIR}`,
    "apt-get -qq update",
    `apt-get -qq -o APT::Sandbox::User=root download d-itg=${DITG_DEBIAN_VERSION} libsctp1=${LIBSCTP_DEBIAN_VERSION}`,
    "",
  ].join("\n");
}

/** The receiver container's script: install if needed, check the sysctl the design relies on, exec ITGRecv. */
export function receiverStartScript(s: ReceiverScenario): string {
  const lines = [
    "set -eu",
    "if ! command -v ITGRecv >/dev/null 2>&1; then",
    `  dpkg -i ${PACKAGE_DIR}/*.deb >/dev/null`,
    "fi",
  ];
  if (receiverBindAddress(s) === "::") {
    lines.push(
      'if [ "$(cat /proc/sys/net/ipv6/bindv6only)" != 0 ]; then',
      '  echo "net.ipv6.bindv6only is not 0: ITGRecv -a :: would not receive IPv4 flows" >&2',
      "  exit 1",
      "fi",
    );
  }
  // The second in the background, the first as the container's process (it handles the preStop's SIGINT).
  lines.push("trap '' PIPE", `${itgRecvArgs(s, 1).join(" ")} &`, `exec ${itgRecvArgs(s, 0).join(" ")}`, "");
  return lines.join("\n");
}

/**
 * Exit 0 while a socket listens on the signaling port of each of the pod's ITGRecv, judged from
 * /proc/net/tcp{,6} alone: it never connects, so it cannot send the reset that would kill ITGRecv.
 */
export function signalingListenCheck(s: Pick<Scenario, "receiver">): string {
  const ports = [...new Set(RECEIVER_INSTANCES.map((i) => receiverPortKeys(s, i).signalingPort))];
  // local_address rem_address st: state 0A is LISTEN.
  return ports.map((port) => `grep -Eqs '^ *[0-9]+: [0-9A-F]+:${port.toString(16).toUpperCase().padStart(4, "0")} [0-9A-F]+:0000 0A ' /proc/net/tcp6 /proc/net/tcp`).join(" && ");
}
