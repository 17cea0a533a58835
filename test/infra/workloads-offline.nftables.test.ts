// The workloads inside the real program of the nftables stack, under the mocked engine.
import * as fs from "node:fs";
import * as path from "node:path";
import { beforeAll, describe, it } from "vitest";
import { readStackConfig, runOffline, type OfflineRun } from "../../infra/offline-engine.js";
import { checkWorkloads } from "./workloads-offline-checks.js";

const PROJECT = path.resolve(import.meta.dirname, "../..");
let run: OfflineRun;

beforeAll(async () => {
  const { values, secretKeys } = readStackConfig(PROJECT, "nftables", (p) => fs.readFileSync(p, "utf8"));
  run = await runOffline({ stack: "nftables", config: values, secretKeys });
});

describe("workloads of the nftables stack as committed", () => {
  it("deploys the receiver and the scaled Services as one apply", () => checkWorkloads(run, 1));
});
