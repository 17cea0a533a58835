// A lab run in its own process, for the crash and signal tests: builds a topology (and with
// --ebpf the eBPF dataplane), starts a long-lived process inside the pod namespace, prints what it
// made as one JSON line, then waits to be killed (or with --exit leaves at once without tearing down).
import { createTopology } from "../../lab/topology.js";
import { setupEbpfDataplane } from "../../lab/dataplanes/ebpf/kernel.js";
import { fixtureServiceSet } from "./ebpf-fixtures.js";

const topology = createTopology({ linkMbps: 0 });
const dataplane = process.argv.includes("--ebpf")
  ? setupEbpfDataplane(topology, { services: fixtureServiceSet({ nodePort: 2, clusterIp: 1 }) })
  : undefined;
const sleeper = topology.spawn("pod", ["sleep", "600"], { stdio: "ignore" });
process.stdout.write(
  `${JSON.stringify({ prefix: topology.prefix, sleeperPid: sleeper.pid, bpf: dataplane?.objectIds() ?? null })}\n`,
);
if (process.argv.includes("--exit")) setTimeout(() => process.exit(0), 100);
else setInterval(() => undefined, 1 << 30);
