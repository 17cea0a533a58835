// How long a step takes to become measurable at N Services (infra/cluster/readiness.ts), and the
// timeouts that follow from it: at 10000 dual-stack Services the controller-manager's default client
// rate would keep kube-proxy on REJECT rules for a quarter of an hour; the raised rate makes it minutes.
import { describe, expect, it } from "vitest";
import { DEFAULT_CONTROLLER_MANAGER_QPS, readinessEstimate, readinessWaitS } from "../../infra/cluster/readiness.js";
import { pulumiTimeout } from "../../infra/cluster/shell.js";
import { applyBound } from "../../infra/workloads.js";

const applyTimeout = (s: Parameters<typeof applyBound>[0]) => pulumiTimeout(applyBound(s).limitS);
import { testScenario } from "../fixtures/scenario.js";

const minutes = (timeout: string) => Number(/^(\d+)m$/.exec(timeout)![1]);

describe("readiness at the paper's largest step", () => {
  const s = testScenario();

  it("writes 20000 EndpointSlices in about 17 minutes at the default rate, in under 2 with the testbed's", () => {
    const slow = readinessEstimate(s, 10000, DEFAULT_CONTROLLER_MANAGER_QPS);
    expect(slow.endpointSlicesS).toBe(1000);
    const fast = readinessEstimate(s, 10000);
    expect(fast.endpointSlicesS).toBeLessThanOrEqual(120);
    expect(fast.totalS).toBeLessThan(slow.totalS / 3);
  });

  it("waits long enough for the estimate; the script's own limit covers the wait, and the command's timeout the limit", () => {
    const wait = readinessWaitS(s, 10000);
    expect(wait).toBeGreaterThanOrEqual(2 * readinessEstimate(s, 10000).totalS);
    expect(applyBound(s).limitS).toBeGreaterThan(wait);
    expect(minutes(applyTimeout(s)) * 60).toBeGreaterThan(applyBound(s).limitS);
    // One family writes half the slices.
    expect(readinessEstimate(testScenario({ families: ["ipv4"] }), 10000).endpointSlicesS).toBe(readinessEstimate(s, 10000).endpointSlicesS / 2);
  });

  it("sizes the timeout for the sweep's largest step, whatever the current one", () => {
    expect(applyTimeout(testScenario({ services: 1 }))).toBe(applyTimeout(testScenario({ services: 10000 })));
    expect(minutes(applyTimeout(testScenario({ services: 1, sweep: { services: [1, 50000], runs: 1 }, kubernetes: { serviceSubnets: { ipv4: "10.96.0.0/15", ipv6: "fd00:10:96::/108" } } })))).toBeGreaterThan(
      minutes(applyTimeout(s)),
    );
  });
});
