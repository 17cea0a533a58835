// The C connection-setup probe on its own (no Service dataplane): built with the lab's compiler, its
// listener in the pod namespace, the probe in the client namespace, straight to the pod's address.
import { spawn, type ChildProcess } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { labSetupProbe } from "../../lab/connection-setup.js";
import { createTopology, labHostProblem, type LabTopology } from "../../lab/topology.js";
import { parseProbeOutput, setupListenArgs, setupProbeArgs, setupTraffic } from "../../measure/connection-setup.js";

const hostProblem = labHostProblem();
const PORT = 31000;

/** Resolves once the child printed `line`; rejects if it exits first. */
function printed(child: ChildProcess, line: string): Promise<void> {
  return new Promise((resolve, reject) => {
    let out = "";
    let err = "";
    child.stdout!.on("data", (d: Buffer) => {
      out += d.toString();
      if (out.split("\n").includes(line)) resolve();
    });
    child.stderr!.on("data", (d: Buffer) => (err += d.toString()));
    child.once("exit", (code) => reject(new Error(`exited with ${code} before printing ${line}: ${err.trim()}`)));
  });
}

function finished(child: ChildProcess): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    let stdout = "";
    let stderr = "";
    child.stdout!.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
    child.once("close", (code) => resolve({ code, stdout, stderr }));
  });
}

describe.skipIf(hostProblem !== undefined)(`the connection-setup probe${hostProblem ? ` (skipped: ${hostProblem})` : ""}`, () => {
  let topology: LabTopology;
  let binary: string;
  let listener: ChildProcess;

  beforeAll(async () => {
    topology = createTopology({ linkMbps: 0 });
    binary = labSetupProbe(topology);
    listener = topology.spawn("pod", setupListenArgs(binary, PORT), { stdio: ["ignore", "pipe", "pipe"] });
    await printed(listener, "ready");
  });

  afterAll(async () => {
    if (listener && listener.exitCode === null) {
      const exited = new Promise((r) => listener.once("exit", r));
      listener.kill("SIGTERM");
      await exited;
    }
    topology?.destroy();
  });

  const probe = (family: "ipv4" | "ipv6", port: number, connections: number, ports: { first: number; last: number }) =>
    finished(
      topology.spawn(
        "client",
        setupProbeArgs(binary, {
          address: topology.addresses.pod[family],
          port,
          traffic: setupTraffic(200),
          durationS: connections / 200,
          ports: { ...ports, flushFirst: false },
        }),
        { stdio: ["ignore", "pipe", "pipe"] },
      ),
    );

  it.each(["ipv4", "ipv6"] as const)("%s: times every handshake, each from its own source port, paced at the rate", async (family) => {
    const first = family === "ipv4" ? 2000 : 3000;
    const spawnedUs = Date.now() * 1000;
    const { code, stdout } = await probe(family, PORT, 40, { first, last: first + 99 });
    expect(code).toBe(0);
    const result = parseProbeOutput(stdout);
    expect(result.attempted).toBe(40);
    expect(result.failures).toEqual([]);
    expect(result.connections.map((c) => c.sourcePort)).toEqual(Array.from({ length: 40 }, (_, i) => first + i));
    expect(result.nextPort).toBe(first + 40);
    for (const c of result.connections) expect(c.rxUs).toBeGreaterThan(c.txUs);
    // Paced from its start at 200/s: connection i starts no earlier than 5 ms x i after the probe's start, which came
    // after the test spawned it. (Not "195 ms after the first connection": on a busy host the first one starts late,
    // and the others keep to the schedule, so they are closer to it.)
    result.connections.forEach((c, i) => expect(c.txUs, `connection ${i + 1}`).toBeGreaterThanOrEqual(spawnedUs + i * 5000));
    // And one at a time at the rate, not in a burst: most gaps are the 5 ms of the pace (a late one is followed by
    // shorter ones that catch up with the schedule).
    const gaps = result.connections.slice(1).map((c, i) => c.txUs - result.connections[i]!.txUs).sort((a, b) => a - b);
    expect(gaps[Math.floor(gaps.length / 2)]).toBeGreaterThanOrEqual(4000);
  });

  it("reports refused connections by name, and skips a source port another socket holds", async () => {
    // A second listener in the client namespace holds port 4000, the first source port of the run.
    const holder = topology.spawn("client", setupListenArgs(binary, 4000), { stdio: ["ignore", "pipe", "pipe"] });
    try {
      await printed(holder, "ready");
      const { code, stdout } = await probe("ipv4", PORT + 1, 5, { first: 4000, last: 4099 });
      expect(code).toBe(0);
      const result = parseProbeOutput(stdout);
      expect(result.connections).toEqual([]);
      expect(result.failures.map((f) => [f.sourcePort, f.reason])).toEqual([4001, 4002, 4003, 4004, 4005].map((p) => [p, "ECONNREFUSED"]));
    } finally {
      const exited = new Promise((r) => holder.once("exit", r));
      holder.kill("SIGTERM");
      await exited;
    }
  });

  it("stops with an error line when the source ports run out", async () => {
    const { code, stdout } = await probe("ipv4", PORT, 10, { first: 5000, last: 5003 });
    expect(code).toBe(1);
    const result = parseProbeOutput(stdout);
    expect(result.connections).toHaveLength(4);
    expect(result.error).toBe("error: source ports 5000-5003 exhausted");
  });

  it("refuses arguments it cannot use, saying which", async () => {
    const bad = await finished(spawn(binary, ["probe", "198.18.0.300", "1", "1", "1", "1", "1", "1"], { stdio: ["ignore", "pipe", "pipe"] }));
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("198.18.0.300 is not an IPv4 or IPv6 address");
    const range = await finished(spawn(binary, ["probe", "198.18.0.1", "1", "1", "1", "9", "8", "1"], { stdio: ["ignore", "pipe", "pipe"] }));
    expect(range.code).toBe(2);
    expect(range.stderr).toContain("FIRST_PORT <= LAST_PORT");
    const port = await finished(spawn(binary, ["listen", "70000"], { stdio: ["ignore", "pipe", "pipe"] }));
    expect(port.code).toBe(2);
    expect(port.stderr).toContain("not 70000");
  });
});
