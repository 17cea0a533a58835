// The apply of a further path, run with bash against a kubectl stand-in: it applies the checked
// file, refuses a pod on the wrong worker, waits (bounded) for a ready endpoint in every family, and
// says what it waited for when it gives up.
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { REMOTE_ARTIFACT_ROOT } from "../../infra/remote-files.js";
import { pathApplyScript, pathDeleteScript } from "../../infra/workloads.js";
import { testScenario } from "../fixtures/scenario.js";

const work = fs.mkdtempSync(path.join(os.tmpdir(), "testbed-path-apply-"));
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

// kubectl as the path's apply calls it: the pods' node from $POD_NODE, the EndpointSlices' readiness from $READY.
const bin = path.join(work, "bin");
fs.mkdirSync(bin);
fs.writeFileSync(
  path.join(bin, "kubectl"),
  `#!/usr/bin/env bash
echo "$*" >>"$CALLS"
case "$*" in
  "apply --server-side"*) ;;
  *"rollout status deployment/"*"--timeout=600s") ;;
  *"get pods -l app.kubernetes.io/name="*) printf '%s' "$POD_NODE" ;;
  *"get endpointslices -l kubernetes.io/service-name=ditg-receiver-clusterip"*)
    printf 'ditg-receiver-clusterip IPv4 %s\\nditg-receiver-clusterip IPv6 %s\\nsvc-00001 IPv6 true\\n' "$READY" "$READY" ;;
  *"delete deployment/ditg-receiver-clusterip service/ditg-receiver-clusterip deployment/ditg-client --ignore-not-found --wait=false") ;;
  *) echo "unexpected kubectl $*" >&2; exit 99 ;;
esac
`,
  { mode: 0o755 },
);

const s = testScenario({ paths: ["nodeport-local", "clusterip"], workers: 2 });
const manifest = path.join(work, "manifests/ditg-clusterip.yaml");
fs.mkdirSync(path.dirname(manifest), { recursive: true });
fs.writeFileSync(manifest, "kind: List\n");
const sha256 = createHash("sha256").update("kind: List\n").digest("hex");

function run(env: Record<string, string>, script = pathApplyScript(s, "clusterip", {
  file: { name: "ditg-clusterip.yaml", sha256 },
  placement: [
    { deployment: "ditg-receiver-clusterip", node: "testbed-worker-2" },
    { deployment: "ditg-client", node: "testbed-worker" },
  ],
  waitS: 2,
  pollS: 1,
})) {
  const calls = path.join(work, `calls-${Math.random().toString(16).slice(2)}`);
  const r = spawnSync("bash", ["-c", script.replaceAll(REMOTE_ARTIFACT_ROOT, work)], { encoding: "utf8", env: { ...process.env, ...env, CALLS: calls, PATH: `${bin}:${process.env.PATH}` } });
  return { ...r, calls: fs.existsSync(calls) ? fs.readFileSync(calls, "utf8").trim().split("\n") : [] };
}

describe("a further path's apply", () => {
  it("applies, finds each pod on its worker and a ready endpoint in every family", () => {
    // The stand-in answers one node for every pod: the placement checked here is the receiver's alone.
    const r = run({ POD_NODE: "testbed-worker-2", READY: "true" }, pathApplyScript(s, "clusterip", { file: { name: "ditg-clusterip.yaml", sha256 }, placement: [{ deployment: "ditg-receiver-clusterip", node: "testbed-worker-2" }], waitS: 2, pollS: 1 }));
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    expect(r.stdout.trim().split("\n").at(-1)).toBe("path clusterip ready");
    expect(r.calls[0]).toBe(`apply --server-side --force-conflicts --field-manager=dataplane-testbed -f ${manifest}`);
  });

  it("refuses a pod the scheduler put on another worker", () => {
    const r = run({ POD_NODE: "testbed-worker", READY: "true" });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/^the pod of ditg-receiver-clusterip runs on 'testbed-worker'; the clusterip path places it on testbed-worker-2$/m);
  });

  it("gives up after its wait when the receiver Service has no ready endpoint, saying so", () => {
    const r = run({ POD_NODE: "testbed-worker-2", READY: "false" }, pathApplyScript(s, "clusterip", { file: { name: "ditg-clusterip.yaml", sha256 }, placement: [{ deployment: "ditg-receiver-clusterip", node: "testbed-worker-2" }], waitS: 2, pollS: 1 }));
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/^after 2 s Service ditg-receiver-clusterip has a ready endpoint in 0 of its 2 families$/m);
  });

  it("refuses a file that is not the one uploaded, before applying anything", () => {
    const r = run({ POD_NODE: "testbed-worker-2", READY: "true" }, pathApplyScript(s, "clusterip", { file: { name: "ditg-clusterip.yaml", sha256: "0".repeat(64) }, placement: [], waitS: 2, pollS: 1 }));
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/is not the manifest this step uploaded/);
    expect(r.calls).toEqual([]);
  });

  it("removes the path's receiver, Service and client pod, and nothing else", () => {
    const r = run({}, pathDeleteScript(s, "clusterip"));
    expect(r.status).toBe(0);
    expect(r.calls).toEqual(["-n ditg delete deployment/ditg-receiver-clusterip service/ditg-receiver-clusterip deployment/ditg-client --ignore-not-found --wait=false"]);
  });
});
