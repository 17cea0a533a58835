// The workloads inside the real program of the ebpf stack, under the mocked engine.
import * as fs from "node:fs";
import * as path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import { assetText, readStackConfig, runOffline, type OfflineRun } from "../../infra/offline-engine.js";
import { checkWorkloads } from "./workloads-offline-checks.js";

const PROJECT = path.resolve(import.meta.dirname, "../..");
let run: OfflineRun;

beforeAll(async () => {
  const { values, secretKeys } = readStackConfig(PROJECT, "ebpf", (p) => fs.readFileSync(p, "utf8"));
  run = await runOffline({ stack: "ebpf", config: { ...values, "testbed:services": "3000" }, secretKeys });
});

describe("workloads of the ebpf stack at 3000 Services", () => {
  it("deploys the receiver and the scaled Services as one apply", () => checkWorkloads(run, 3000));

  it("carries 2764 NodePort and 236 ClusterIP Services", () => {
    const upload = run.resources.find((r) => r.name === "workloads-scale-services")!;
    const docs = parseAllDocuments(assetText(upload.inputs.source)!).map((d) => d.toJS());
    expect(docs.filter((d) => d.spec.type === "NodePort")).toHaveLength(2764);
    expect(docs.filter((d) => d.spec.type === "ClusterIP")).toHaveLength(236);
    expect(run.outputs.serviceCounts).toEqual({ total: 3000, nodePort: 2764, clusterIp: 236 });
  });
});

describe("the stack outputs `testbed campaign` reads", () => {
  it("satisfy the cloud backend's reader", async () => {
    const { labOutputs } = await import("../../backends/cloud.js");
    const wrapped = Object.fromEntries(Object.entries(run.outputs).map(([k, v]) => [k, { value: v }]));
    const lab = labOutputs("ebpf", wrapped);
    expect(lab.ditgReceiver).toEqual({
      namespace: "ditg",
      deployment: "ditg-receiver",
      nodeAddress: expect.stringMatching(/^198\.19\.0\./),
      podLogDir: "/logs",
      nodeLogDir: "/var/lib/dataplane-testbed/ditg-logs",
    });
    expect(lab.clientAddress).toMatch(/^198\.19\.0\./);
    expect(Object.keys(lab.ditgEndpoints).sort()).toEqual(["ipv4", "ipv6"]);
  });
});
