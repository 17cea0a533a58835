// The paths as one definition: what each path puts on which worker, and what it needs.
import { describe, expect, it } from "vitest";
import { crossesWorkers, DEFAULT_PATHS, ENTRY_WORKER, PATHS, SERVICE_PATHS, workersNeeded } from "../../scenario/paths.js";

describe("the Service paths", () => {
  it("defaults to the paper's path alone", () => {
    expect(DEFAULT_PATHS).toEqual(["nodeport-local"]);
    expect(PATHS["nodeport-local"]).toMatchObject({
      client: { kind: "external" },
      service: { type: "NodePort", externalTrafficPolicy: "Local" },
      translatingWorker: 1,
      endpointWorker: 1,
    });
  });

  it("defines every path under its own name, translated on the entry worker", () => {
    expect(Object.keys(PATHS)).toEqual([...SERVICE_PATHS]);
    for (const name of SERVICE_PATHS) {
      expect(PATHS[name].name).toBe(name);
      expect(PATHS[name].translatingWorker).toBe(ENTRY_WORKER);
    }
  });

  it("puts the remote paths' only endpoint on worker 2, and the clusterip path's client in a pod on worker 1", () => {
    expect(PATHS["nodeport-remote"]).toMatchObject({ service: { type: "NodePort", externalTrafficPolicy: "Cluster" }, endpointWorker: 2, client: { kind: "external" } });
    expect(PATHS.clusterip).toMatchObject({ service: { type: "ClusterIP" }, endpointWorker: 2, client: { kind: "pod", worker: 1 } });
  });

  it("says how many workers each path needs and whether it crosses between them", () => {
    expect(SERVICE_PATHS.map((p) => [p, workersNeeded(p), crossesWorkers(p)])).toEqual([
      ["nodeport-local", 1, false],
      ["nodeport-remote", 2, true],
      ["clusterip", 2, true],
    ]);
  });
});
