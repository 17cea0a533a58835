// The connection-setup probe on the hosts that run it: the client (the probe, towards the worker's
// NodePort) and the worker (its listener, which `testbed campaign` starts in the receiver pod's
// network namespace). Each host builds it from the one C source (measure/connection-setup-probe.c)
// with its own cc (gcc and the C library's headers are in the hosts' cloud-init), as the client's
// other tools come with the stack; the stack output `connectionSetupProbe` says where
// (backends/cloud.ts reads it).
//
// A new source is an update of both commands (its hash is in their script), which build and
// install it again; nothing is removed on delete: the binary goes with the server.
import { readFileSync } from "node:fs";
import * as pulumi from "@pulumi/pulumi";
import * as command from "@pulumi/command";
import { SETUP_PROBE_BINARY, SETUP_PROBE_SOURCE } from "../measure/connection-setup.js";
import { asRootCommand, commandTimeouts, shellAssignments, type ScriptBound } from "./cluster/shell.js";
import type { HostAccess } from "./hosts.js";
import { contentHash, remoteArtifactPath, uploadArtifact } from "./remote-files.js";

/** Where the source goes on each host, under the artifact root. */
export const SETUP_PROBE_ARTIFACT = `tools/${SETUP_PROBE_BINARY}.c`;
/** Where each host has the probe: on the login's PATH. */
export const SETUP_PROBE_PATH = `/usr/local/bin/${SETUP_PROBE_BINARY}`;
/** Seconds cc may take (one file, -O2). */
const CC_TIMEOUT_S = 300;
const BUILD_BOUND: ScriptBound = { limitS: CC_TIMEOUT_S + 60, waitingFor: "cc to build the connection-setup probe" };

/** Where the stack built the probe, per host (stack output `connectionSetupProbe`). */
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
  /** The probe's C source; default: the one of this checkout. */
  readonly source?: string;
}

export class SetupProbe extends pulumi.ComponentResource {
  /** Resolves once both hosts built it. */
  readonly paths: pulumi.Output<SetupProbePaths>;

  constructor(name: string, args: SetupProbeArgs, opts?: pulumi.ComponentResourceOptions) {
    super("testbed:tools:SetupProbe", name, {}, opts);
    const source = args.source ?? readFileSync(SETUP_PROBE_SOURCE, "utf8");
    const script = asRootCommand(probeBuildScript({ source: remoteArtifactPath(SETUP_PROBE_ARTIFACT), sha256: contentHash(source), binary: SETUP_PROBE_PATH }), BUILD_BOUND);
    const build = (role: "client" | "worker", host: HostAccess) => {
      const connection = pulumi.secret(pulumi.output(host.connection));
      const upload = uploadArtifact(`${name}-${role}-source`, { connection, artifactPath: SETUP_PROBE_ARTIFACT, content: source }, { parent: this, dependsOn: [host.ready], deletedWith: host.server });
      return new command.remote.Command(
        `${name}-${role}-build`,
        { connection, create: script },
        { parent: this, dependsOn: [upload, host.ready], deletedWith: host.server, ignoreChanges: ["connection"], customTimeouts: commandTimeouts(BUILD_BOUND) },
      );
    };
    const client = build("client", args.client);
    const worker = build("worker", args.worker);
    // From each build's own output: the output says where the probe is once it is there.
    this.paths = pulumi.all([client.stdout, worker.stdout]).apply(([c, w]) => ({ client: c.trim(), worker: w.trim() }));
    this.registerOutputs({ paths: this.paths });
  }
}
