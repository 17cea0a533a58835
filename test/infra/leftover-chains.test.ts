// The chains a removed Service leaves in kube-proxy's nftables table, read by the script the cloud's
// programming runs before it restarts kube-proxy (ClusterDataplane.leftoverChains): against a real
// kube-proxy-shaped table in a network namespace of its own, which a kubectl stand-in execs into.
import { spawnSync } from "node:child_process";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { clusterDataplane } from "../../infra/cluster/dataplanes/index.js";

const isRoot = process.getuid?.() === 0;
const ns = `leftover-${process.pid}`;
const dir = mkdtempSync(path.join(tmpdir(), "leftover-chains-"));

/** kube-proxy's table as its sync leaves it: one live Service, one whose chains it flushed (svc-2), both families. */
const TABLES = ["ip", "ip6"]
  .map(
    (t) => `table ${t} kube-proxy {
  chain service-AAAA1111-scale/svc-1/tcp/http { }
  chain endpoint-BBBB2222-scale/svc-1/tcp/http__10.0.0.1/80 { }
  chain service-CCCC3333-scale/svc-2/tcp/http { }
  chain endpoint-DDDD4444-scale/svc-2/tcp/http__10.0.0.2/80 { }
  chain external-EEEE5555-scale/svc-20/tcp/http { }
  chain services { }
}
table ${t} other {
  chain endpoint-FFFF6666-scale/svc-2/tcp/http__10.0.0.9/80 { }
}`,
  )
  .join("\n");

function run(service: string, families = "ipv4 ipv6"): { status: number | null; stdout: string; stderr: string } {
  const script = `set -euo pipefail\nWORKER_NODE=testbed-worker\nSERVICE_FAMILIES="${families}"\nSERVICE=${service}\n${clusterDataplane("nftables").leftoverChains!}`;
  const r = spawnSync("bash", ["-c", script], { encoding: "utf8", env: { ...process.env, PATH: `${dir}:${process.env.PATH}` } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe.skipIf(!isRoot)("kube-proxy nftables: the chains a removed Service left (needs root for a namespace)", () => {
  beforeAll(() => {
    expect(spawnSync("ip", ["netns", "add", ns]).status).toBe(0);
    const load = spawnSync("ip", ["netns", "exec", ns, "nft", "-f", "-"], { input: TABLES, encoding: "utf8" });
    expect(load.stderr).toBe("");
    // kubectl as the script uses it: the worker's kube-proxy pod, and exec on its node (this namespace).
    writeFileSync(
      path.join(dir, "kubectl"),
      `#!/bin/bash
case "$*" in
  *"get pods -l k8s-app=kube-proxy --field-selector spec.nodeName=testbed-worker -o name") echo pod/kube-proxy-abcde ;;
  *"exec pod/kube-proxy-abcde -- "*) shift 5; exec ip netns exec ${ns} "$@" ;;
  *) echo "kubectl stand-in: $* is not modelled" >&2; exit 1 ;;
esac
`,
    );
    chmodSync(path.join(dir, "kubectl"), 0o755);
  });
  afterAll(() => {
    spawnSync("ip", ["netns", "delete", ns]);
    rmSync(dir, { recursive: true, force: true });
  });

  it("prints each chain of the removed Service in kube-proxy's tables of each family, and nothing of a Service whose name it prefixes or of another table", () => {
    const r = run("scale/svc-2");
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    expect(r.stdout.trim().split("\n")).toEqual([
      "service-CCCC3333-scale/svc-2/tcp/http",
      "endpoint-DDDD4444-scale/svc-2/tcp/http__10.0.0.2/80",
      "service-CCCC3333-scale/svc-2/tcp/http",
      "endpoint-DDDD4444-scale/svc-2/tcp/http__10.0.0.2/80",
    ]);
  });

  it("prints nothing once they are deleted", () => {
    expect(run("scale/svc-3")).toEqual({ status: 0, stdout: "", stderr: "" });
  });

  it("fails, saying so, when the chains cannot be read", () => {
    const r = run("scale/svc-2", "ipv4 ipx");
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain("service family 'ipx': accepted: ipv4, ipv6");
    writeFileSync(path.join(dir, "kubectl"), "#!/bin/bash\necho pod/kube-proxy-abcde\n[ \"$3\" != exec ] || { echo 'error: unable to upgrade connection' >&2; exit 1; }\n");
    const unreadable = run("scale/svc-2");
    expect(unreadable.status).not.toBe(0);
    expect(unreadable.stderr).toContain("nft list chains ip in pod/kube-proxy-abcde failed");
  });
});
