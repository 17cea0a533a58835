// The hop probes' own programs, run by the kernel on crafted packets (BPF_PROG_TEST_RUN through
// `bpftool prog run`), with their reader draining the records: which packets they stamp. Of the
// D-ITG packets the sampled ones (measure/hops.ts hopSampled, at the rate the reader reports), at
// every point and in both directions, IPv4 and IPv6, and no other; every SYN and SYN-ACK of the data
// port; the same on the receiver pod's second ITGRecv's data port; nothing of another port. Both output paths: the ring buffer and the perf event array (the
// 5.4 fallback). Needs root, clang and bpftool; no namespace, no traffic.
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readerArgs, type HopOutput } from "../../hops/build.js";
import { hopProbeHostProblem, probeCompileCommand, readerCompileCommand } from "../../lab/hops/hop-probes.js";
import { exec, run } from "../../lab/netns.js";
import { labHostProblem } from "../../lab/topology.js";
import { HOP_RECORD_BYTES, hopSampled, parseReaderSummary } from "../../measure/hops.js";
import { mounted } from "./bpf-objects.js";

const problem = labHostProblem() ?? hopProbeHostProblem();
const DATA_PORT = 31_000;
/** The data port of the receiver pod's second ITGRecv. */
const ALTERNATE_DATA_PORT = 31_002;
const CLIENT_PORT = 40_000;
/** Sequence numbers sent per flow: enough for a 1 in 8 sample to pick a few dozen. */
const SEQS = Array.from({ length: 256 }, (_, i) => i + 1);

/** An Ethernet frame of `ethertype` carrying `l3`. */
const frame = (ethertype: number, l3: Buffer) => Buffer.concat([Buffer.from([2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1]), Buffer.from([ethertype >> 8, ethertype & 0xff]), l3]);

function ipPacket(family: "ipv4" | "ipv6", protocol: number, l4: Buffer): Buffer {
  if (family === "ipv4") {
    const ip = Buffer.alloc(20);
    ip.writeUInt8(0x45, 0);
    ip.writeUInt16BE(20 + l4.length, 2);
    ip.writeUInt8(64, 8);
    ip.writeUInt8(protocol, 9);
    ip.set([198, 18, 0, 2], 12);
    ip.set([198, 18, 1, 2], 16);
    return frame(0x0800, Buffer.concat([ip, l4]));
  }
  const ip = Buffer.alloc(40);
  ip.writeUInt32BE(0x60000000, 0);
  ip.writeUInt16BE(l4.length, 4);
  ip.writeUInt8(protocol, 6);
  ip.writeUInt8(64, 7);
  ip.set([0x20, 0x01, 0x00, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2], 8);
  ip.set([0x20, 0x01, 0x00, 0x02, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2], 24);
  return frame(0x86dd, Buffer.concat([ip, l4]));
}

/** A D-ITG datagram (standard payload: flow id and sequence number first, network order). */
function ditg(family: "ipv4" | "ipv6", flowId: number, seq: number, forward: boolean, dataPort = DATA_PORT): Buffer {
  const udp = Buffer.alloc(8 + 64);
  udp.writeUInt16BE(forward ? CLIENT_PORT : dataPort, 0);
  udp.writeUInt16BE(forward ? dataPort : CLIENT_PORT, 2);
  udp.writeUInt16BE(udp.length, 4);
  udp.writeUInt32BE(flowId, 8);
  udp.writeUInt32BE(seq, 12);
  return ipPacket(family, 17, udp);
}

/** A SYN to the data port (forward) or its SYN-ACK (return), for the SYN's sequence number. */
function handshake(family: "ipv4" | "ipv6", synSeq: number, forward: boolean): Buffer {
  const tcp = Buffer.alloc(20);
  tcp.writeUInt16BE(forward ? CLIENT_PORT : DATA_PORT, 0);
  tcp.writeUInt16BE(forward ? DATA_PORT : CLIENT_PORT, 2);
  tcp.writeUInt32BE(forward ? synSeq : 77, 4);
  tcp.writeUInt32BE(forward ? 0 : (synSeq + 1) >>> 0, 8);
  tcp.writeUInt8(5 << 4, 12);
  tcp.writeUInt8(forward ? 0x02 : 0x12, 13);
  return ipPacket(family, 6, tcp);
}

interface Stamp {
  readonly point: number;
  readonly kind: number;
  readonly flowId: number;
  readonly seq: number;
}

describe.skipIf(problem !== undefined)(`the probes' sample, run by the kernel${problem ? ` (skipped: ${problem})` : ""}`, () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "hop-sample-"));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it.each(["ringbuf", "perf"] as const)("%s: the sampled D-ITG packets at every point, both ways, both families, and every handshake; nothing else", async (output: HopOutput) => {
    const work = join(dir, output);
    const bpffs = join(work, "bpffs");
    mkdirSync(bpffs, { recursive: true });
    const object = join(work, "hop-probe.o");
    const reader = join(work, "hop-reader");
    run(probeCompileCommand(object, { dataPort: DATA_PORT, alternateDataPort: ALTERNATE_DATA_PORT }, output));
    run(readerCompileCommand(reader));
    run(["mount", "-t", "bpf", "bpf", bpffs]);
    try {
      run(["bpftool", "prog", "loadall", object, join(bpffs, "progs"), "type", "tc", "pinmaps", join(bpffs, "maps")]);
      const recordsFile = join(work, "run.hops");
      const child = spawn(reader, readerArgs(output, { pins: join(bpffs, "maps"), recordsFile }), { stdio: ["ignore", "pipe", "pipe"] });
      let said = "";
      child.stdout.on("data", (d: Buffer) => (said += d.toString()));
      // "close": the reader has exited and its summary line has been read (it may come after "exit").
      const exited = new Promise<number | null>((resolve) => child.once("close", resolve));
      try {
        await new Promise<void>((resolve, reject) => {
          child.stdout.on("data", () => said.includes("ready\n") && resolve());
          void exited.then((code) => reject(new Error(`the reader exited (${code}) before it was ready`)));
        });
        const send = (program: string, packet: Buffer) => {
          const file = join(work, "packet");
          writeFileSync(file, packet);
          run(["bpftool", "prog", "run", "pinned", join(bpffs, "progs", program), "data_in", file]);
        };
        // Forward at the client's egress (point 0), the echo at its ingress (point 11); worker 1's
        // uplink both ways in one program (hb_uplink_out: forward point 12, return point 8).
        for (const seq of SEQS) {
          send("hf_client_out", ditg("ipv4", 1, seq, true));
          send("hr_client_in", ditg("ipv4", 1, seq, false));
          send("hb_uplink_out", ditg("ipv6", 2, seq, true));
          send("hb_uplink_out", ditg("ipv6", 2, seq, false));
          // Another port's datagrams go unstamped, sampled key or not; the second ITGRecv's are stamped.
          send("hf_client_out", ditg("ipv4", 3, seq, true, DATA_PORT + 1));
          send("hf_client_out", ditg("ipv6", 4, seq, true, ALTERNATE_DATA_PORT));
        }
        for (const synSeq of [1, 2, 3, 0xfffffff0]) {
          send("hf_client_out", handshake("ipv4", synSeq, true));
          send("hr_client_in", handshake("ipv6", synSeq, false));
        }
      } finally {
        child.kill("SIGTERM");
      }
      expect(await exited).toBe(0);
      const summary = parseReaderSummary(said.split("\n").find((l) => l.startsWith("{"))!);
      const every = summary.sampleEvery!;
      expect(every).toBeGreaterThan(1);
      const bytes = readFileSync(recordsFile);
      const stamps: Stamp[] = [];
      for (let at = 0; at < bytes.length; at += HOP_RECORD_BYTES) {
        stamps.push({ flowId: bytes.readUInt32LE(at + 8), seq: bytes.readUInt32LE(at + 12), point: bytes.readUInt8(at + 16), kind: bytes.readUInt8(at + 17) });
      }
      const keys = (point: number, kind: number, flowId: number) =>
        stamps.filter((s) => s.point === point && s.kind === kind && s.flowId === flowId).map((s) => s.seq).sort((a, b) => a - b);
      const sampled = (flowId: number) => SEQS.filter((q) => hopSampled(flowId, q, every));
      expect(sampled(1).length).toBeGreaterThan(SEQS.length / (2 * every));
      expect(keys(0, 0, 1)).toEqual(sampled(1));
      expect(keys(11, 0, 1)).toEqual(sampled(1));
      expect(keys(12, 0, 2)).toEqual(sampled(2));
      expect(keys(8, 0, 2)).toEqual(sampled(2));
      expect(stamps.filter((s) => s.flowId === 3)).toEqual([]);
      expect(keys(0, 0, 4)).toEqual(sampled(4));
      // Every handshake, keyed by its SYN's sequence number, forward and back.
      expect(keys(0, 1, 0xffffffff)).toEqual([1, 2, 3, 0xfffffff0]);
      expect(keys(11, 1, 0xffffffff)).toEqual([1, 2, 3, 0xfffffff0]);
      // The kernel's counts say the same: nothing dropped, nothing unread.
      expect(summary.records).toBe(stamps.length);
      expect(summary.stamped.reduce((a, b) => a + b, 0)).toBe(stamps.length);
      expect(summary.dropped.every((n) => n === 0)).toBe(true);
    } finally {
      rmSync(join(bpffs, "progs"), { recursive: true, force: true });
      rmSync(join(bpffs, "maps"), { recursive: true, force: true });
      exec(["umount", bpffs]);
    }
    expect(mounted(bpffs)).toBe(false);
  }, 300_000);
});
