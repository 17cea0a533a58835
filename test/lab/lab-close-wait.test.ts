// D-ITG flows in the lab handed back when their data is in: ITGRecv waits a second before it closes a
// finished flow (ditg-close-wait.ts) and takes no new session meanwhile. A connection-setup run may
// start in that second, and so may the next D-ITG flow, on the receiver pod's other ITGRecv (its own
// signaling and data ports behind NodePorts of their own). Real ITGSend and ITGRecv through
// kube-proxy's iptables rules.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { labHostProblem } from "../../lab/topology.js";
import { labDefinition, LAB_PROFILES } from "../../lab/profiles.js";
import { LabBackend, labProblem } from "../../backends/lab.js";
import { runJudge } from "../../measure/campaign.js";
import { decodeFlow } from "../../measure/ditg-pairing.js";
import { decodeLogFile } from "../../measure/ditg-log.js";
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
    // The data port the receiver logged (a D-ITG flow's receiver log; none for a setup run).
    const receiverLog = profile === "setup" ? undefined : (logs.receiverLog ?? logs.log);
    const receiverPort = receiverLog === undefined ? -1 : (await decodeLogFile(receiverLog)).flows[0]?.destPort ?? -1;
    return { at, verdict, senderOutput: logs.senderOutput, receiverPort };
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
  ] as const)("starts a %s flow's successor, a %s flow, on the pod's other ITGRecv while the first closes; each logs on its own data port", async (before, after) => {
    const { dataPort } = backend.scenario.receiver;
    const alternate = backend.scenario.receiver.alternate.dataPort;
    const ports: number[] = [];
    for (let i = 0; i < 3; i++) {
      const closingPid = backend.receiverPid!;
      const one = await start(before);
      // The first flow's ITGRecv is held in its close (stopped): a successor that waited for it would never start.
      process.kill(closingPid, "SIGSTOP");
      let two: FlowOutcome;
      try {
        two = await start(after);
      } finally {
        process.kill(closingPid, "SIGCONT");
      }
      const [a, b] = await Promise.all([judged(before, one), judged(after, two)]);
      for (const v of [a.verdict, b.verdict]) expect(crossedWhole(v), JSON.stringify(v)).toBe(true);
      for (const j of [a, b]) expect(j.senderOutput).toMatch(/Finished sending packets of flow ID/);
      ports.push(a.receiverPort, b.receiverPort);
    }
    // Every flow's receiver log is its own ITGRecv's, and the flows alternate between the two.
    expect(new Set(ports)).toEqual(new Set([dataPort, alternate]));
    for (let i = 1; i < ports.length; i++) expect(ports[i], `flow ${i + 1} of ${ports.join(", ")}`).not.toBe(ports[i - 1]);
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
