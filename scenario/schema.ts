// The scenario: every size, count, address and port of the testbed, as one zod schema.
// Both backends (the Pulumi program and the local lab) read a parsed Scenario and nothing else.
// Defaults reproduce the paper (shared reference: Leiter, Matusovits, Bokor 2025).
import { z } from "zod";
import { cidrSize, cidrsOverlap, isAddress, parseCidr, type Cidr, type Family } from "./cidr.js";
import { DEFAULT_PATHS, PATHS, SERVICE_PATHS, workersNeeded, type ServicePath } from "./paths.js";
import { closestKey } from "./suggest.js";

export const DATAPLANES = ["iptables", "nftables", "ebpf"] as const;
/** The oldest kernel kube-proxy's nftables mode runs on (KEP-3866). */
export const NFTABLES_MIN_KERNEL = "5.13";
export type Dataplane = (typeof DATAPLANES)[number];
/** The dataplane every other one is compared with unless told otherwise: kube-proxy in iptables mode, the paper's reference. */
export const DEFAULT_BASELINE: Dataplane = "iptables";
/** What each dataplane is, in a few words for plans and reports. */
export const DATAPLANE_DESCRIPTIONS: Readonly<Record<Dataplane, string>> = {
  iptables: "kube-proxy in iptables mode",
  nftables: "kube-proxy in nftables mode",
  ebpf: "Cilium's kube-proxy replacement (eBPF)",
};
export const FAMILIES = ["ipv4", "ipv6"] as const;
/**
 * How the measured links are capped at linkMbps: `guest` shapes with tc inside the VMs (a project
 * member can do it), `neutron` with a Neutron QoS policy (creating one needs the admin role; attaching
 * an existing one, openstack.qosPolicyId, does not), `none` leaves the links uncapped.
 */
export const LINK_SHAPINGS = ["guest", "neutron", "none"] as const;
export type LinkShaping = (typeof LINK_SHAPINGS)[number];

/** The Pulumi config namespace of every key below ("testbed:dataplane", ...). */
export const CONFIG_NAMESPACE = "testbed";

/**
 * Resolvers for the management subnet when none are set: Quad9 and Cloudflare, two operators, so
 * one outage does not stop a deployment. Override them with your cloud's own.
 */
export const DEFAULT_DNS_NAMESERVERS = ["9.9.9.9", "1.1.1.1"] as const;

/** Smallest lab block that holds the fixed host addresses and a DHCP pool (IPv4 /27, IPv6 /123). */
export const MIN_BLOCK_ADDRESSES = 32;

/** kube-apiserver refuses a service CIDR with more than 20 host bits (IPv4 /12, IPv6 /108). */
export const MAX_SERVICE_HOST_BITS = 20;

/**
 * Most workers a lab may have: worker 1 keeps the paper's host number (14) and worker n >= 2 takes
 * number n, below the bastion's 10, so the addresses of the hosts and the DHCP pools above them stay
 * where the paper's one-worker lab has them (infra/openstack/address-plan.ts).
 */
export const MAX_WORKERS = 9;

/**
 * How pod traffic crosses from one node to another: `tunnel` (Cilium's VXLAN between the nodes'
 * IPv4 addresses) or `native` (pod addresses routed unencapsulated on the data-center network,
 * each node's pod CIDR through that node; the nodes' ports carry the pod subnets as allowed address
 * pairs).
 */
export const POD_ROUTINGS = ["tunnel", "native"] as const;
export type PodRouting = (typeof POD_ROUTINGS)[number];

/** Service counts of the paper's sweep: 1, then 1000 to 10000 in steps of 1000. */
export const PAPER_SWEEP = [1, ...Array.from({ length: 10 }, (_, i) => (i + 1) * 1000)];

const cidrText = (family: Family) =>
  z.string().refine((s) => parseCidr(s)?.family === family, {
    message: `not an ${family === "ipv4" ? "IPv4" : "IPv6"} CIDR; accepted: e.g. ${
      family === "ipv4" ? "198.18.0.0/24" : "2001:2:0:1::/64"
    }`,
  });

const dualCidr = (v4: string, v6: string) =>
  z.strictObject({ ipv4: cidrText("ipv4").default(v4), ipv6: cidrText("ipv6").default(v6) }).prefault({});

const count = (min: number) => z.number().int().min(min);

/**
 * A number that may arrive as text: `pulumi config set --path` stores integers as numbers but any
 * other number (2.5) as a string, so a decimal set that way must still read as a number.
 */
const decimal = (schema: z.ZodNumber) =>
  z.preprocess((v) => (typeof v === "string" && /^-?\d+(\.\d+)?$/.test(v.trim()) ? Number(v) : v), schema);

const host = (vcpus: number, ramMiB: number, diskGiB: number, flavor: string) =>
  z
    .strictObject({
      vcpus: count(1).default(vcpus),
      ramMiB: count(256).default(ramMiB),
      diskGiB: count(1).default(diskGiB),
      /** Existing flavor to use when flavors.create is false. */
      flavor: z.string().min(1).default(flavor),
    })
    .prefault({});

const portNumber = z.number().int().min(1).max(65535);

const version = z.string().regex(/^\d+\.\d+\.\d+$/, { message: "not a version; accepted: MAJOR.MINOR.PATCH, e.g. 1.17.18" });

/** A D-ITG traffic profile: one flow of one repetition. */
const trafficProfile = (p: {
  protocol: "TCP" | "UDP";
  meter: "owdm" | "rttm";
  payloadBytes: number;
  packetsPerSecond: number;
}) =>
  z
    .strictObject({
      protocol: z.enum(["TCP", "UDP"]).default(p.protocol),
      /** D-ITG meter: rttm measures round trips on the sender's clock; owdm needs synchronised clocks. */
      meter: z.enum(["owdm", "rttm"]).default(p.meter),
      payloadBytes: z.number().int().min(16).max(64000).default(p.payloadBytes),
      packetsPerSecond: count(1).default(p.packetsPerSecond),
    })
    .prefault({});

/** Every key with its default, before the checks across keys (scenarioSchema adds those). */
const scenarioFields = z
  .strictObject({
    /** Which Service dataplane the cluster runs: kube-proxy in iptables or nftables mode, or Cilium's kube-proxy replacement. */
    dataplane: z.enum(DATAPLANES),
    /** How many scaled Services the stack deploys (one step of the sweep). */
    services: count(0).default(1),
    /** Optional: run D-ITG from the stack and export its summary as the output `measurement`. */
    measure: z
      .strictObject({
        profile: z.enum(["throughput", "latency"]),
        family: z.enum(FAMILIES).default("ipv4"),
        runs: count(1).max(1000).default(1),
        /** Change it to re-run the measurement without changing anything else. */
        runId: z.string().min(1).max(64).regex(/^[A-Za-z0-9._-]+$/, { message: "accepted: letters, digits, '.', '_' and '-'" }),
      })
      .optional(),

    /** CIDR from which SSH to the bastion is allowed: your workstation or VPN, never the whole Internet. */
    adminCidr: z.string({ error: "missing; set it with `pulumi config set testbed:adminCidr <your-ip>/32`" }),
    /** OpenSSH public key installed on every host. */
    sshPublicKey: z
      .string({ error: "missing; set it with `pulumi config set testbed:sshPublicKey \"$(cat ~/.ssh/id_ed25519.pub)\"`" })
      .regex(/^(ssh-(ed25519|rsa)|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/=]+( .*)?$/, {
        message: "not an OpenSSH public key; accepted: one line such as `ssh-ed25519 AAAA... user@host`",
      }),

    /**
     * The Service paths the stack serves and a campaign measures (scenario/paths.ts); the paper's
     * nodeport-local is the default.
     */
    paths: z
      .array(z.enum(SERVICE_PATHS))
      .min(1, { message: "empty; accepted: a list of \"nodeport-local\", \"nodeport-remote\", \"clusterip\", e.g. [\"nodeport-local\"]" })
      .refine((p) => new Set(p).size === p.length, { message: "lists a path twice" })
      .default([...DEFAULT_PATHS]),
    /** How many workers the cluster has, each sized as testbed:hosts.worker; the paper had one. */
    workers: count(1).max(MAX_WORKERS).default(1),
    /** How pod traffic crosses between the nodes (POD_ROUTINGS); unset: tunnel where the cluster has IPv4, native otherwise. */
    podRouting: z.enum(POD_ROUTINGS).optional(),

    families: z
      .array(z.enum(FAMILIES))
      .min(1, { message: "empty; accepted: [\"ipv4\"], [\"ipv6\"] or [\"ipv4\", \"ipv6\"]" })
      .refine((f) => new Set(f).size === f.length, { message: "lists a family twice" })
      .default(["ipv4", "ipv6"]),
    /** Rate cap of every link on the measured path in Mbit/s; 0 turns the cap off. */
    linkMbps: decimal(z.number().min(0).max(100_000)).default(500),
    /** How the cap is applied; the default needs no admin role (see LINK_SHAPINGS). */
    linkShaping: z.enum(LINK_SHAPINGS).default("guest"),

    sweep: z
      .strictObject({
        services: z
          .array(count(0))
          .min(1)
          .refine((s) => s.every((n, i) => i === 0 || n > s[i - 1]!), { message: "must be strictly increasing" })
          .default(PAPER_SWEEP),
        runs: count(1).default(100),
        flowSeconds: decimal(z.number().min(1).max(3600)).default(30),
        /** Seeds NodePort assignment, step order and bootstrap resampling. */
        seed: count(0).default(2025),
      })
      .prefault({}),

    traffic: z
      .strictObject({
        // 64000-byte messages at 2000/s offer ~1 Gbit/s, above the 500 Mbit/s cap: the link decides.
        throughput: trafficProfile({ protocol: "TCP", meter: "owdm", payloadBytes: 64000, packetsPerSecond: 2000 }),
        latency: trafficProfile({ protocol: "UDP", meter: "rttm", payloadBytes: 512, packetsPerSecond: 1000 }),
        /** The connection-setup probe (not D-ITG): new TCP connections per second, each timed SYN to SYN-ACK. */
        setup: z.strictObject({ connectionsPerSecond: count(1).max(5000).default(200) }).prefault({}),
      })
      .prefault({}),

    hosts: z
      .strictObject({
        client: host(1, 2048, 20, "m1.small"),
        router: host(1, 2048, 20, "m1.small"),
        master: host(2, 4096, 40, "m1.medium"),
        worker: host(2, 4096, 40, "m1.medium"),
        bastion: host(1, 2048, 20, "m1.small"),
      })
      .prefault({}),

    flavors: z
      .strictObject({
        /** Create the flavors (admin rights) instead of using the existing ones named in `hosts`. */
        create: z.boolean().default(false),
        /** The paper's per-vCPU clock cap, applied as a CPU quota when flavors are created. */
        cpuCapMHz: count(100).default(1500),
        /** Clock of the compute hosts; needed to turn cpuCapMHz into a quota. */
        hostCpuMHz: count(100).optional(),
        cpuPeriodUs: count(1000).max(1_000_000).default(100_000),
      })
      .prefault({}),

    openstack: z
      .strictObject({
        image: z.string().min(1).default("ubuntu-20.04"),
        /** Kernel and cgroup layout of the image: they decide which Cilium and kubelet can run. */
        imageKernel: z.string().regex(/^\d+\.\d+$/, { message: "accepted: MAJOR.MINOR, e.g. 5.4" }).default("5.4"),
        imageCgroup: z.enum(["v1", "v2"]).default("v1"),
        sshUser: z.string().min(1).default("ubuntu"),
        externalNetwork: z.string().min(1).default("public"),
        availabilityZone: z.string().min(1).optional(),
        /**
         * Resolvers of the management subnet. Without any, Neutron's dnsmasq on ML2/OVS clouds runs with
         * --no-resolv and the hosts resolve nothing: apt, pkgs.k8s.io, Helm and image pulls all fail.
         */
        dnsNameservers: z
          .array(z.string().refine((a) => isAddress(a), { message: "not an IP address; accepted: e.g. 9.9.9.9" }))
          .min(1, { message: "empty; the hosts would resolve no name. accepted: at least one IPv4 resolver, e.g. [\"9.9.9.9\"]" })
          .default([...DEFAULT_DNS_NAMESERVERS]),
        /**
         * An existing Neutron QoS policy (id) for the measured ports, with linkShaping neutron: nothing
         * is created, so a project member can use it (an admin shares it, or creates it in the project).
         */
        qosPolicyId: z
          .string()
          .regex(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/, {
            message: "not a Neutron id; accepted: a UUID such as 3f2b1c9e-8d7a-4e6f-9b0c-1a2d3e4f5a6b (`openstack network qos policy list`)",
          })
          .optional(),
      })
      .prefault({}),

    network: z
      .strictObject({
        client: dualCidr("198.18.0.0/24", "2001:2:0:10::/64"),
        datacenter: dualCidr("198.18.1.0/24", "2001:2:0:20::/64"),
        management: dualCidr("198.19.0.0/24", "2001:2:0:30::/64"),
      })
      .prefault({}),

    kubernetes: z
      .strictObject({
        // 1.32 is the newest line that Cilium 1.17 is tested against and that runs on cgroup v1 untold.
        version: version.default("1.32.9"),
        /** kube-apiserver --service-node-port-range, inclusive at both ends. */
        nodePortRange: z
          .string()
          .regex(/^\d+-\d+$/, { message: "accepted: LOW-HIGH, e.g. 30000-32767" })
          .default("30000-32767"),
        podSubnets: dualCidr("10.244.0.0/16", "fd00:10:244::/56"),
        serviceSubnets: dualCidr("10.96.0.0/16", "fd00:10:96::/112"),
        /** Only for kubelet >= 1.35 on a cgroup v1 image: set false to let kubelet start anyway. */
        failCgroupV1: z.boolean().optional(),
        /**
         * Where the Pulumi host reaches the API server (which listens on the management network):
         * by default a local SSH forward through the bastion, `ssh -N -L 6443:<master>:6443 <user>@<bastion>`.
         */
        apiEndpoint: z
          .string()
          .regex(/^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, {
            message: "accepted: HOST:PORT or [IPv6]:PORT, e.g. 127.0.0.1:6443",
          })
          .default("127.0.0.1:6443"),
      })
      .prefault({}),

    cilium: z
      .strictObject({
        version: version.default("1.17.18"),
        /** Helm client on the master that installs the chart (a Helm 3 release from get.helm.sh). */
        helmVersion: version.default("3.18.6"),
      })
      .prefault({}),

    receiver: z
      .strictObject({
        image: z.string().min(1).default("docker.io/library/debian:bookworm-slim"),
        namespace: z.string().regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/).default("ditg"),
        /** ITGRecv's TCP signaling port inside the pod. */
        signalingPort: portNumber.default(9000),
        signalingNodePort: portNumber.default(30900),
        /** Data port: pod port, Service port and NodePort are this one number (D-ITG names it in signaling). */
        dataPort: portNumber.default(31000),
        /** The signaling NodePort of the nodeport-remote path's receiver (its pod listens on signalingPort). */
        remoteSignalingNodePort: portNumber.default(30901),
        /** The nodeport-remote path's data port: pod port, Service port and NodePort, as dataPort. */
        remoteDataPort: portNumber.default(31001),
        /**
         * The second ITGRecv of every receiver pod, on ports of its own, each behind its own NodePort
         * on a NodePort path: flows alternate between the two, so a flow starts while the one before
         * it closes on the other (ITGRecv takes no new session in the second it waits before it
         * closes a flow; backends/ditg-close-wait.ts). The same keys as above.
         */
        alternate: z
          .strictObject({
            signalingPort: portNumber.default(9001),
            signalingNodePort: portNumber.default(30902),
            dataPort: portNumber.default(31002),
            remoteSignalingNodePort: portNumber.default(30903),
            remoteDataPort: portNumber.default(31003),
          })
          .prefault({}),
      })
      .prefault({}),

    workloads: z
      .strictObject({
        namespace: z.string().regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/).default("scale"),
      })
      .prefault({}),
  })
  ;

export const scenarioSchema = scenarioFields.superRefine((s, ctx) => crossChecks(s, ctx));

export type ScenarioInput = z.input<typeof scenarioSchema>;
export type Scenario = z.output<typeof scenarioSchema>;

export interface NodePortRange {
  readonly low: number;
  readonly high: number;
}

export function nodePortRange(s: Pick<Scenario, "kubernetes">): NodePortRange {
  const [low, high] = s.kubernetes.nodePortRange.split("-").map(Number) as [number, number];
  return { low, high };
}

/** The paths of a scenario; a part that does not say has the default's (the paper's path alone). */
export function scenarioPaths(s: Partial<Pick<Scenario, "paths">>): readonly ServicePath[] {
  return s.paths ?? DEFAULT_PATHS;
}

/** The two ITGRecv of a receiver pod: 0 runs on the `receiver` keys, 1 on `receiver.alternate`'s. */
export const RECEIVER_INSTANCES = [0, 1] as const;
export type ReceiverInstance = (typeof RECEIVER_INSTANCES)[number];

/** One ITGRecv's ports: the `receiver` keys, or those of `receiver.alternate`. */
export type ReceiverPortKeys = Omit<Scenario["receiver"], "image" | "namespace" | "alternate">;

/** The ports of one ITGRecv of the receiver pods. */
export function receiverPortKeys(s: Pick<Scenario, "receiver">, instance: ReceiverInstance): ReceiverPortKeys {
  return instance === 0 ? s.receiver : s.receiver.alternate;
}

/**
 * NodePort numbers the D-ITG receivers hold (signaling and data of the paper's receiver, and of the
 * nodeport-remote path's when the scenario lists it; each twice, for the pod's two ITGRecv); scaled
 * Services get the rest. The paper's receiver's first.
 */
export function receiverNodePorts(s: Pick<Scenario, "receiver"> & Partial<Pick<Scenario, "paths">>): number[] {
  const ports: number[] = [];
  for (const instance of RECEIVER_INSTANCES) ports.push(receiverPortKeys(s, instance).signalingNodePort, receiverPortKeys(s, instance).dataPort);
  if (scenarioPaths(s).includes("nodeport-remote")) {
    for (const instance of RECEIVER_INSTANCES) ports.push(receiverPortKeys(s, instance).remoteSignalingNodePort, receiverPortKeys(s, instance).remoteDataPort);
  }
  return ports;
}

/**
 * Where the receivers of the paths beyond the paper's have their ClusterIP: counted from the top of
 * each service subnet (0: its last usable address), far from the scaled Services, which count up
 * from the bottom. Fixed per path, so that listing another path never moves one (a Service's
 * ClusterIP cannot change).
 */
export const PATH_RECEIVER_CLUSTER_IP_SLOT: Readonly<Record<Exclude<ServicePath, "nodeport-local">, number>> = {
  "nodeport-remote": 0,
  clusterip: 1,
};

/** How many addresses at the top of each service subnet the listed paths' receivers keep from the scaled Services. */
export function receiverTopSlots(s: Partial<Pick<Scenario, "paths">>): number {
  return Math.max(0, ...scenarioPaths(s).map((p) => (p === "nodeport-local" ? 0 : PATH_RECEIVER_CLUSTER_IP_SLOT[p] + 1)));
}

/** How pod traffic crosses between the nodes: testbed:podRouting, or tunnel where the cluster has IPv4 (Cilium 1.17 tunnels over IPv4 only). */
export function podRouting(s: Pick<Scenario, "families"> & Partial<Pick<Scenario, "podRouting">>): PodRouting {
  return s.podRouting ?? (s.families.includes("ipv4") ? "tunnel" : "native");
}

/**
 * How many scaled Services the cluster can hold.
 * ClusterIPs: every Service takes one per family; the allocator skips the block's first and last
 * address, three more go to `kubernetes`, kube-dns and the paper's receiver, and the top ones to the
 * receivers of further paths (PATH_RECEIVER_CLUSTER_IP_SLOT).
 * NodePorts: the range less the receivers' own; Services beyond it are ClusterIP, as in the paper.
 */
export function serviceCapacity(s: Pick<Scenario, "kubernetes" | "families" | "receiver"> & Partial<Pick<Scenario, "paths">>): {
  nodePort: number;
  clusterIp: number;
} {
  const { low, high } = nodePortRange(s);
  const clusterIp = Math.min(
    ...s.families.map((f) => {
      const c = parseCidr(s.kubernetes.serviceSubnets[f]);
      if (!c) return 0;
      const usable = cidrSize(c) - 2n - 3n - BigInt(receiverTopSlots(s));
      return Number(usable > BigInt(Number.MAX_SAFE_INTEGER) ? BigInt(Number.MAX_SAFE_INTEGER) : usable);
    }),
  );
  return { nodePort: Math.max(0, high - low + 1 - receiverNodePorts(s).length), clusterIp };
}

function versionAtLeast(v: string, major: number, minor: number): boolean {
  const [a, b] = v.split(".").map(Number) as [number, number];
  return a > major || (a === major && b >= minor);
}

type RefineCtx = z.RefinementCtx<Scenario>;

function crossChecks(s: Scenario, ctx: RefineCtx): void {
  const issue = (path: (string | number)[], message: string) => ctx.addIssue({ code: "custom", path, message });

  // Admin access: the only door into the testbed.
  const admin = parseCidr(s.adminCidr);
  if (!admin) {
    issue(["adminCidr"], "not a CIDR; accepted: the address block of your workstation or VPN, e.g. 203.0.113.7/32");
  } else if (admin.prefix === 0) {
    issue(["adminCidr"], "opens SSH to the whole Internet; accepted: a block with a prefix length above 0, e.g. 203.0.113.7/32");
  } else if (admin.family === "ipv6") {
    issue(["adminCidr"], "is an IPv6 block but the bastion's floating IP is IPv4; accepted: an IPv4 block such as 203.0.113.7/32");
  }

  // Every internal block must be distinct: a route or a security-group rule cannot tell overlapping ones apart.
  const blocks: { path: (string | number)[]; cidr: Cidr }[] = [];
  for (const [group, pair] of [
    ["network.client", s.network.client],
    ["network.datacenter", s.network.datacenter],
    ["network.management", s.network.management],
    ["kubernetes.podSubnets", s.kubernetes.podSubnets],
    ["kubernetes.serviceSubnets", s.kubernetes.serviceSubnets],
  ] as const) {
    for (const f of FAMILIES) {
      const cidr = parseCidr(pair[f]);
      if (cidr) blocks.push({ path: [...group.split("."), f], cidr });
    }
  }
  for (let i = 0; i < blocks.length; i++) {
    for (let j = i + 1; j < blocks.length; j++) {
      if (cidrsOverlap(blocks[i]!.cidr, blocks[j]!.cidr)) {
        issue(
          blocks[j]!.path,
          `overlaps testbed:${blocks[i]!.path.join(".")} (${blocks[i]!.cidr.text}); accepted: a block disjoint from every other network, pod and service block`,
        );
      }
    }
  }

  // Lab blocks must hold the fixed host addresses and a DHCP pool (infra/openstack/address-plan.ts).
  for (const network of ["client", "datacenter", "management"] as const) {
    for (const f of s.families.includes("ipv6") ? FAMILIES : (["ipv4"] as const)) {
      const cidr = parseCidr(s.network[network][f]);
      if (cidr && cidrSize(cidr) < BigInt(MIN_BLOCK_ADDRESSES)) {
        issue(
          ["network", network, f],
          `holds ${cidrSize(cidr)} addresses; accepted: a block of at least ${MIN_BLOCK_ADDRESSES} (IPv4 /27 or shorter, IPv6 /123 or shorter), for the lab's fixed addresses and a DHCP pool`,
        );
      }
    }
  }
  for (const f of FAMILIES) {
    const cidr = parseCidr(s.kubernetes.serviceSubnets[f]);
    const hostBits = cidr ? (f === "ipv4" ? 32 : 128) - cidr.prefix : 0;
    if (hostBits > MAX_SERVICE_HOST_BITS) {
      issue(
        ["kubernetes", "serviceSubnets", f],
        `has ${hostBits} host bits, more than kube-apiserver accepts (${MAX_SERVICE_HOST_BITS}); accepted: ${f === "ipv4" ? "a /12 or longer prefix, e.g. 10.96.0.0/16" : "a /108 or longer prefix, e.g. fd00:10:96::/112"}`,
      );
    }
  }

  // How the links are capped.
  if (s.openstack.qosPolicyId !== undefined && s.linkShaping !== "neutron") {
    issue(
      ["openstack", "qosPolicyId"],
      `is set but testbed:linkShaping is "${s.linkShaping}"; accepted: linkShaping "neutron" (the policy then caps the measured ports), or no qosPolicyId`,
    );
  }
  if (s.openstack.dnsNameservers.length > 0 && !s.openstack.dnsNameservers.some((a) => isAddress(a, "ipv4"))) {
    issue(
      ["openstack", "dnsNameservers"],
      "has no IPv4 resolver, and only the management network's IPv4 subnet hands resolvers out (DHCP); accepted: at least one IPv4 address, e.g. 9.9.9.9",
    );
  }

  // NodePort range and the receiver's ports inside it.
  const m = /^(\d+)-(\d+)$/.exec(s.kubernetes.nodePortRange);
  if (m) {
    const [low, high] = [Number(m[1]), Number(m[2])];
    if (low < 1 || high > 65535 || low > high) {
      issue(["kubernetes", "nodePortRange"], "accepted: LOW-HIGH with 1 <= LOW <= HIGH <= 65535, e.g. 30000-32767");
    } else {
      // Every NodePort a receiver holds: in the range and held by one port alone. The
      // nodeport-remote path's receiver holds two of its own (and its alternate two), only when it is listed.
      const remote = s.paths.includes("nodeport-remote");
      const taken = new Map<number, string>();
      for (const instance of RECEIVER_INSTANCES) {
        const prefix = instance === 0 ? "" : "alternate.";
        const keys = remote ? (["signalingNodePort", "dataPort", "remoteSignalingNodePort", "remoteDataPort"] as const) : (["signalingNodePort", "dataPort"] as const);
        for (const key of keys) {
          const port = receiverPortKeys(s, instance)[key];
          const at = ["receiver", ...(instance === 0 ? [] : ["alternate"]), key];
          const isRemote = key === "remoteSignalingNodePort" || key === "remoteDataPort";
          if (port < low || port > high) {
            issue(at, `is outside the NodePort range ${low}-${high}${isRemote ? ', and testbed:paths lists "nodeport-remote", whose receiver it serves' : ""}; accepted: a port inside it`);
          } else if (taken.has(port)) {
            issue(
              at,
              key === "dataPort" && instance === 0 && taken.get(port) === "receiver.signalingNodePort"
                ? "equals receiver.signalingNodePort; accepted: two different ports"
                : `equals ${taken.get(port)}; accepted: a NodePort no other receiver port holds`,
            );
          }
          if (!taken.has(port)) taken.set(port, `receiver.${prefix}${key}`);
        }
      }
      const cap = serviceCapacity(s);
      const tooMany = (path: string[], n: number) =>
        issue(
          path,
          `asks for ${n} Services but the service subnets hold ${cap.clusterIp} (NodePort: ${cap.nodePort}, the rest ClusterIP); accepted: at most ${cap.clusterIp}, or widen testbed:kubernetes.serviceSubnets`,
        );
      if (s.services > cap.clusterIp) tooMany(["services"], s.services);
      const largestStep = Math.max(...s.sweep.services);
      if (largestStep > cap.clusterIp) tooMany(["sweep", "services"], largestStep);
    }
  }

  // A receiver pod's two ITGRecv listen for signaling in the one pod, and bind the data ports there:
  // one number for each (a TCP data flow on a signaling port's number fails to bind).
  const signaling = RECEIVER_INSTANCES.map((i) => receiverPortKeys(s, i).signalingPort);
  if (signaling[0] === signaling[1]) {
    issue(["receiver", "alternate", "signalingPort"], "equals receiver.signalingPort; accepted: another port (both ITGRecv of a receiver pod listen in it)");
  }
  for (const instance of RECEIVER_INSTANCES) {
    for (const key of ["dataPort", "remoteDataPort"] as const) {
      const port = receiverPortKeys(s, instance)[key];
      const clash = signaling.indexOf(port);
      if (clash >= 0) {
        issue(["receiver", ...(instance === 0 ? [] : ["alternate"]), key], `equals receiver.${clash === 0 ? "" : "alternate."}signalingPort; accepted: a port no ITGRecv listens on for signaling`);
      }
    }
  }

  // Paths and the workers they need.
  for (const path of s.workers >= 1 ? s.paths : []) {
    const needed = workersNeeded(path);
    if (s.workers < needed) {
      const p = PATHS[path];
      issue(
        ["workers"],
        `is too few for "${path}" in testbed:paths (${p.description}); accepted: ${needed} or more workers, or testbed:paths without "${path}"`,
      );
    }
  }
  if (s.podRouting === "tunnel" && !s.families.includes("ipv4")) {
    issue(
      ["podRouting"],
      `needs IPv4 between the nodes (Cilium 1.17 tunnels over IPv4 only) but testbed:families is ${JSON.stringify(s.families)}; accepted: "native", or add ipv4 to testbed:families`,
    );
  }

  // Versions that cannot boot on the image.
  const kernel = s.openstack.imageKernel.split(".").map(Number) as [number, number];
  const kernelAtLeast = (a: number, b: number) => kernel[0] > a || (kernel[0] === a && kernel[1] >= b);
  if (versionAtLeast(s.cilium.version, 1, 18) && !kernelAtLeast(5, 10)) {
    issue(
      ["cilium", "version"],
      `needs kernel >= 5.10 but the image has ${s.openstack.imageKernel}; accepted: a 1.17.x version, or state a newer kernel in testbed:openstack.imageKernel (e.g. the Ubuntu 20.04 HWE kernel 5.15)`,
    );
  }
  if (s.dataplane === "nftables" && !kernelAtLeast(...(NFTABLES_MIN_KERNEL.split(".").map(Number) as [number, number]))) {
    issue(
      ["openstack", "imageKernel"],
      `is older than ${NFTABLES_MIN_KERNEL}, which kube-proxy's nftables mode needs; accepted: an image with a newer kernel, stated here, e.g. Ubuntu 22.04 (testbed:openstack.image ubuntu-22.04, imageKernel 5.15, imageCgroup v2), or another dataplane`,
    );
  }
  if (!versionAtLeast(s.cilium.version, 1, 16)) {
    issue(["cilium", "version"], "is older than 1.16 (kubeProxyReplacement true/false); accepted: 1.16.x or 1.17.x on kernel 5.4");
  }
  if (versionAtLeast(s.kubernetes.version, 1, 35) && s.openstack.imageCgroup === "v1" && s.kubernetes.failCgroupV1 !== false) {
    issue(
      ["kubernetes", "version"],
      "kubelet 1.35 and later refuses cgroup v1, which the image uses; accepted: a version up to 1.34.x, or set testbed:kubernetes.failCgroupV1 to false, or state testbed:openstack.imageCgroup v2",
    );
  }
  if (!versionAtLeast(s.kubernetes.version, 1, 31)) {
    issue(["kubernetes", "version"], "is older than 1.31 (kubeadm v1beta4 configuration); accepted: 1.31.x or later");
  }

  if (s.flavors.create && s.flavors.hostCpuMHz === undefined) {
    issue(
      ["flavors", "hostCpuMHz"],
      `missing; with flavors.create the ${s.flavors.cpuCapMHz} MHz cap becomes a CPU quota relative to the compute hosts' clock; accepted: their clock in MHz, e.g. 3000`,
    );
  }
  if (s.flavors.hostCpuMHz !== undefined && s.flavors.cpuCapMHz > s.flavors.hostCpuMHz) {
    issue(["flavors", "cpuCapMHz"], `is above hostCpuMHz (${s.flavors.hostCpuMHz}); accepted: at most the host clock`);
  }
  if (s.measure && !s.families.includes(s.measure.family)) {
    issue(["measure", "family"], `is not in testbed:families (${s.families.join(", ")}); accepted: one of them`);
  }
}

/** Bad configuration, with one line per problem naming the key, the value and what is accepted. */
export class ScenarioError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid testbed configuration:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
    this.name = "ScenarioError";
  }
}

function valueAt(input: unknown, path: PropertyKey[]): unknown {
  let v: unknown = input;
  for (const k of path) {
    if (v === null || typeof v !== "object") return undefined;
    v = (v as Record<PropertyKey, unknown>)[k];
  }
  return v;
}

/** Zod's type names as the messages say them. */
const TYPE_NAMES: Readonly<Record<string, string>> = {
  array: "a list",
  object: "an object",
  int: "an integer",
  number: "a number",
  string: "a string",
  boolean: "true or false",
};

/** A JSON value of a list written as text ("ipv4,ipv6" -> ["ipv4","ipv6"]), for the example of a hint. */
function listExample(text: string): string {
  const items = text.split(",").map((s) => s.trim()).filter(Boolean);
  return JSON.stringify(items.map((i) => (/^-?\d+(\.\d+)?$/.test(i) ? Number(i) : i)));
}

/**
 * How to write a list or an object that arrived as plain text (a value that was not JSON): the JSON to give
 * `testbed plan --config`, and the `pulumi config set --path` that sets one entry.
 */
function syntaxHint(key: string, expected: string, text: string): string | undefined {
  if (expected === "array") {
    const example = listExample(text);
    return `${key} is a list, written as JSON: --config '${key}=${example}' (testbed plan, diff), or \`pulumi config set --path '${CONFIG_NAMESPACE}:${key}[0]' ${JSON.parse(example)[0] ?? "VALUE"}\``;
  }
  if (expected === "object") {
    const leaf = objectKeysAt(key.split("."))[0] ?? "KEY";
    return `${key} is an object, written as JSON or one leaf at a time: --config '${key}.${leaf}=VALUE' (testbed plan, diff), or \`pulumi config set --path '${CONFIG_NAMESPACE}:${key}.${leaf}' VALUE\``;
  }
  return undefined;
}

function describeAccepted(issue: z.core.$ZodIssue): string {
  switch (issue.code) {
    case "invalid_value":
      return `accepted: ${issue.values.map((v) => JSON.stringify(v)).join(" or ")}`;
    case "invalid_type":
      return issue.message.startsWith("missing") ? issue.message : `accepted: ${TYPE_NAMES[issue.expected] ?? `a ${issue.expected}`}`;
    case "too_small":
      return `accepted: ${issue.origin === "array" ? "a list with at least" : issue.origin === "string" ? "at least" : "a number >="} ${String(issue.minimum)}${issue.origin === "array" ? (Number(issue.minimum) === 1 ? " entry" : " entries") : issue.origin === "string" ? (Number(issue.minimum) === 1 ? " character" : " characters") : ""}`;
    case "too_big":
      return `accepted: ${issue.origin === "array" ? "a list with at most" : "a number <="} ${String(issue.maximum)}`;
    case "unrecognized_keys":
      return unknownKeysMessage(issue.keys, objectKeysAt(issue.path));
    default:
      return issue.message;
  }
}

/** The keys an object of the schema accepts at `path` (through defaults, optionals and refinements). */
function objectKeysAt(path: readonly PropertyKey[]): string[] {
  let node: z.core.$ZodType = scenarioSchema;
  for (const key of [...path, undefined]) {
    for (;;) {
      const def = node._zod.def as { innerType?: z.core.$ZodType; in?: z.core.$ZodType; out?: z.core.$ZodType };
      const inner = def.innerType ?? (def.in && def.out ? def.out : undefined);
      if (!inner) break;
      node = inner;
    }
    if (key === undefined) break;
    const shape = (node._zod.def as { shape?: Record<string, z.core.$ZodType> }).shape;
    const next = shape?.[String(key)];
    if (!next) return [];
    node = next;
  }
  return Object.keys((node._zod.def as { shape?: Record<string, unknown> }).shape ?? {});
}

function unknownKeysMessage(keys: readonly string[], known: readonly string[]): string {
  return keys
    .map((key) => {
      const near = closestKey(key, known);
      return `unknown key "${key}"${near ? ` (did you mean "${near}"?)` : ""}`;
    })
    .concat(known.length > 0 ? [`accepted: ${known.join(", ")}`] : [])
    .join("; ");
}

/** Keys of the testbed: namespace a stack may set: the schema's, and the private key (a secret). */
export function knownConfigKeys(): string[] {
  return [...Object.keys(scenarioSchema.shape), "sshPrivateKey"];
}

/**
 * Problems with the keys set in the testbed: namespace (full keys such as "testbed:sevices"): an
 * unknown key is refused with the closest known one, so a typo never passes silently as a default.
 */
export function unknownConfigKeyProblems(fullKeys: readonly string[]): string[] {
  const known = knownConfigKeys();
  return fullKeys
    .filter((k) => k.startsWith(`${CONFIG_NAMESPACE}:`))
    .map((k) => k.slice(CONFIG_NAMESPACE.length + 1))
    .filter((k) => !known.includes(k))
    .map((k) => {
      const near = closestKey(k, known);
      return `${CONFIG_NAMESPACE}:${k} is not a testbed setting${near ? `; did you mean ${CONFIG_NAMESPACE}:${near}?` : ""} (the README lists every key)`;
    });
}

function describeIssue(issue: z.core.$ZodIssue, input: unknown, withDefaults: unknown): string {
  const key = `${CONFIG_NAMESPACE}:${issue.path.map(String).join(".")}`;
  // A check across keys may be about a default the user never set: it names the default's value.
  const value = valueAt(input, issue.path) ?? (issue.code === "custom" ? valueAt(withDefaults, issue.path) : undefined);
  const got = value === undefined ? "" : ` ${JSON.stringify(value)}`;
  if (issue.code === "unrecognized_keys") return `${key}: ${describeAccepted(issue)}`;
  if (issue.code === "invalid_type" && value === undefined) {
    return `${key}: ${issue.message.startsWith("missing") ? issue.message : "missing"}`;
  }
  if (issue.code === "invalid_type" && typeof value === "number" && issue.expected === "int") {
    return `${key}:${got} is not a whole number; accepted: an integer`;
  }
  if (issue.code === "custom" || issue.code === "invalid_format") {
    const m = issue.message;
    if (m.startsWith("not ")) return `${key}:${got} is ${m}`;
    if (m.startsWith("accepted")) return `${key}:${got} is not accepted; ${m}`;
    return `${key}:${got} ${m}`;
  }
  const hint =
    issue.code === "invalid_type" && value !== null && typeof value !== "object" ? syntaxHint(issue.path.map(String).join("."), issue.expected, String(value)) : undefined;
  return `${key}:${got} is not accepted; ${describeAccepted(issue)}${hint ? `; ${hint}` : ""}`;
}

/** Parses raw config (plain objects, as Pulumi config or a test gives them) into a Scenario, or throws ScenarioError. */
export function parseScenario(raw: unknown): Scenario {
  const result = scenarioSchema.safeParse(raw);
  if (result.success) return result.data;
  const withDefaults = scenarioFields.safeParse(raw).data;
  throw new ScenarioError(result.error.issues.map((i) => describeIssue(i, raw, withDefaults)));
}

/** The config keys a user must replace before `pulumi up`: the committed stack files carry placeholders. */
export const PLACEHOLDERS = {
  adminCidr: "192.0.2.0/24",
  sshPublicKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPLACEHOLDERREPLACEWITHYOURKEYxxxxxxxxxxxxxx replace-me",
} as const;

/** Keys still holding a documentation placeholder. */
export function placeholdersIn(s: Pick<Scenario, "adminCidr" | "sshPublicKey">): string[] {
  const doc4 = ["192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"].map((t) => parseCidr(t)!);
  const admin = parseCidr(s.adminCidr);
  const keys: string[] = [];
  if (admin && doc4.some((d) => cidrsOverlap(d, admin))) {
    keys.push(`${CONFIG_NAMESPACE}:adminCidr`);
  }
  if (s.sshPublicKey === PLACEHOLDERS.sshPublicKey) keys.push(`${CONFIG_NAMESPACE}:sshPublicKey`);
  return keys;
}
