// The cloud backend's choice of ITGRecv on a node, run for real: receiver "pods" are processes named
// ITGRecv, each in a network and UTS namespace of its own with its pod's name as hostname, inside a
// PID namespace of the test so that no other ITGRecv of this machine is seen.
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { receiverPidScript } from "../../backends/cloud.js";

const isRoot = process.getuid?.() === 0;
const dir = mkdtempSync(path.join(tmpdir(), "receiver-pid-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Runs `body` in a new PID namespace after starting one ITGRecv pod per hostname; prints the pods' pids, then body's output. */
function onNode(pods: readonly string[], body: string): { code: number; pods: number[]; out: string; err: string } {
  const script = `set -u
cp /bin/sleep ${dir}/ITGRecv
pids=""
for host in ${pods.join(" ")}; do
  unshare --net --uts sh -c "hostname $host && exec ${dir}/ITGRecv 600" &
  pids="$pids $!"
done
# Each process is named ITGRecv only after its hostname is set (exec follows hostname).
timeout 60 sh -c 'until [ "$(pgrep -c -x ITGRecv)" = ${pods.length} ]; do sleep 0.05; done' || { echo "pods did not start" >&2; exit 90; }
echo "pods$pids"
( ${body.replace(/\n/g, "\n  ")}
)
code=$?
kill $pids 2>/dev/null
exit $code`;
  const r = spawnSync("unshare", ["--pid", "--fork", "--mount-proc", "bash", "-c", script], { encoding: "utf8", timeout: 120_000 });
  const [first, ...rest] = r.stdout.split("\n");
  return { code: r.status ?? -1, pods: (first ?? "").split(" ").slice(1).map(Number), out: rest.join("\n").trim(), err: r.stderr.trim() };
}

describe.skipIf(!isRoot)("receiverPidScript on a node (needs root for namespaces)", () => {
  it("picks the ITGRecv of the Deployment's pod where receivers of several paths run", () => {
    const r = onNode(["ditg-receiver-remote-7c9d8-abcde", "ditg-receiver-clusterip-55f6c-xyzzy"], `${receiverPidScript("ditg-receiver-clusterip")}\necho "$pid"`);
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    expect(Number(r.out)).toBe(r.pods[1]);
    const other = onNode(["ditg-receiver-remote-7c9d8-abcde", "ditg-receiver-clusterip-55f6c-xyzzy"], `${receiverPidScript("ditg-receiver-remote")}\necho "$pid"`);
    expect(Number(other.out)).toBe(other.pods[0]);
    // The paper's Deployment's name is a prefix of the others': its pod is told by the whole name.
    const paper = onNode(["ditg-receiver-remote-7c9d8-abcde", "ditg-receiver-5b7c4-fghij"], `${receiverPidScript("ditg-receiver")}\necho "$pid"`);
    expect(Number(paper.out)).toBe(paper.pods[1]);
  });

  it("takes the only receiver pod's ITGRecv whatever its hostname (a node with one receiver)", () => {
    const r = onNode(["node-hostname"], `${receiverPidScript("ditg-receiver")}\necho "$pid"`);
    expect(r.code).toBe(0);
    expect(Number(r.out)).toBe(r.pods[0]);
  });

  it("fails naming what is missing: no ITGRecv, or none of the Deployment among several", () => {
    const none = onNode([], `${receiverPidScript("ditg-receiver")}\necho "$pid"`);
    expect(none.code).toBe(3);
    expect(none.err).toBe("no ITGRecv process on this node: the receiver pod is not running");
    const other = onNode(["ditg-receiver-remote-6d4f9-aaaaa", "ditg-receiver-clusterip-6d4f9-bbbbb"], `${receiverPidScript("ditg-receiver")}\necho "$pid"`);
    expect({ code: other.code, err: other.err, out: other.out }).toEqual({ code: 3, err: "no ITGRecv process of deployment ditg-receiver on this node", out: "" });
  });
});
