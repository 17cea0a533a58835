import { execFileSync, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { applyConfigOverrides, collectArtifacts, resourceTable } from "../../cli/plan.js";
import { diffResources, formatChanges } from "../../cli/diff.js";
import { redactSecrets } from "../../infra/offline-engine.js";

const testbed = (...args: string[]) =>
  execFileSync(process.execPath, ["--import", "tsx", "cli/main.ts", ...args], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });

describe("plan artifacts", () => {
  it("takes user data by role and uploaded files by their path under the artifact root", () => {
    const artifacts = collectArtifacts([
      { type: "openstack:compute/instance:Instance", name: "srv", inputs: { userData: "#cloud-config\n", metadata: { "testbed-role": "worker" } } },
      { type: "command:remote:CopyToRemote", name: "up", inputs: { remotePath: "/opt/testbed/kubeadm/init.yaml", source: { $text: "kind: X\n" } } },
      { type: "command:remote:CopyToRemote", name: "elsewhere", inputs: { remotePath: "/tmp/x", source: { $text: "y" } } },
    ]);
    expect(artifacts).toEqual([
      { path: "cloud-init/worker.yaml", content: "#cloud-config\n" },
      { path: "kubeadm/init.yaml", content: "kind: X\n" },
    ]);
  });

  it("refuses two different contents for one artifact path", () => {
    const upload = (text: string) => ({ type: "command:remote:CopyToRemote", name: text, inputs: { remotePath: "/opt/testbed/a.yaml", source: { $text: text } } });
    expect(() => collectArtifacts([upload("1"), upload("2")])).toThrow(/two resources write different content to the artifact a\.yaml/);
  });

  it("redacts secrets wherever they sit", () => {
    expect(redactSecrets({ a: [{ $secret: "key" }], b: { c: { $secret: { user: "u" } } }, d: 1 })).toEqual({ a: ["[secret]"], b: { c: "[secret]" }, d: 1 });
  });

  it("applies --config overrides as pulumi config set does, top-level keys as text and paths into objects", () => {
    const stack = { "testbed:services": "1", "testbed:sweep": JSON.stringify({ runs: 100, seed: 2025 }) };
    expect(applyConfigOverrides(stack, ["services=10000", "openstack:region=RegionOne"])).toEqual({
      ...stack,
      "testbed:services": "10000",
      "openstack:region": "RegionOne",
    });
    // A path sets one leaf and keeps the rest; integers and booleans are typed, other text stays text.
    const nested = applyConfigOverrides(stack, ["sweep.runs=5", "sweep.flowSeconds=2.5", "flavors.create=true", "hosts.worker.flavor=m1.large", "families[1]=ipv6"]);
    expect(JSON.parse(nested["testbed:sweep"]!)).toEqual({ runs: 5, seed: 2025, flowSeconds: "2.5" });
    expect(JSON.parse(nested["testbed:flavors"]!)).toEqual({ create: true });
    expect(JSON.parse(nested["testbed:hosts"]!)).toEqual({ worker: { flavor: "m1.large" } });
    expect(JSON.parse(nested["testbed:families"]!)).toEqual([undefined, "ipv6"].map((v) => v ?? null));
    expect(() => applyConfigOverrides(stack, ["services"])).toThrow(/--config "services": accepted: KEY=VALUE/);
    expect(() => applyConfigOverrides(stack, ["services.x=1"])).toThrow(/--config testbed:services\.x: testbed:services holds 1, not an object/);
  });

  it("prints a table counting resources per type", () => {
    const table = resourceTable([
      { type: "b:x", name: "1", inputs: {} },
      { type: "a:y", name: "2", inputs: {} },
      { type: "b:x", name: "3", inputs: {} },
    ]);
    expect(table.split("\n")).toEqual(["TYPE  COUNT", "a:y   1", "b:x   2", "total  3"]);
  });
});

describe("diff", () => {
  const a = [
    { type: "t", name: "same", inputs: { x: 1 } },
    { type: "t", name: "changed", inputs: { cfg: "a: 1\nb: 2\nc: 3\n", list: [1, 2], nested: { k: "v" } } },
    { type: "t", name: "gone", inputs: {} },
  ];
  const b = [
    { type: "t", name: "same", inputs: { x: 1 } },
    { type: "t", name: "changed", inputs: { cfg: "a: 1\nb: 20\nc: 3\n", list: [1, 3], nested: { k: "v" } } },
    { type: "t", name: "new", inputs: {} },
  ];

  it("lists only what differs, key by key", () => {
    expect(diffResources(a, b)).toEqual([
      { kind: "changed", resource: "t::changed", key: "cfg", before: "a: 1\nb: 2\nc: 3\n", after: "a: 1\nb: 20\nc: 3\n" },
      { kind: "changed", resource: "t::changed", key: "list[1]", before: 2, after: 3 },
      { kind: "removed", resource: "t::gone" },
      { kind: "added", resource: "t::new" },
    ]);
  });

  it("shows multi-line values as line diffs", () => {
    const text = formatChanges(diffResources(a, b), ["A", "B"]);
    expect(text).toContain("~ t::changed");
    expect(text).toContain("      -b: 2");
    expect(text).toContain("      +b: 20");
    expect(text).toContain("    list[1]: 2 -> 3");
    expect(text).toContain("- only in A t::gone");
    expect(text).toContain("+ only in B t::new");
    expect(text).not.toContain("same");
  });

  it("says so when nothing differs", () => {
    expect(formatChanges(diffResources(a, a), ["A", "A"])).toBe("no differences between A and A");
  });
});

describe("the testbed command", () => {
  it("plans the committed ebpf stack and writes resources.json without secrets", () => {
    const out = fs.mkdtempSync(path.join(os.tmpdir(), "plan-test-"));
    try {
      const printed = testbed("plan", "--stack", "ebpf", "--out", out);
      expect(printed).toMatch(/^TYPE +COUNT/);
      const resources = JSON.parse(fs.readFileSync(path.join(out, "resources.json"), "utf8")) as { type: string; name: string; inputs: object }[];
      expect(resources.length).toBeGreaterThan(0);
      for (const r of resources) expect(Object.keys(r).sort()).toEqual(["inputs", "name", "options", "type"]);
      // What the engine needs to know of a change: the options the lifecycle depends on.
      const init = resources.find((r) => r.name === "cluster-kubeadm-init") as unknown as { options: { deleteBeforeReplace: boolean; deletedWith: string } };
      expect(init.options).toMatchObject({ deleteBeforeReplace: true, deletedWith: "openstack:compute/instance:Instance::lab-servers-master" });
      const text = fs.readFileSync(path.join(out, "resources.json"), "utf8");
      expect(text).not.toContain("offline-stand-in-private-key");
    } finally {
      fs.rmSync(out, { recursive: true, force: true });
    }
  });

  it("diffs the two stacks and shows the dataplane", () => {
    expect(testbed("diff", "iptables", "ebpf")).toContain('dataplane: "iptables" -> "ebpf"');
  });

  it("shows a campaign step of one stack as updates only, as pulumi preview would mark them", () => {
    const out = testbed("diff", "ebpf", "--before", "services=1000", "--after", "services=5000");
    expect(out.split("\n")[0]).toBe("ebpf (before) -> ebpf (after): a pulumi up from the first to the second would update 2");
    expect(out).toMatch(/^~  command:remote:Command::workloads-apply \(update\)$/m);
    expect(out).toMatch(/^~  command:remote:CopyToRemote::workloads-scale-services \(update\)$/m);
    expect(out).not.toMatch(/^(\+-|-\+) /m);
  });

  it("plan --json prints one summary object: the stack, its resources by type and the files it renders", () => {
    const summary = JSON.parse(testbed("plan", "--stack", "nftables", "--json")) as { stack: string; resources: number; types: Record<string, number>; artifacts: string[] };
    expect(summary.stack).toBe("nftables");
    expect(Object.values(summary.types).reduce((a, b) => a + b, 0)).toBe(summary.resources);
    expect(summary.artifacts).toEqual(expect.arrayContaining(["cloud-init/worker.yaml", "helm/cilium-values.yaml"]));
  });

  it("diff --exit-code: 1 when the plans differ, 0 when not, 2 on an error, as git does", () => {
    const run = (...args: string[]) => spawnSync(process.execPath, ["--import", "tsx", "cli/main.ts", ...args], { encoding: "utf8" });
    const differ = run("diff", "iptables", "ebpf", "--exit-code");
    expect([differ.status, differ.stderr]).toEqual([1, ""]);
    expect(differ.stdout).toContain('dataplane: "iptables" -> "ebpf"');
    const same = run("diff", "ebpf", "--before", "services=7", "--after", "services=7", "--exit-code");
    expect([same.status, same.stderr]).toEqual([0, ""]);
    expect(same.stdout).toContain("would change no resource");
    expect(run("diff", "ebpf", "--exit-code").status).toBe(2);
    expect(run("diff", "iptables", "ebpf").status).toBe(0);
  });

  it("diff with one stack and no --before/--after: an error, saying how to compare", () => {
    const r = spawnSync(process.execPath, ["--import", "tsx", "cli/main.ts", "diff", "ebpf"], { encoding: "utf8" });
    expect([r.status, r.stdout]).toEqual([1, ""]);
    expect(r.stderr).toBe(
      "testbed: diff ebpf: one stack and no --before/--after gives two identical plans; accepted: two stacks (testbed diff iptables ebpf), or one stack under two configurations (testbed diff ebpf --before services=1000 --after services=5000)\n",
    );
  });

  it("says how to write a list or an object given as plain text", () => {
    const run = (pair: string) => spawnSync(process.execPath, ["--import", "tsx", "cli/main.ts", "plan", "--stack", "ebpf", "--config", pair], { encoding: "utf8" });
    expect(run("families=ipv6").stderr).toContain(
      `testbed:families: "ipv6" is not accepted; accepted: a list; families is a list, written as JSON: --config 'families=["ipv6"]' (testbed plan, diff), or \`pulumi config set --path 'testbed:families[0]' ipv6\``,
    );
    expect(run("sweep=5").stderr).toContain(`testbed:sweep: 5 is not accepted; accepted: an object; sweep is an object, written as JSON or one leaf at a time: --config 'sweep.services=VALUE'`);
  });

  it("refuses a bad key before planning anything, naming key, value and what is accepted", () => {
    expect(() => testbed("plan", "--stack", "ebpf", "--config", "dataplane=nft")).toThrow(/testbed:dataplane: "nft" is not accepted; accepted: "iptables" or "nftables" or "ebpf"/);
  });
});
