import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { CLOUD_PROGRAMMING } from "../../backends/cloud-programming.js";
import { CLOUD_PROFILES } from "../../backends/cloud.js";
import { LOOPBACK_PROFILES } from "../../backends/loopback.js";
import { campaignProfiles, loopbackDefinition, parseCampaignFlags, stackDefinition, type CampaignOptions } from "../../cli/campaign.js";
import { campaignIdFor, planCampaign } from "../../measure/campaign-plan.js";
import { PLACEHOLDERS, parseScenario } from "../../scenario/schema.js";

const base: CampaignOptions = { loopback: true, db: "r.db", retries: "2", projectDir: "." };
const root = fileURLToPath(new URL("../..", import.meta.url));

describe("campaign flags", () => {
  it.each([
    [{ runs: "0" }, '--runs: "0" is not accepted; accepted: a whole number from 1 to 100000'],
    [{ runs: "2.5" }, '--runs: "2.5" is not accepted; accepted: a whole number from 1 to 100000'],
    [{ services: "1,x" }, '--services: "1,x" is not accepted; accepted: a comma-separated list of distinct whole numbers of Services, e.g. 1,1000,2000'],
    [{ services: "1,1" }, '--services: "1,1" is not accepted; accepted: a comma-separated list of distinct whole numbers of Services, e.g. 1,1000,2000'],
    [{ profiles: "throughput,jitter" }, '--profiles: "throughput,jitter" is not accepted; accepted: a comma-separated list of throughput, latency, setup'],
    [{ families: "ipv4,ipv4" }, '--families: "ipv4,ipv4" is not accepted; accepted: a comma-separated list of ipv4, ipv6, each at most once'],
    [{ dataplanes: "ipvs" }, '--dataplanes: "ipvs" is not accepted; accepted: a comma-separated list of iptables, nftables, ebpf'],
    [{ flowSeconds: "0.5" }, '--flow-seconds: "0.5" is not accepted; accepted: seconds from 1 to 3600'],
    [{ seed: "-1" }, '--seed: "-1" is not accepted; accepted: a whole number from 0 to 4294967295'],
    [{ order: "reverse" }, '--order: "reverse" is not accepted; accepted: random or sequential'],
    [{ retries: "50" }, '--retries: "50" is not accepted; accepted: a whole number from 0 to 20'],
    [{ campaign: "a b" }, `--campaign: "a b" is not accepted; accepted: 1-100 letters, digits, '.', '_' or '-'`],
    [{ stack: "ebpf" }, "--stack and --loopback exclude each other; accepted: --stack S for a deployed stack, or --loopback for a dry run on this host"],
    [{ loopback: false }, "missing --stack S (a deployed stack, e.g. iptables, nftables, ebpf) or --loopback (a dry run on this host's loopback)"],
    [{ loopback: false, stack: "ebpf", dataplanes: "ebpf" }, "--dataplanes: only with --loopback; a stack runs one dataplane (testbed:dataplane), each other dataplane is another stack"],
  ] as [Partial<CampaignOptions>, string][])("refuses %o", (over, message) => {
    expect(() => parseCampaignFlags({ ...base, ...over })).toThrow(message);
  });

  it("parses good values and leaves unset ones to the defaults", () => {
    const f = parseCampaignFlags({ ...base, runs: "5", services: "1000,1", families: "ipv6", flowSeconds: "1.5", order: "sequential", interleave: "2", keepLogs: true });
    expect(f).toMatchObject({ target: { kind: "loopback" }, runs: 5, services: [1000, 1], families: ["ipv6"], flowSeconds: 1.5, randomize: false, interleave: 2, keepLogs: true, retries: 2 });
    expect(f.seed).toBeUndefined();
    const def = loopbackDefinition(parseCampaignFlags(base), LOOPBACK_PROFILES);
    expect(def).toMatchObject({ backend: "loopback", dataplanes: ["iptables", "nftables", "ebpf"], families: ["ipv4", "ipv6"], services: [1], runs: 3, flowSeconds: 5, linkMbps: 0, seed: 2025 });
    expect(def.traffic.latency).toEqual({ protocol: "UDP", meter: "rttm", payloadBytes: 512, packetsPerSecond: 1000 });
  });

  it("takes a stack's defaults from its scenario and refuses what it did not deploy", () => {
    const scenario = parseScenario({
      dataplane: "iptables",
      adminCidr: "203.0.113.7/32",
      sshPublicKey: PLACEHOLDERS.sshPublicKey,
      sweep: { services: [1, 2000], runs: 7, flowSeconds: 20, seed: 9 },
      kubernetes: { serviceSubnets: { ipv4: "10.96.0.0/20", ipv6: "fd00:10:96::/112" } },
    });
    const f = parseCampaignFlags({ ...base, loopback: false, stack: "iptables" });
    const profiles = campaignProfiles(f, { name: "stack:iptables", profiles: CLOUD_PROFILES });
    expect(profiles).toEqual(["throughput", "latency", "setup", "programming"]);
    expect(stackDefinition(f, "iptables", scenario, ["ipv4", "ipv6"], profiles)).toMatchObject({
      backend: "stack:iptables", dataplanes: ["iptables"], families: ["ipv4", "ipv6"], profiles, services: [1, 2000], runs: 7, flowSeconds: 20, seed: 9, linkMbps: 500,
      traffic: { setup: { protocol: "TCP", meter: "rttm", payloadBytes: 0, packetsPerSecond: 200 } },
      programming: CLOUD_PROGRAMMING,
    });
    // Without the programming profile, no programming settings: the campaign's id stays what it was.
    expect(stackDefinition(f, "iptables", scenario, ["ipv4", "ipv6"], ["throughput", "latency", "setup"]).programming).toBeUndefined();
    expect(stackDefinition(f, "iptables", scenario, ["ipv4"], profiles).families).toEqual(["ipv4"]);
    expect(() => stackDefinition({ ...f, families: ["ipv6"] }, "iptables", scenario, ["ipv4"], profiles)).toThrow(
      '--families: "ipv6" is not accepted; accepted: families stack iptables deploys a receiver for: ipv4',
    );
    expect(() => stackDefinition({ ...f, services: [1, 5000] }, "iptables", scenario, ["ipv4"], profiles)).toThrow(
      '--services: "1,5000" is not accepted; accepted: counts up to 4091, what the service subnets of stack iptables hold (testbed:kubernetes.serviceSubnets)',
    );
  });

  it("measures every path a stack serves by default, a chosen subset with --paths, and refuses a path it does not serve", () => {
    const scenario = parseScenario({ dataplane: "iptables", adminCidr: "203.0.113.7/32", sshPublicKey: PLACEHOLDERS.sshPublicKey, workers: 2, paths: ["nodeport-local", "nodeport-remote", "clusterip"] });
    const f = parseCampaignFlags({ ...base, loopback: false, stack: "iptables" });
    const served = ["nodeport-local", "nodeport-remote", "clusterip"] as const;
    expect(stackDefinition(f, "iptables", scenario, ["ipv4", "ipv6"], ["latency"], served).paths).toEqual(served);
    // The paper's path alone leaves the definition as it was before paths (same campaign id).
    expect(stackDefinition(f, "iptables", scenario, ["ipv4", "ipv6"], ["latency"], ["nodeport-local"]).paths).toBeUndefined();
    const chosen = parseCampaignFlags({ ...base, loopback: false, stack: "iptables", paths: "clusterip" });
    expect(stackDefinition(chosen, "iptables", scenario, ["ipv4", "ipv6"], ["latency"], served).paths).toEqual(["clusterip"]);
    expect(() => stackDefinition(chosen, "iptables", scenario, ["ipv4", "ipv6"], ["latency"], ["nodeport-local"])).toThrow(
      '--paths: "clusterip" is not accepted; accepted: paths stack iptables serves: nodeport-local (testbed:paths lists the others to deploy)',
    );
    // Paths across the nodes: the stack's pod routing is part of the campaign, so a tunnel campaign never resumes into a native one.
    const tunnel = stackDefinition(f, "iptables", scenario, ["ipv4", "ipv6"], ["latency"], served);
    const native = stackDefinition(f, "iptables", { ...scenario, podRouting: "native" }, ["ipv4", "ipv6"], ["latency"], served);
    expect([tunnel.podRouting, native.podRouting]).toEqual(["tunnel", "native"]);
    expect(campaignIdFor(tunnel)).not.toBe(campaignIdFor(native));
    expect(stackDefinition(f, "iptables", scenario, ["ipv4", "ipv6"], ["latency"], ["nodeport-local"]).podRouting).toBeUndefined();
    expect(() => parseCampaignFlags({ ...base, paths: "clusterip" })).toThrow("--paths: only with --stack");
    expect(() => parseCampaignFlags({ ...base, loopback: false, stack: "iptables", paths: "clusterip,pod" })).toThrow('--paths: "clusterip,pod" is not accepted');
  });

  it("measures setup on a stack, declaring the primary comparisons sized for three stacks; refuses what the target does not measure", () => {
    const scenario = parseScenario({ dataplane: "nftables", adminCidr: "203.0.113.7/32", sshPublicKey: PLACEHOLDERS.sshPublicKey, openstack: { imageKernel: "5.15", imageCgroup: "v2" }, sweep: { services: [1, 1000], runs: 3 } });
    const f = parseCampaignFlags({ ...base, loopback: false, stack: "nftables", profiles: "setup,latency" });
    const profiles = campaignProfiles(f, { name: "stack:nftables", profiles: CLOUD_PROFILES });
    const def = stackDefinition(f, "nftables", scenario, ["ipv4", "ipv6"], profiles);
    // Two dataplanes against iptables x two families: Holm over 4 tests, 15 runs per primary cell (README).
    expect(def.primary).toMatchObject({ profile: "setup", services: 1000, statistic: "mean", baseline: "iptables", runs: 15 });
    const plan = planCampaign("c", def);
    expect(plan.filter((r) => r.key.profile === "setup" && r.key.services === 1000 && r.key.family === "ipv4")).toHaveLength(15);
    expect(plan.filter((r) => r.key.profile === "setup" && r.key.services === 1 && r.key.family === "ipv4")).toHaveLength(3);
    expect(stackDefinition({ ...f, profiles: ["latency"] }, "nftables", scenario, ["ipv4"], ["latency"]).primary).toBeUndefined();
    expect(() => campaignProfiles(parseCampaignFlags({ ...base, profiles: "setup" }), { name: "loopback", profiles: LOOPBACK_PROFILES })).toThrow(
      "--profiles: setup is not measured by loopback; accepted: a comma-separated list of throughput, latency",
    );
    expect(() => parseCampaignFlags({ ...base, profiles: "setup,programing" })).toThrow(/--profiles: "setup,programing" is not accepted; accepted: a comma-separated list of throughput, latency, setup/);
  });

  it("lists setup among a stack's profiles in --help", () => {
    const help = spawnSync("npx", ["tsx", "cli/main.ts", "campaign", "--help"], { cwd: root, encoding: "utf8" });
    expect(help.status).toBe(0);
    expect(help.stdout.replace(/\s+/g, " ")).toContain("with --stack throughput,latency,setup,programming; with --loopback throughput,latency");
  });

  it("exits non-zero with the message and creates no store on a bad flag or a missing Pulumi CLI", () => {
    const dir = mkdtempSync(path.join(tmpdir(), "campaign-cli-"));
    try {
      const db = path.join(dir, "r.db");
      const bad = spawnSync("npx", ["tsx", "cli/main.ts", "campaign", "--loopback", "--db", db, "--families", "ipv5"], { cwd: root, encoding: "utf8" });
      expect(bad.status).toBe(1);
      expect(bad.stderr).toContain('testbed: --families: "ipv5" is not accepted; accepted: a comma-separated list of ipv4, ipv6');
      const noCli = spawnSync("npx", ["tsx", "cli/main.ts", "campaign", "--stack", "ebpf", "--db", db], {
        cwd: root,
        encoding: "utf8",
        // node and npx stay reachable; pulumi is not installed in their directory.
        env: { ...process.env, PATH: path.dirname(process.execPath) },
      });
      expect(noCli.status).toBe(1);
      expect(noCli.stderr).toContain("testbed: the Pulumi CLI (`pulumi`) is not on PATH");
      expect(existsSync(db)).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
