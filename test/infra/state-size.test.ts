// The state does not grow with the Service count: the manifest of a step's Services (about 5 MB at
// 10000) is uploaded as a file asset, and a checkpoint keeps its path and hash, not its text. The
// plans of one stack at 1000 and at 10000 Services; the same plans with the upload as a string asset
// show what each checkpoint carried before (bench/state-size.ts prints the figures).
import { beforeAll, describe, expect, it } from "vitest";
import { planInChild } from "../../cli/diff.js";
import type { PlannedResource } from "../../infra/offline-engine.js";
import { checkpointBytes, withTextAssets } from "../../infra/state-size.js";

let small: PlannedResource[];
let large: PlannedResource[];
beforeAll(async () => {
  [small, large] = (await Promise.all([planInChild("ebpf", ["services=1000"]), planInChild("ebpf", ["services=10000"])])) as [PlannedResource[], PlannedResource[]];
}, 300_000);

const upload = (plan: PlannedResource[]) => plan.find((r) => r.name === "workloads-scale-services")!;

describe("the state of a step", () => {
  it("keeps the Service manifest's path and hash, not its text", () => {
    const source = upload(large).inputs.source as Record<string, unknown>;
    expect(Object.keys(source).sort()).toEqual(["$file", "$sha256"]);
    expect(Buffer.byteLength(JSON.stringify(upload(large).inputs))).toBeLessThan(1024);
  });

  it("does not grow with the Service count; as a string asset it grew by the manifest, twice per checkpoint", () => {
    const growth = checkpointBytes(large) - checkpointBytes(small);
    const textGrowth = checkpointBytes(withTextAssets(large)) - checkpointBytes(withTextAssets(small));
    expect(growth).toBeLessThan(4096);
    expect(textGrowth).toBeGreaterThan(2 * 4_000_000);
    expect(checkpointBytes(withTextAssets(large)) / checkpointBytes(large)).toBeGreaterThan(20);
  });

  it("a step is still an update of the upload and of the apply, by the hash", () => {
    const before = upload(small).inputs.source as { $sha256: string };
    const after = upload(large).inputs.source as { $sha256: string };
    expect(after.$sha256).not.toBe(before.$sha256);
    const apply = (plan: PlannedResource[]) => String(plan.find((r) => r.name === "workloads-apply")!.inputs.create);
    expect(apply(large)).toContain(after.$sha256);
    expect(apply(small)).toContain(before.$sha256);
  });
});
