// The Cilium Helm values of both stacks against the real chart: its values.schema.json (ajv,
// draft-07) and its values.yaml, where every key the testbed sets must exist (commented keys count).
import * as fs from "node:fs";
import * as path from "node:path";
import { Ajv } from "ajv";
import { describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { PLACEHOLDERS, parseScenario, type ScenarioInput } from "../../scenario/schema.js";
import { clusterDataplane } from "../../infra/cluster/dataplanes/index.js";
import {
  LB_MAP_DEFAULT,
  SERVICE_ID_LIMIT,
  lbMapMax,
  serviceIdEstimate,
  renderCiliumValues,
  renderCiliumValuesYaml,
  type CiliumHostFacts,
} from "../../infra/cluster/cilium-values.js";

// The chart files as Cilium ships them (reference/README.md).
const CHART_DIR = path.resolve("reference/cilium-1.17.18");
const schema = JSON.parse(fs.readFileSync(path.join(CHART_DIR, "values.schema.json"), "utf8")) as object;
const chartValuesYaml = fs.readFileSync(path.join(CHART_DIR, "values.yaml"), "utf8");

const host: CiliumHostFacts = { apiServerHost: "198.19.0.10", apiServerPort: 6443, datacenterDevices: ["ens4", "ens4"] };
const scenario = (extra: Partial<ScenarioInput> = {}) =>
  parseScenario({ adminCidr: "203.0.113.7/32", sshPublicKey: PLACEHOLDERS.sshPublicKey, dataplane: "ebpf", ...extra });

/**
 * Every key path of the chart's values.yaml, including keys that are only commented there
 * (`#kubeProxyReplacement: "false"`, `  # range: "30000,32767"`), at the nesting their indentation gives.
 */
function chartKeyPaths(text: string): Set<string> {
  const paths = new Set<string>();
  const stack: { indent: number; key: string }[] = [];
  let inSchemaBlock = false;
  for (const line of text.split("\n")) {
    // `# @schema` ... `# @schema` blocks hold JSON-schema annotations, not values.
    if (/^\s*# @schema\s*$/.test(line)) {
      inSchemaBlock = !inSchemaBlock;
      continue;
    }
    if (inSchemaBlock) continue;
    const real = /^(\s*)([A-Za-z0-9_.-]+):(\s|$)/.exec(line);
    const commented = /^(\s*)#\s?(\s*)([A-Za-z][A-Za-z0-9_.]*):(\s|$)/.exec(line);
    if (!real && !commented) continue;
    const indent = real ? real[1]!.length : commented![1]!.length + commented![2]!.length;
    const key = real ? real[2]! : commented![3]!;
    const parents = stack.filter((s) => s.indent < indent);
    paths.add([...parents.map((p) => p.key), key].join("."));
    if (real) {
      while (stack.length > 0 && stack[stack.length - 1]!.indent >= indent) stack.pop();
      stack.push({ indent, key });
    }
  }
  return paths;
}

/** Leaf key paths of a values object (lists and scalars are leaves). */
function leafPaths(value: unknown, prefix = ""): string[] {
  if (value && typeof value === "object" && !Array.isArray(value)) {
    return Object.entries(value).flatMap(([k, v]) => leafPaths(v, prefix ? `${prefix}.${k}` : k));
  }
  return [prefix];
}

function valueAt(value: unknown, dotted: string): unknown {
  return dotted.split(".").reduce<unknown>((o, k) => (o && typeof o === "object" ? (o as Record<string, unknown>)[k] : undefined), value);
}

const chartPaths = chartKeyPaths(chartValuesYaml);
const ajv = new Ajv({ strict: false, allErrors: true });
const validate = ajv.compile(schema);

describe("the key checker reads the chart as Helm does", () => {
  it("finds real and commented keys at their nesting, and nothing else", () => {
    expect(chartPaths.has("bpf.lbMapMax")).toBe(true);
    expect(chartPaths.has("kubeProxyReplacement")).toBe(true); // commented at top level
    expect(chartPaths.has("nodePort.range")).toBe(true); // commented inside nodePort
    expect(chartPaths.has("devices")).toBe(true);
    expect(chartPaths.has("range")).toBe(false);
    expect(chartPaths.has("nodePort.rnage")).toBe(false);
    expect(chartPaths.has("bpf.range")).toBe(false);
    expect(chartKeyPaths("a:\n  b: 1\n  # c: 2\nd:\n  # @schema\n  # type: x\n  # @schema\n  e: 1\n")).toEqual(new Set(["a", "a.b", "a.c", "d", "d.e"]));
  });

  it("the schema validator rejects a wrong type, so a pass means something", () => {
    expect(validate({ bpf: { lbMapMax: "many" } })).toBe(false);
    expect(validate({ operator: { replicas: "one" } })).toBe(false);
  });
});

/** What the nftables stack sets besides its dataplane (Pulumi.nftables.yaml). */
const NFTABLES_NEEDS = { openstack: { image: "ubuntu-22.04", imageKernel: "5.15", imageCgroup: "v2" as const }, kubernetes: { version: "1.33.9" } };

describe.each(["iptables", "nftables", "ebpf"] as const)("values of the %s stack", (dataplane) => {
  const s = scenario({ dataplane, ...(dataplane === "nftables" ? NFTABLES_NEEDS : {}) });
  const values = renderCiliumValues(s, host);

  it("pass the chart's values.schema.json", () => {
    const ok = validate(values);
    expect(validate.errors ?? []).toEqual([]);
    expect(ok).toBe(true);
  });

  it("set only keys that exist in the chart's values.yaml", () => {
    const unknown = leafPaths(values).filter((p) => !chartPaths.has(p));
    expect(unknown).toEqual([]);
  });

  it("round-trip through the uploaded YAML file", () => {
    expect(parseYaml(renderCiliumValuesYaml(s, host))).toEqual(values);
  });

  it("use kubeadm's pod CIDRs, both families, a VXLAN tunnel", () => {
    expect(values).toMatchObject({
      ipam: { mode: "kubernetes" },
      ipv4: { enabled: true },
      ipv6: { enabled: true },
      k8s: { requireIPv4PodCIDR: true, requireIPv6PodCIDR: true },
      routingMode: "tunnel",
      tunnelProtocol: "vxlan",
    });
  });
});

describe("the dataplane switch", () => {
  const iptables = renderCiliumValues(scenario({ dataplane: "iptables" }), host);
  const ebpf = renderCiliumValues(scenario({ dataplane: "ebpf" }), host);

  it("iptables: Cilium is the CNI only; kube-proxy serves Services", () => {
    expect(iptables.kubeProxyReplacement).toBe(false);
    expect(iptables).not.toHaveProperty("k8sServiceHost");
    expect(iptables).not.toHaveProperty("devices");
    expect(iptables).not.toHaveProperty("nodePort");
  });

  it("ebpf: kube-proxy replacement on the data-center NIC, API server by address, the API server's NodePort range", () => {
    expect(ebpf).toMatchObject({
      kubeProxyReplacement: true,
      k8sServiceHost: "198.19.0.10",
      k8sServicePort: 6443,
      devices: "ens4",
      nodePort: { range: "30000,32767" },
    });
    const wide = renderCiliumValues(scenario({ dataplane: "ebpf", kubernetes: { nodePortRange: "20000-32767" } }), host);
    expect(wide.nodePort).toEqual({ range: "20000,32767" });
  });

  it("differs between the stacks in dataplane keys only", () => {
    const a = new Map(leafPaths(iptables).map((p) => [p, JSON.stringify(valueAt(iptables, p))]));
    const b = new Map(leafPaths(ebpf).map((p) => [p, JSON.stringify(valueAt(ebpf, p))]));
    const differing = [...new Set([...a.keys(), ...b.keys()])].filter((p) => a.get(p) !== b.get(p)).sort();
    expect(differing).toEqual(["bpf.lbMapMax", "devices", "k8sServiceHost", "k8sServicePort", "kubeProxyReplacement", "nodePort.range", "prometheus.enabled", "prometheus.metrics", "prometheus.port"]);
  });

  it("ebpf: the agent serves its metrics where the programming profile reads them, with the bpf(2) call durations asked for", () => {
    expect(ebpf.prometheus).toEqual({ enabled: true, port: 9962, metrics: ["+cilium_bpf_syscall_duration_seconds"] });
    expect(clusterDataplane("ebpf").controlPlane.metricsUrl).toBe("http://127.0.0.1:9962/metrics");
    expect(validate({ prometheus: { metrics: "+cilium_bpf_syscall_duration_seconds" } })).toBe(false);
    expect(validate({ prometheus: ebpf.prometheus })).toBe(true);
  });

  it("nftables: Cilium is the CNI only, with the same values as for iptables", () => {
    expect(renderCiliumValues(scenario({ dataplane: "nftables", ...NFTABLES_NEEDS }), host)).toEqual(iptables);
  });

  it("refuses an empty device list instead of letting Cilium guess", () => {
    expect(() => renderCiliumValues(scenario(), { ...host, datacenterDevices: [] })).toThrow(/data-center NIC/);
  });
});

describe("LB map sizing", () => {
  it("holds the paper's 10000 NodePort Services in eBPF: 10 entries each, next power of two", () => {
    // (10000 + 16 cluster Service ports) x 10 = 100160 -> 131072
    expect(lbMapMax({ dataplane: "ebpf", services: 1, sweep: scenario().sweep })).toBe(131072);
  });

  it("takes the larger of the stack's count and the sweep's largest step", () => {
    const sweep = { ...scenario().sweep, services: [1, 2000] };
    expect(lbMapMax({ dataplane: "ebpf", services: 30000, sweep })).toBe(524288); // 300160 -> 2^19
    expect(lbMapMax({ dataplane: "ebpf", services: 1, sweep })).toBe(LB_MAP_DEFAULT); // 20160 -> default
  });

  it("never goes below the chart's default, and iptables only needs ClusterIP entries", () => {
    const sweep = { ...scenario().sweep, services: [1] };
    expect(lbMapMax({ dataplane: "ebpf", services: 0, sweep })).toBe(LB_MAP_DEFAULT);
    expect(lbMapMax({ dataplane: "iptables", services: 1, sweep: scenario().sweep })).toBe(LB_MAP_DEFAULT); // 20032
    expect(lbMapMax({ dataplane: "iptables", services: 40000, sweep })).toBe(131072); // 80032
  });
});

describe("single-family clusters", () => {
  it("IPv4 only: no IPv6 anywhere", () => {
    const v = renderCiliumValues(scenario({ families: ["ipv4"] }), host);
    expect(v).toMatchObject({ ipv4: { enabled: true }, ipv6: { enabled: false }, k8s: { requireIPv6PodCIDR: false }, routingMode: "tunnel" });
    expect(validate(v)).toBe(true);
  });

  it("IPv6 only: native routing over the data-center network (Cilium 1.17 tunnels over IPv4 only)", () => {
    const v = renderCiliumValues(scenario({ families: ["ipv6"] }), host);
    expect(v).toMatchObject({ ipv4: { enabled: false }, ipv6: { enabled: true }, routingMode: "native", autoDirectNodeRoutes: true, ipv6NativeRoutingCIDR: "fd00:10:244::/56" });
    expect(v).not.toHaveProperty("tunnelProtocol");
    expect(validate(v)).toBe(true);
    expect(leafPaths(v).filter((p) => !chartPaths.has(p))).toEqual([]);
  });
});

describe("native pod routing (testbed:podRouting native)", () => {
  it("routes both families natively, with keys the chart has and values its schema accepts", () => {
    const v = renderCiliumValues(scenario({ podRouting: "native" }), host);
    expect(v).toMatchObject({ routingMode: "native", autoDirectNodeRoutes: true, ipv4NativeRoutingCIDR: "10.244.0.0/16", ipv6NativeRoutingCIDR: "fd00:10:244::/56" });
    expect(v).not.toHaveProperty("tunnelProtocol");
    expect(validate(v)).toBe(true);
    expect(leafPaths(v).filter((p) => !chartPaths.has(p))).toEqual([]);
  });
});

describe("service ID estimate", () => {
  it("the paper's sweep fits: the default range leaves most of 10000 Services ClusterIP", () => {
    // 2764 NodePorts x 5 + 7236 ClusterIPs + 16, per family, two families
    expect(serviceIdEstimate(scenario({ dataplane: "ebpf" }))).toBe(2 * (2764 * 5 + 7236 + 16));
    expect(serviceIdEstimate(scenario({ dataplane: "ebpf" }))).toBeLessThan(SERVICE_ID_LIMIT);
  });

  it("a wide NodePort range in both families exceeds the 16-bit limit under the replacement only", () => {
    const wide = { kubernetes: { nodePortRange: "20000-32767" } };
    expect(serviceIdEstimate(scenario({ dataplane: "ebpf", ...wide }))).toBeGreaterThan(SERVICE_ID_LIMIT);
    expect(serviceIdEstimate(scenario({ dataplane: "ebpf", families: ["ipv4"], ...wide }))).toBeLessThan(SERVICE_ID_LIMIT);
    expect(serviceIdEstimate(scenario({ dataplane: "iptables", ...wide }))).toBeLessThan(SERVICE_ID_LIMIT);
  });
});
