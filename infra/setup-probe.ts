// The probes `testbed campaign` runs on the hosts, each built where it runs: the client (the probe,
// towards the worker's NodePort) and the workers (its listener, which the campaign starts in a
// receiver pod's network namespace on the pod's node: worker 1 for the paper's path, worker 2 for
// the remote paths' receivers). Two of them, one component each:
//   the connection-setup probe (measure/connection-setup-probe.c), stack output `connectionSetupProbe`,
//     its listener in the receiver pod's namespace;
//   the programming probe (measure/programming-probe.c), stack output `programmingProbe`, its
//     listener in the scaled Services' backend pod's namespace (backends/cloud-programming.ts).
// Each host builds each from its one C source with its own cc (gcc and the C library's headers are
// in the hosts' cloud-init), as the client's other tools come with the stack; the outputs say where.
//
// A new source is an update of both commands (its hash is in their script), which build and
// install it again; nothing is removed on delete: the binary goes with the server.
import { readFileSync } from "node:fs";
import * as pulumi from "@pulumi/pulumi";
import * as command from "@pulumi/command";
import { SETUP_PROBE_BINARY, SETUP_PROBE_SOURCE } from "../measure/connection-setup.js";
import { PROBE_SOURCE as PROGRAMMING_PROBE_SOURCE, PROGRAMMING_PROBE_BINARY } from "../measure/programming-probe.js";
import { asRootCommand, commandTimeouts, shellAssignments, type ScriptBound } from "./cluster/shell.js";
import type { HostAccess, NamedHost } from "./hosts.js";
import { contentHash, remoteArtifactPath, uploadArtifact } from "./remote-files.js";

/** A probe the stack builds on the client and the worker. */
export interface HostProbe {
  /** What it is, in messages. */
  readonly what: string;
  /** Its C source in this checkout. */
  readonly sourceFile: string;
  /** Where the source goes on each host, under the artifact root. */
  readonly artifact: string;
  /** Where each host has the built probe: on the login's PATH. */
  readonly binary: string;
}

/** Where the source goes on each host, under the artifact root. */
export const SETUP_PROBE_ARTIFACT = `tools/${SETUP_PROBE_BINARY}.c`;
/** Where each host has the probe: on the login's PATH. */
export const SETUP_PROBE_PATH = `/usr/local/bin/${SETUP_PROBE_BINARY}`;
export const SETUP_PROBE: HostProbe = { what: "the connection-setup probe", sourceFile: SETUP_PROBE_SOURCE, artifact: SETUP_PROBE_ARTIFACT, binary: SETUP_PROBE_PATH };
/** Where each host has the programming probe. */
export const PROGRAMMING_PROBE_PATH = `/usr/local/bin/${PROGRAMMING_PROBE_BINARY}`;
export const PROGRAMMING_PROBE: HostProbe = {
  what: "the programming probe",
  sourceFile: PROGRAMMING_PROBE_SOURCE,
  artifact: `tools/${PROGRAMMING_PROBE_BINARY}.c`,
  binary: PROGRAMMING_PROBE_PATH,
};
/** Every probe the stack builds, with the stack output that says where (a rehearsal builds them where the stack would). */
export const STACK_PROBES: readonly { readonly output: "connectionSetupProbe" | "programmingProbe"; readonly probe: HostProbe }[] = [
  { output: "connectionSetupProbe", probe: SETUP_PROBE },
  { output: "programmingProbe", probe: PROGRAMMING_PROBE },
];
/** Seconds cc may take (one file, -O2). */
const CC_TIMEOUT_S = 300;

/** Where the stack built a probe, per host (stack outputs `connectionSetupProbe`, `programmingProbe`). */
export interface SetupProbePaths {
  readonly client: string;
  readonly worker: string;
}

/**
 * Builds the uploaded source (checked against its hash) with the host's cc as the source says
 * (`cc -O2`), installs it at `binary` and prints the path.
 */
export function probeBuildScript(a: { source: string; sha256: string; binary: string }): string {
  return `set -euo pipefail
${shellAssignments({ SOURCE: a.source, SOURCE_SHA256: a.sha256, BINARY: a.binary, CC_TIMEOUT_S })}
echo "$SOURCE_SHA256  $SOURCE" | sha256sum --check --status || { echo "$SOURCE is not the probe source this step uploaded" >&2; exit 1; }
if ! command -v cc >/dev/null 2>&1; then
  echo "this host has no cc: its cloud-init installs gcc and libc6-dev" >&2
  exit 1
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
if ! timeout "$CC_TIMEOUT_S" cc -O2 -o "$work/probe" "$SOURCE" 2>"$work/cc.err"; then
  echo "cc could not build $SOURCE:" >&2
  tail -n 20 "$work/cc.err" >&2
  exit 1
fi
install -D -m 0755 "$work/probe" "$BINARY"
echo "$BINARY"`;
}

export interface SetupProbeArgs {
  readonly client: HostAccess;
  readonly worker: HostAccess;
  /** The workers after worker 1 (testbed:workers): each builds it at the same path, where the paths' receivers run. */
  readonly moreWorkers?: readonly NamedHost[];
  /** Which probe; default the connection-setup probe. */
  readonly probe?: HostProbe;
  /** The probe's C source; default: the one of this checkout. */
  readonly source?: string;
}

export class SetupProbe extends pulumi.ComponentResource {
  /** Resolves once both hosts built it. */
  readonly paths: pulumi.Output<SetupProbePaths>;

  constructor(name: string, args: SetupProbeArgs, opts?: pulumi.ComponentResourceOptions) {
    super("testbed:tools:SetupProbe", name, {}, opts);
    const probe = args.probe ?? SETUP_PROBE;
    const source = args.source ?? readFileSync(probe.sourceFile, "utf8");
    const bound: ScriptBound = { limitS: CC_TIMEOUT_S + 60, waitingFor: `cc to build ${probe.what}` };
    const script = asRootCommand(probeBuildScript({ source: remoteArtifactPath(probe.artifact), sha256: contentHash(source), binary: probe.binary }), bound);
    const build = (role: string, host: HostAccess) => {
      const connection = pulumi.secret(pulumi.output(host.connection));
      const upload = uploadArtifact(`${name}-${role}-source`, { connection, artifactPath: probe.artifact, content: source }, { parent: this, dependsOn: [host.ready], deletedWith: host.server });
      return new command.remote.Command(
        `${name}-${role}-build`,
        { connection, create: script },
        { parent: this, dependsOn: [upload, host.ready], deletedWith: host.server, ignoreChanges: ["connection"], customTimeouts: commandTimeouts(bound) },
      );
    };
    const client = build("client", args.client);
    const worker = build("worker", args.worker);
    const more = (args.moreWorkers ?? []).map((w) => build(w.name, w.access));
    // From each build's own output: the output says where the probe is once it is there (on every worker).
    this.paths = pulumi.all([client.stdout, worker.stdout, ...more.map((m) => m.stdout)]).apply(([c, w]) => ({ client: c.trim(), worker: w.trim() }));
    this.registerOutputs({ paths: this.paths });
  }
}
