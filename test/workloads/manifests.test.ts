import { testScenario } from "../fixtures/scenario.js";
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Deployment } from "kubernetes-models/apps/v1";
import { Namespace, Service } from "kubernetes-models/v1";
import { describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import {
  clientReadyCheck,
  clientStartScript,
  manifestObjects,
  pathManifestObjects,
  renderManifests,
  workerAffinity,
  type ManifestObject,
} from "../../workloads/manifests.js";
import {
  DITG_DEBIAN_VERSION,
  LIBSCTP_DEBIAN_VERSION,
  packageFetchScript,
  receiverStartScript,
  signalingListenCheck,
} from "../../workloads/receiver.js";
import { buildServiceSet } from "../../workloads/service-set.js";

const scenario = testScenario;

/** Validates one object with the model generated from Kubernetes' OpenAPI; throws on a violation. */
function validate(o: ManifestObject): void {
  switch (o.kind) {
    case "Service":
      new Service(o).validate();
      break;
    case "Deployment":
      new Deployment(o).validate();
      break;
    case "Namespace":
      new Namespace(o).validate();
      break;
  }
}

const DNS1035 = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;

function hasCommand(cmd: string): boolean {
  return spawnSync("sh", ["-c", `command -v ${cmd}`]).status === 0;
}

describe("renderManifests", () => {
  it("renders YAML whose every document Kubernetes' OpenAPI models accept, at N = 10000", () => {
    const s = scenario();
    const files = renderManifests(s, buildServiceSet(s, 10000));
    const objects = files.flatMap((f) => parseAllDocuments(f.yaml).map((d) => d.toJS() as ManifestObject));
    expect(objects.filter((o) => o.kind === "Service")).toHaveLength(10001);
    expect(objects.filter((o) => o.kind === "Deployment")).toHaveLength(2);
    for (const o of objects) {
      validate(o);
      expect(o.metadata!.name).toMatch(DNS1035);
      expect(o.metadata!.name!.length).toBeLessThanOrEqual(63);
    }
  });

  it("has a validator that rejects a broken object (so the check above can fail)", () => {
    const s = scenario();
    const svc = manifestObjects(s, buildServiceSet(s, 1))[2]!.objects[0] as Service;
    expect(() => validate({ ...svc, spec: { ...svc.spec, type: "Nodeport" as never } })).toThrow(/allowed values/);
    expect(() => validate({ ...svc, spec: { ...svc.spec, ports: [{ port: "80" as never }] } })).toThrow(/integer/);
  });

  it("is deterministic and its YAML parses back to the same objects, one document per object", () => {
    const s = scenario();
    const set = buildServiceSet(s, 300);
    const a = renderManifests(s, set);
    expect(renderManifests(s, buildServiceSet(s, 300))).toEqual(a);
    expect(a.map((f) => f.name)).toEqual(["namespaces.yaml", "scale-backend.yaml", "scale-services.yaml", "ditg-receiver.yaml"]);
    const files = manifestObjects(s, set);
    a.forEach((f, i) => {
      const docs = parseAllDocuments(f.yaml).map((d) => d.toJS());
      expect(docs).toEqual(files[i]!.objects);
    });
  });

  it("writes scaled Services as dual-stack with explicit ClusterIPs, NodePort and ETP=Local", () => {
    const s = scenario();
    const [svc] = manifestObjects(s, buildServiceSet(s, 1))[2]!.objects as Service[];
    expect(svc!.spec).toMatchObject({
      type: "NodePort",
      ipFamilyPolicy: "RequireDualStack",
      ipFamilies: ["IPv4", "IPv6"],
      clusterIP: "10.96.0.3",
      clusterIPs: ["10.96.0.3", "fd00:10:96::3"],
      externalTrafficPolicy: "Local",
      selector: { "app.kubernetes.io/name": "scale-backend" },
    });
  });

  it("puts the primary family first and uses SingleStack with one family", () => {
    const v6first = scenario({ families: ["ipv6", "ipv4"] });
    const [a] = manifestObjects(v6first, buildServiceSet(v6first, 1))[2]!.objects as Service[];
    expect(a!.spec!.ipFamilies).toEqual(["IPv6", "IPv4"]);
    expect(a!.spec!.clusterIP).toBe("fd00:10:96::3");
    const v4 = scenario({ families: ["ipv4"] });
    const [b] = manifestObjects(v4, buildServiceSet(v4, 1))[2]!.objects as Service[];
    expect(b!.spec).toMatchObject({ ipFamilyPolicy: "SingleStack", ipFamilies: ["IPv4"], clusterIPs: ["10.96.0.3"] });
  });

  it("omits the Services file when a step has no scaled Service", () => {
    const s = scenario({ services: 0 });
    expect(renderManifests(s, buildServiceSet(s)).map((f) => f.name)).toEqual([
      "namespaces.yaml",
      "scale-backend.yaml",
      "ditg-receiver.yaml",
    ]);
  });

  it("selects one backend pod that exists for every scaled Service and keeps it off the control plane", () => {
    const s = scenario();
    const files = manifestObjects(s, buildServiceSet(s, 50));
    const backend = files[1]!.objects[0] as Deployment;
    const labels = backend.spec!.template.metadata!.labels!;
    const services = files[2]!.objects as Service[];
    for (const svc of services) {
      for (const [k, v] of Object.entries(svc.spec!.selector!)) expect(labels[k]).toBe(v);
      expect(svc.metadata!.namespace).toBe(backend.metadata!.namespace);
    }
    const pod = backend.spec!.template.spec!;
    expect(pod.containers[0]!.readinessProbe).toBeUndefined();
    expect(pod.enableServiceLinks).toBe(false);
    expect(JSON.stringify(pod.affinity)).toContain('"key":"node-role.kubernetes.io/control-plane","operator":"DoesNotExist"');
  });

  it("exposes the receiver with data port = container port = Service port = NodePort for TCP and UDP", () => {
    const s = scenario();
    const files = manifestObjects(s, buildServiceSet(s, 1));
    const [deploy, svc] = files.at(-1)!.objects as [Deployment, Service];
    const container = deploy.spec!.template.spec!.containers[0]!;
    for (const proto of ["TCP", "UDP"] as const) {
      expect(container.ports).toContainEqual({ name: `data-${proto.toLowerCase()}`, containerPort: 31000, protocol: proto });
      expect(svc.spec!.ports).toContainEqual({ name: `data-${proto.toLowerCase()}`, protocol: proto, port: 31000, targetPort: 31000, nodePort: 31000 });
    }
    expect(svc.spec!.ports).toContainEqual({ name: "signaling", protocol: "TCP", port: 9000, targetPort: 9000, nodePort: 30900 });
    expect(svc.spec!.externalTrafficPolicy).toBe("Local");
    expect(svc.spec!.ipFamilyPolicy).toBe("RequireDualStack");
    for (const [k, v] of Object.entries(svc.spec!.selector!)) expect(deploy.spec!.template.metadata!.labels![k]).toBe(v);
  });

  it("never probes the receiver over TCP or HTTP; probes are exec checks; restarts are on", () => {
    const s = scenario();
    const yaml = renderManifests(s, buildServiceSet(s, 1)).at(-1)!.yaml;
    expect(yaml).not.toMatch(/tcpSocket|httpGet|grpc:/);
    const deploy = manifestObjects(s, buildServiceSet(s, 1)).at(-1)!.objects[0] as Deployment;
    const pod = deploy.spec!.template.spec!;
    const c = pod.containers[0]!;
    for (const probe of [c.startupProbe, c.readinessProbe, c.livenessProbe]) {
      expect(probe!.exec!.command).toEqual(["/bin/sh", "-c", signalingListenCheck(s)]);
    }
    expect(pod.restartPolicy).toBe("Always");
    expect(c.command!.at(-1)).toContain("trap '' PIPE");
    // Two ITGRecv: the second in the background, the first as the container's process; the checks pass while both listen.
    expect(c.command!.at(-1)).toContain("ITGRecv -Sp 9001 -a :: -q 1000 &\nexec ITGRecv -Sp 9000 -a :: -q 1000");
    expect(signalingListenCheck(s).match(/:(2328|2329) /g)).toEqual([":2328 ", ":2329 "]);
    expect(c.ports!.map((p) => [p.name, p.containerPort, p.protocol])).toEqual([
      ["signaling", 9000, "TCP"], ["data-tcp", 31000, "TCP"], ["data-udp", 31000, "UDP"],
      ["signaling-2", 9001, "TCP"], ["data-tcp-2", 31002, "TCP"], ["data-udp-2", 31002, "UDP"],
    ]);
  });

  it("binds ITGRecv to 0.0.0.0 on an IPv4-only testbed and skips the bindv6only check", () => {
    const script = receiverStartScript(scenario({ families: ["ipv4"] }));
    expect(script).toContain("exec ITGRecv -Sp 9000 -a 0.0.0.0 -q 1000");
    expect(script).not.toContain("bindv6only");
  });

  it("uses the configured receiver image for the init container and the receiver", () => {
    const s = scenario({ receiver: { image: "registry.example/ditg:1" } });
    const deploy = manifestObjects(s, buildServiceSet(s, 1)).at(-1)!.objects[0] as Deployment;
    const pod = deploy.spec!.template.spec!;
    expect([pod.initContainers![0]!.image, pod.containers[0]!.image]).toEqual(["registry.example/ditg:1", "registry.example/ditg:1"]);
  });
});

describe("receiver image", () => {
  it("pins the same d-itg version in the Dockerfile as in the manifests", () => {
    const dockerfile = readFileSync(new URL("../../workloads/Dockerfile", import.meta.url), "utf8");
    expect(dockerfile).toMatch(new RegExp(`^ARG DITG_VERSION=${DITG_DEBIAN_VERSION.replace(/[.+]/g, "\\$&")}$`, "m"));
    expect(dockerfile).toContain('"d-itg=${DITG_VERSION}"');
    expect(packageFetchScript()).toContain(`d-itg=${DITG_DEBIAN_VERSION} libsctp1=${LIBSCTP_DEBIAN_VERSION}`);
  });

  it.skipIf(!hasCommand("apt-cache"))("pins versions that Debian's archive lists", () => {
    for (const pkg of [`d-itg=${DITG_DEBIAN_VERSION}`, `libsctp1=${LIBSCTP_DEBIAN_VERSION}`]) {
      const out = execFileSync("apt-cache", ["show", pkg], { encoding: "utf8" });
      expect(out).toMatch(/^Version: /m);
    }
    // d-itg needs nothing else that debian:bookworm-slim lacks.
    const depends = execFileSync("apt-cache", ["show", `d-itg=${DITG_DEBIAN_VERSION}`], { encoding: "utf8" });
    const names = /^Depends: (.*)$/m.exec(depends)![1]!.split(",").map((d) => d.trim().split(" ")[0]);
    expect(names.sort()).toEqual(["libc6", "libgcc-s1", "libsctp1", "libstdc++6"]);
  });

  it.skipIf(!hasCommand("shellcheck"))("has scripts that shellcheck passes", () => {
    const dir = mkdtempSync(join(tmpdir(), "wl-sh-"));
    try {
      const s = scenario();
      const scripts = {
        "fetch.sh": packageFetchScript(),
        "start.sh": receiverStartScript(s),
        "start4.sh": receiverStartScript(scenario({ families: ["ipv4"] })),
        "check.sh": signalingListenCheck(s) + "\n",
      };
      for (const [name, body] of Object.entries(scripts)) {
        const file = join(dir, name);
        writeFileSync(file, `#!/bin/sh\n${body}`);
        const r = spawnSync("shellcheck", ["-s", "sh", file], { encoding: "utf8" });
        expect(r.stdout + r.stderr, name).toBe("");
        expect(r.status, name).toBe(0);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("placement and the further paths' objects", () => {
  const all = () => scenario({ paths: ["nodeport-local", "nodeport-remote", "clusterip"], workers: 2 });
  const NODES = ["testbed-worker", "testbed-worker-2"];
  const PROBE = "/usr/local/bin/connection-setup-probe";
  const hostnameOf = (d: Deployment) =>
    d.spec!.template.spec!.affinity!.nodeAffinity!.requiredDuringSchedulingIgnoredDuringExecution!.nodeSelectorTerms[0]!.matchExpressions!.find((e) => e.key === "kubernetes.io/hostname")?.values;

  it("keeps the paper's one-worker manifests free of node names", () => {
    expect(renderManifests(scenario(), buildServiceSet(scenario(), 10))).toEqual(renderManifests(scenario(), buildServiceSet(scenario(), 10), NODES));
    expect(workerAffinity({ workers: 1 }, 1)).toEqual((manifestObjects(scenario(), buildServiceSet(scenario(), 1))[1]!.objects[0] as Deployment).spec!.template.spec!.affinity);
  });

  it("pins the backend and the paper's receiver to worker 1 by name once there are more workers", () => {
    const s = all();
    const files = manifestObjects(s, buildServiceSet(s, 10), NODES);
    expect(hostnameOf(files[1]!.objects[0] as Deployment)).toEqual(["testbed-worker"]);
    expect(hostnameOf(files.at(-1)!.objects[0] as Deployment)).toEqual(["testbed-worker"]);
    expect(() => manifestObjects(s, buildServiceSet(s, 10))).toThrow(/a pod placed on worker 1 needs the worker's node name; none were given \(testbed:workers 2\)/);
  });

  it("renders the nodeport-remote path: its receiver on worker 2 behind a NodePort with externalTrafficPolicy Cluster", () => {
    const file = pathManifestObjects(all(), "nodeport-remote", { nodes: NODES, setupProbePath: PROBE });
    expect(file.name).toBe("ditg-nodeport-remote.yaml");
    file.objects.forEach(validate);
    const [deploy, svc] = file.objects as [Deployment, Service];
    expect(deploy.metadata!.name).toBe("ditg-receiver-remote");
    expect(hostnameOf(deploy)).toEqual(["testbed-worker-2"]);
    expect(deploy.spec!.template.spec!.containers[0]!.ports).toContainEqual({ name: "data-udp", containerPort: 31001, protocol: "UDP" });
    expect(deploy.spec!.template.spec!.containers[0]!.ports).toContainEqual({ name: "data-udp-2", containerPort: 31003, protocol: "UDP" });
    expect(svc.spec).toMatchObject({ type: "NodePort", externalTrafficPolicy: "Cluster", selector: deploy.spec!.selector!.matchLabels });
    expect(svc.spec!.ports!.map((p) => p.nodePort)).toEqual([30901, 31001, 31001, 30903, 31003, 31003]);
    expect(file.objects).toHaveLength(2);
  });

  it("renders the clusterip path: its receiver on worker 2 behind a ClusterIP, and a client pod on worker 1 with D-ITG and the probe", () => {
    const file = pathManifestObjects(all(), "clusterip", { nodes: NODES, setupProbePath: PROBE });
    file.objects.forEach(validate);
    const [receiver, svc, client] = file.objects as [Deployment, Service, Deployment];
    expect(hostnameOf(receiver)).toEqual(["testbed-worker-2"]);
    expect(svc.spec).toMatchObject({ type: "ClusterIP", clusterIPs: ["10.96.255.253", "fd00:10:96::fffd"] });
    expect(svc.spec!.externalTrafficPolicy).toBeUndefined();
    expect(client.metadata!.name).toBe("ditg-client");
    expect(hostnameOf(client)).toEqual(["testbed-worker"]);
    const pod = client.spec!.template.spec!;
    expect(pod.initContainers![0]!.command!.at(-1)).toBe(packageFetchScript());
    expect(pod.containers[0]!.command!.at(-1)).toBe(clientStartScript());
    expect(pod.containers[0]!.readinessProbe!.exec!.command!.at(-1)).toBe(`command -v ITGSend >/dev/null 2>&1 && [ -x ${PROBE} ]`);
    expect(pod.volumes).toContainEqual({ name: "setup-probe", hostPath: { path: PROBE, type: "File" } });
    expect(pod.containers[0]!.volumeMounts).toContainEqual({ name: "setup-probe", mountPath: PROBE, readOnly: true });
    expect(pod.volumes).toContainEqual({ name: "logs", hostPath: { path: "/var/lib/dataplane-testbed/ditg-client-logs", type: "DirectoryOrCreate" } });
  });

  it("passes shellcheck for the client pod's scripts and refuses a broken object", () => {
    execFileSync("shellcheck", ["-s", "sh", "-"], { input: clientStartScript() });
    execFileSync("shellcheck", ["-s", "sh", "-"], { input: clientReadyCheck(PROBE) });
    const [, , client] = pathManifestObjects(all(), "clusterip", { nodes: NODES, setupProbePath: PROBE }).objects as [Deployment, Service, Deployment];
    expect(() => validate({ ...client, spec: { ...client.spec!, replicas: "one" as never } })).toThrow();
  });
});
