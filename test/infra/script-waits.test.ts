// Every script the program puts on a host bounds its own waits (pulumi-command's customTimeouts do
// not stop a command that runs: its SSH session ignores the deadline). Read from the offline plans of
// every stack, with the measurement on: each remote command's create, update and delete (and the
// script inside), the pairing command on the Pulumi host, each host's cloud-init commands and
// executable files. The rules (script-waits.ts) are checked on planted violations first.
import { beforeAll, describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { planInChild } from "../../cli/diff.js";
import type { PlannedResource } from "../../infra/offline-engine.js";
import { unboundedWaits } from "./script-waits.js";

describe("the rules find what no deadline ends", () => {
  it.each([
    ["cloud-init status --wait >/dev/null || status=$?", "cloud-init status --wait without timeout"],
    ["kubectl -n x rollout status deployment/a", "kubectl rollout status without --timeout"],
    ["kubectl wait --for=condition=Ready nodes --all", "kubectl wait without --timeout"],
    ["helm upgrade --install c c \\\n  --wait", "helm --wait without --timeout"],
    ['out="$(ssh -o ConnectTimeout=20 host true)"', "ssh not under timeout"],
    ["timeout 60 scp -q host:/a /b", "scp without ConnectTimeout"],
    ["curl -fsSL --retry 5 https://example.org/x", "curl without --max-time"],
    ['key="$(curl -fsSL https://example.org/k)"', "curl without --max-time"],
    ["while :; do\n  if ready; then break; fi\n  sleep 5\ndone", "a loop that sleeps with no deadline and no bounded count"],
    ["until getent ahosts x; do sleep 2; done", "a loop that sleeps with no deadline and no bounded count"],
  ])("flags %j", (script, rule) => {
    expect(unboundedWaits(script).map((w) => w.rule)).toEqual([rule]);
  });

  it.each([
    "timeout 1500 cloud-init status --wait >/dev/null || status=$?",
    'timeout "$CLOUD_INIT_WAIT_S" cloud-init status --wait',
    "kubectl -n x rollout status deployment/a --timeout=10m",
    "helm upgrade --install c c \\\n  --wait --timeout 15m",
    'out="$(timeout 120 ssh -o ConnectTimeout=20 host true)"',
    'cat >cfg <<EOF\n  ConnectTimeout 20\nEOF\ntimeout "$T" scp -F cfg -q host:/a /b',
    "curl -fsSL --retry 5 --connect-timeout 20 --max-time 300 https://example.org/x",
    'deadline=$(( $(date +%s) + 60 ))\nwhile :; do\n  if [ "$(date +%s)" -ge "$deadline" ]; then exit 1; fi\n  sleep 5\ndone',
    'until ok; do\n  tries=$((tries + 1))\n  if [ "$tries" -ge 30 ]; then break; fi\n  sleep 2\ndone',
    "while read -r a b; do echo $a; done <file",
    "apt_get install ca-certificates curl gpg",
  ])("lets %j pass", (script) => {
    expect(unboundedWaits(script)).toEqual([]);
  });
});

/** A script a plan holds, and where it came from. */
interface Found {
  readonly where: string;
  readonly script: string;
}

function scriptsOf(resources: readonly PlannedResource[]): Found[] {
  const found: Found[] = [];
  for (const r of resources) {
    if (r.type === "command:remote:Command" || r.type === "command:local:Command") {
      for (const key of ["create", "update", "delete"] as const) {
        const v = r.inputs[key];
        if (v === undefined) continue;
        expect(typeof v, `${r.name}.${key} is readable in the plan`).toBe("string");
        found.push({ where: `${r.name}.${key}`, script: String(v) });
      }
    }
    if (r.type === "openstack:compute/instance:Instance") {
      const doc = parseYaml(String(r.inputs.userData).replace(/^#cloud-config\n/, "")) as {
        bootcmd?: (string | string[])[];
        runcmd?: (string | string[])[];
        write_files?: { path: string; content: string; permissions?: string }[];
      };
      for (const [i, c] of [...(doc.bootcmd ?? []), ...(doc.runcmd ?? [])].entries()) found.push({ where: `${r.name} cloud-init command ${i}`, script: Array.isArray(c) ? c.join(" ") : c });
      for (const f of doc.write_files ?? []) if (f.permissions === "0755") found.push({ where: `${r.name} ${f.path}`, script: f.content });
    }
  }
  return found;
}

/** customTimeouts' "33m" in seconds. */
const seconds = (t: string | undefined) => (t === undefined ? Infinity : Number(/^(\d+)m$/.exec(t)![1]) * 60);

const MEASURED = 'measure={"profile":"latency","family":"ipv4","runs":2,"runId":"r1"}';
const EVERY_PATH = ["workers=2", 'paths=["nodeport-local","nodeport-remote","clusterip"]', "podRouting=native"];

describe.each([
  ["the iptables stack", "iptables", [MEASURED], []],
  ["the nftables stack", "nftables", [MEASURED], []],
  ["the ebpf stack", "ebpf", [MEASURED], []],
  ["the ebpf stack with two workers and every path", "ebpf", [MEASURED, ...EVERY_PATH], ["lab-worker-2-ready.create", "cluster-kubeadm-join-worker-2.create", "workloads-path-nodeport-remote.create", "workloads-path-clusterip.create", "workloads-path-clusterip.delete"]],
] as const)("every script of %s", (_label, stack, config, more) => {
  let resources: PlannedResource[];
  beforeAll(async () => {
    resources = (await planInChild(stack, [...config])) as PlannedResource[];
  }, 300_000);

  it("bounds every wait it holds", () => {
    const scripts = scriptsOf(resources);
    // The scripts that wait are there: the check has something to check.
    expect(scripts.map((s) => s.where)).toEqual(
      expect.arrayContaining(["lab-worker-ready.create", "cluster-nodes-ready.create", "workloads-apply.create", "measurement-ditg-runs.create", "measurement-ditg-pairing.create", ...more]),
    );
    const unbounded = scripts.flatMap((s) => unboundedWaits(s.script).map((w) => `${s.where}: ${w.rule}: ${w.line.slice(0, 160)}`));
    expect(unbounded).toEqual([]);
  });

  it("runs every remote script under its own limit, below the command's Pulumi timeout", () => {
    for (const r of resources.filter((x) => x.type === "command:remote:Command")) {
      for (const key of ["create", "update", "delete"] as const) {
        const line = r.inputs[key];
        if (typeof line !== "string") continue;
        const limit = /(?:^|\n)(?:sudo )?timeout --kill-after=(\d+) (\d+) bash -c /.exec(line);
        expect(limit, `${r.name}.${key} runs its script under timeout`).not.toBeNull();
        if (key === "delete") continue;
        const own = Number(limit![1]) + Number(limit![2]);
        expect(own, `${r.name}: ${own} s against customTimeouts ${r.options?.customTimeouts?.create}`).toBeLessThan(seconds(r.options?.customTimeouts?.create));
      }
    }
  });
});
