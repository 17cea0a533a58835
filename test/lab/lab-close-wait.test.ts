// D-ITG flows in the lab handed back when their data is in: ITGRecv waits a second before it closes a
// finished flow (ditg-close-wait.ts): a connection-setup run may start in that second, the next D-ITG
// flow may not. Real ITGSend and ITGRecv through kube-proxy's iptables rules.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { labHostProblem } from "../../lab/topology.js";
import { labDefinition, LAB_PROFILES } from "../../lab/profiles.js";
import { LabBackend, labProblem } from "../../backends/lab.js";
import { runJudge } from "../../measure/campaign.js";
import { decodeFlow } from "../../measure/ditg-pairing.js";
import type { FlowOutcome, RunKey, RunProfile } from "../../measure/types.js";
import { crossedWhole } from "./busy-host.js";

const hostProblem = labHostProblem() ?? labProblem();
// The smoke profile's rates and cap: the flows prove the close wait, not the host's top speed.
const { traffic, linkMbps: LINK_MBPS } = labDefinition(LAB_PROFILES.smoke);
const DURATION_S = 1;

describe.skipIf(hostProblem !== undefined)(`D-ITG flows closing beside the next one${hostProblem ? ` (skipped: ${hostProblem})` : ""}`, () => {
  let backend: LabBackend;
  let repetition = 0;
  const key = (profile: RunProfile): RunKey => ({ dataplane: "iptables", family: "ipv4", profile, services: 1, repetition: repetition++ });
  const start = (profile: RunProfile) => backend.runFlow(key(profile), { logName: `cw-${profile}-${repetition}`, durationS: DURATION_S, traffic: traffic[profile]! });
  /** Collects the flow's logs (after its sender exited), decodes and judges them; resolves with when the logs were whole. */
  const judged = async (profile: RunProfile, outcome: FlowOutcome) => {
    const logs = await backend.collectLog(outcome);
    const at = Date.now();
    const decoded = await decodeFlow({ ...logs, oneWay: true });
    const verdict = runJudge(logs.senderOutput ?? outcome.senderOutput, decoded, { profile, traffic: traffic[profile]!, durationS: DURATION_S, linkMbps: LINK_MBPS });
    return { at, verdict, senderOutput: logs.senderOutput };
  };

  beforeAll(async () => {
    backend = await LabBackend.start({ linkMbps: LINK_MBPS });
    await backend.prepare({ dataplane: "iptables", services: 1 });
  }, 60_000);
  afterAll(() => backend?.teardown());

  it("starts a connection-setup run while the UDP flow before it closes, and both are whole", async () => {
    const latency = await start("latency");
    // Handed back before the sender's exit: its output is not in yet.
    expect(latency.senderOutput).toBe("");
    const latencyJudged = judged("latency", latency);
    const setup = await start("setup");
    const first = await latencyJudged;
    expect(setup.startedAt.getTime()).toBeLessThan(first.at);
    expect(crossedWhole(first.verdict), JSON.stringify(first.verdict)).toBe(true);
    expect(first.senderOutput).toMatch(/Finished sending packets of flow ID/);
    expect((await judged("setup", setup)).verdict).toEqual({ ok: true });
  });

  it.each([
    ["latency", "latency"],
    ["latency", "throughput"],
    ["throughput", "latency"],
  ] as const)("starts a %s flow's successor, a %s flow, only once it has closed: ITGRecv takes no new session while one closes", async (before, after) => {
    for (let i = 0; i < 3; i++) {
      const one = await start(before);
      // Resolves when the first flow's sender has exited, that is once its flow is closed.
      const oneJudged = judged(before, one);
      const two = await start(after);
      const [a, b] = await Promise.all([oneJudged, judged(after, two)]);
      for (const v of [a.verdict, b.verdict]) expect(crossedWhole(v), JSON.stringify(v)).toBe(true);
      expect(two.startedAt.getTime()).toBeGreaterThanOrEqual(a.at - 100);
    }
    expect(await backend.receiverAlive()).toBe(true);
  });

  it("waits for every closing flow before the next step, and before a setup probe would flush conntrack", async () => {
    // A switch under a closing flow would flush the conntrack entry its ack needs (and swap the NAT
    // that carries it): the sender would never hear the ack and be killed, or ITGRecv would die on a reset.
    const latency = await start("latency");
    await backend.prepare({ dataplane: "nftables", services: 1 });
    const closed = await judged("latency", latency);
    expect(crossedWhole(closed.verdict), JSON.stringify(closed.verdict)).toBe(true);
    expect(closed.senderOutput).toMatch(/Finished sending/);
    expect(await backend.receiverAlive()).toBe(true);
  });
});
