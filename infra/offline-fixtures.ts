// What remote commands print, for offline runs of the program. Each entry stands for a real
// command's output so that the program's parsing of it runs under the mocked engine.
import { readFileSync } from "node:fs";
import { readinessEstimate } from "./cluster/readiness.js";

export interface CommandFixture {
  /** Matches the Pulumi resource name of a command:remote:Command or command:local:Command. */
  readonly name: RegExp;
  /** The output, or a function of the command's inputs for commands whose output echoes them. */
  readonly stdout: string | ((inputs: Record<string, unknown>) => string);
}

/** The text of a command input, unwrapped from the offline engine's secret envelope. */
function inputText(inputs: Record<string, unknown>, key: string): string {
  const v = inputs[key];
  if (typeof v === "string") return v;
  if (v && typeof v === "object" && typeof (v as { $secret?: unknown }).$secret === "string") return (v as { $secret: string }).$secret;
  return "";
}

/** A shell variable's value as assigned in a (possibly re-quoted) script inside a command line. */
function scriptVariable(inputs: Record<string, unknown>, name: string, value: RegExp): string | undefined {
  const m = new RegExp(`${name}=['"]*(${value.source})`).exec(inputText(inputs, "create"));
  return m?.[1];
}

// kubeadm's admin.conf as `cat /etc/kubernetes/admin.conf` prints it; credentials are stand-ins.
const pemBase64 = (label: string, body: string) =>
  Buffer.from(`-----BEGIN ${label}-----\n${body}\n-----END ${label}-----\n`).toString("base64");
const ADMIN_CONF = `apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: ${pemBase64("CERTIFICATE", "T0ZGTElORS1GSVhUVVJFLUNMVVNURVItQ0E=")}
    server: https://198.19.0.10:6443
  name: kubernetes
contexts:
- context:
    cluster: kubernetes
    user: kubernetes-admin
  name: kubernetes-admin@kubernetes
current-context: kubernetes-admin@kubernetes
kind: Config
preferences: {}
users:
- name: kubernetes-admin
  user:
    client-certificate-data: ${pemBase64("CERTIFICATE", "T0ZGTElORS1GSVhUVVJFLUFETUlOLUNFUlQ=")}
    client-key-data: ${pemBase64("RSA PRIVATE KEY", "T0ZGTElORS1GSVhUVVJFLU5PVC1BLUtFWQ==")}
`;

/** The cluster CA's hash the master's join authorization prints offline. */
export const OFFLINE_CA_CERT_HASH = `sha256:${"0f".repeat(32)}`;

/** Filled by the modules that declare commands whose stdout the program reads. */
export const COMMAND_FIXTURES: CommandFixture[] = [
  // Kubernetes cluster (infra/cluster): node preparation marker, admin.conf, the join key and the
  // master's answer to it, node table.
  {
    name: /-(master|worker(-\d+)?)-wait$/,
    stdout: (inputs) =>
      [
        `kubernetes=${scriptVariable(inputs, "K8S_VERSION", /[0-9.]+/) ?? "0.0.0"}-1.1`,
        "containerd=1.7.24-0ubuntu1~20.04.2",
        "kernel=5.4.0-216-generic",
        "cgroup=tmpfs",
        "helm=v3.18.6",
        "",
      ].join("\n"),
  },
  { name: /-kubeadm-init$/, stdout: ADMIN_CONF },
  {
    // Each worker's key carries its own comment (worker 1's testbed-join, worker-N's testbed-join-worker-N).
    name: /-join-key(-worker-\d+)?$/,
    stdout: (inputs) =>
      `ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOFFLINEFIXTUREJOINKEYxxxxxxxxxxxxxxxxxxxxxxx ${/-C (testbed-join[-a-z0-9]*)/.exec(inputText(inputs, "create"))?.[1] ?? "testbed-join"}\n`,
  },
  {
    name: /-join-authorize(-worker-\d+)?$/,
    stdout: `host-key ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOFFLINEFIXTUREHOSTKEYxxxxxxxxxxxxxxxxxxxxxxx\nca-cert-hash ${OFFLINE_CA_CERT_HASH}\n`,
  },
  // Workloads (infra/workloads.ts): the apply script's last line. Offline, the times are the
  // readiness model's estimate for the step (infra/cluster/readiness.ts), not a measurement.
  {
    name: /-apply$/,
    stdout: (inputs) => {
      const services = Number(scriptVariable(inputs, "KEEP", /[0-9]+/) ?? "0");
      const families = Number(scriptVariable(inputs, "FAMILIES", /[0-9]+/) ?? "1");
      const e = readinessEstimate({ families: families === 2 ? ["ipv4", "ipv6"] : ["ipv4"] }, services);
      const endpoints = e.endpointSlicesS.toFixed(1);
      return `step services=${services} endpointsReadyAfterS=${endpoints} programmedAfterS=${(e.endpointSlicesS + e.programS).toFixed(1)} programmedServices=${services}\n`;
    },
  },
  {
    name: /-nodes-ready$/,
    stdout: (inputs) => {
      const nodes = (scriptVariable(inputs, "EXPECTED_NODE_IPS", /[0-9a-f:., ]+/) ?? "").trim().split(/\s+/).filter(Boolean);
      return nodes
        .map((ips, i) => `testbed-${i === 0 ? "master" : i === 1 ? "worker" : `worker-${i}`}\tv1.32.9\tcontainerd://1.7.24\t${ips.split(",").join(" ")} \n`)
        .join("");
    },
  },
  // The connection-setup probe (infra/setup-probe.ts): each build prints where it installed the probe.
  { name: /-(client|worker)-build$/, stdout: (inputs) => `${scriptVariable(inputs, "BINARY", /[/\w.-]+/) ?? ""}\n` },
  // Measurement (infra/measurement.ts): what the runs' script and the pairing printed in a real run
  // against ITGRecv on loopback and an sshd, per profile and family (recorded by
  // scripts/record-measurement-fixture.ts).
  { name: /-ditg-runs$/, stdout: (inputs) => measurementFixture(inputs, "") },
  { name: /-ditg-pairing$/, stdout: (inputs) => measurementFixture(inputs, ".pairing") },
];

function measurementFixture(inputs: Record<string, unknown>, suffix: string): string {
  const profile = scriptVariable(inputs, "PROFILE", /latency|throughput/);
  const family = scriptVariable(inputs, "FAMILY", /ipv4|ipv6/);
  if (!profile || !family) return "";
  return readFileSync(new URL(`fixtures/measurement-${profile}-${family}${suffix}.txt`, import.meta.url), "utf8");
}

export function mockCommandStdout(name: string, inputs: Record<string, unknown>): string {
  const fixture = COMMAND_FIXTURES.find((f) => f.name.test(name));
  if (!fixture) return "";
  return typeof fixture.stdout === "function" ? fixture.stdout(inputs) : fixture.stdout;
}
