// TCP and UDP echo across the lab: a listener in one namespace, a probe in another.
// Used to check that a path works end to end (routing, a Service's DNAT and its reverse NAT) and
// what each side saw: the listener records the source address of every peer (a NodePort Service
// with externalTrafficPolicy=Local keeps the client's), the probe records where the reply came from.
// Both sides are this Node binary running a fixed script; addresses and ports travel as arguments.
import type { ChildProcess } from "node:child_process";
import { isAddress } from "../scenario/cidr.js";
import type { LabTopology, Role } from "./topology.js";

export type EchoProtocol = "tcp" | "udp";

const SERVER = String.raw`
const net = require("node:net"), dgram = require("node:dgram");
const [proto, host, port] = process.argv.slice(1);
const say = (o) => process.stdout.write(JSON.stringify(o) + "\n");
const fail = (e) => { process.stderr.write(String(e) + "\n"); process.exit(1); };
if (proto === "tcp") {
  const server = net.createServer((c) => { say({ peer: c.remoteAddress, peerPort: c.remotePort }); c.on("error", () => {}); c.pipe(c); });
  server.on("error", fail);
  server.listen({ host, port: Number(port) }, () => say({ ready: true }));
} else {
  const socket = host.includes(":") ? dgram.createSocket({ type: "udp6", ipv6Only: true }) : dgram.createSocket("udp4");
  socket.on("error", fail);
  socket.on("message", (m, r) => { say({ peer: r.address, peerPort: r.port }); socket.send(m, r.port, r.address); });
  socket.bind(Number(port), host, () => say({ ready: true }));
}
`;

const PROBE = String.raw`
const net = require("node:net"), dgram = require("node:dgram");
const [proto, host, port, timeoutMs] = process.argv.slice(1);
const payload = "echo-" + process.pid + "-" + Date.now();
const say = (o) => { process.stdout.write(JSON.stringify(o) + "\n"); process.exit(o.ok ? 0 : 1); };
setTimeout(() => say({ ok: false, error: "timeout" }), Number(timeoutMs));
if (proto === "tcp") {
  const c = net.connect({ host, port: Number(port) });
  let got = "";
  c.on("error", (e) => say({ ok: false, error: String(e) }));
  c.on("connect", () => c.write(payload));
  c.on("data", (d) => {
    got += d;
    if (got.length >= payload.length) say({ ok: got === payload, from: c.remoteAddress, fromPort: c.remotePort, local: c.localAddress, localPort: c.localPort });
  });
} else {
  const s = dgram.createSocket(host.includes(":") ? "udp6" : "udp4");
  s.on("error", (e) => say({ ok: false, error: String(e) }));
  s.on("message", (m, r) => say({ ok: m.toString() === payload, from: r.address, fromPort: r.port, local: s.address().address, localPort: s.address().port }));
  // Datagrams get no retransmission of their own.
  const send = () => s.send(payload, Number(port), host);
  send();
  setInterval(send, 500).unref();
}
`;

export interface EchoListener {
  /** Source addresses and ports the listener has seen, in order. */
  peers(): { address: string; port: number }[];
  /**
   * The peers once at least `count` have been read from the listener's output. The listener prints a peer before it
   * echoes, so after a probe's echo its peer is on the way: this waits for that line, not for a time.
   */
  seen(count: number): Promise<{ address: string; port: number }[]>;
  stop(): Promise<void>;
}

export interface EchoResult {
  readonly ok: boolean;
  /** Where the reply came from, as the probe's socket saw it. */
  readonly from?: string;
  readonly fromPort?: number;
  readonly local?: string;
  readonly localPort?: number;
  readonly error?: string;
}

function checkTarget(address: string, port: number): void {
  if (!isAddress(address)) throw new Error(`address: "${address}" is not an IP address`);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`port: ${port} is not accepted; accepted: 1-65535`);
}

/** Starts an echo listener on address:port inside the role's namespace; resolves once it listens. */
export function startEchoListener(
  topology: LabTopology,
  role: Role | (string & {}),
  protocol: EchoProtocol,
  address: string,
  port: number,
): Promise<EchoListener> {
  checkTarget(address, port);
  const child: ChildProcess = topology.spawn(role, [process.execPath, "-e", SERVER, protocol, address, String(port)]);
  const peers: { address: string; port: number }[] = [];
  /** seen() calls still waiting for their count of peers. */
  const waiting: { count: number; resolve: () => void; reject: (e: Error) => void }[] = [];
  let buffered = "";
  let stderr = "";
  let exitError: Error | undefined;
  child.stderr?.on("data", (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  // Until it says it listens or exits: no deadline, which a loaded host's slow Node start-up would lose to.
  return new Promise((resolve, reject) => {
    child.once("exit", (code) => {
      exitError = new Error(`echo listener on ${address}:${port}/${protocol} exited with ${code}: ${buffered}${stderr}`);
      for (const w of waiting.splice(0)) w.reject(exitError);
      reject(exitError);
    });
    child.stdout?.on("data", (d: Buffer) => {
      buffered += d.toString();
      let nl: number;
      while ((nl = buffered.indexOf("\n")) >= 0) {
        const line = JSON.parse(buffered.slice(0, nl)) as { ready?: boolean; peer?: string; peerPort?: number };
        buffered = buffered.slice(nl + 1);
        if (line.peer !== undefined) {
          peers.push({ address: line.peer, port: line.peerPort! });
          for (const w of waiting.filter((x) => x.count <= peers.length)) {
            waiting.splice(waiting.indexOf(w), 1);
            w.resolve();
          }
        }
        if (line.ready) {
          resolve({
            peers: () => [...peers],
            seen: async (count) => {
              if (peers.length < count) {
                if (exitError) throw exitError;
                await new Promise<void>((res, rej) => waiting.push({ count, resolve: res, reject: rej }));
              }
              return [...peers];
            },
            stop: async () => {
              if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
              await exited;
            },
          });
        }
      }
    });
  });
}

/** Sends one message to address:port from the role's namespace and waits for its echo. */
export function echoProbe(
  topology: LabTopology,
  role: Role | (string & {}),
  protocol: EchoProtocol,
  address: string,
  port: number,
  timeoutMs = 3000,
): EchoResult {
  checkTarget(address, port);
  // The probe's own timer starts once Node runs it; the outer limit only guards a hang, well above a loaded host's start-up.
  const result = topology.exec(role, [process.execPath, "-e", PROBE, protocol, address, String(port), String(timeoutMs)], {
    timeoutMs: timeoutMs + 120_000,
  });
  const last = result.stdout.trim().split("\n").pop() ?? "";
  try {
    return JSON.parse(last) as EchoResult;
  } catch {
    return { ok: false, error: `probe printed no result (status ${result.status}): ${result.stderr.trim()}` };
  }
}
