// The connection-setup probe of the local lab: many new TCP connections, one at a time, and the time of
// each handshake (connect() to SYN-ACK, as the client's socket sees it). lab/connection-setup.ts runs it
// and turns its output into a D-ITG-format log.
//
//   node connection-setup-probe.mjs listen PORT
//       Accepts TCP connections on [::]:PORT (IPv4 peers too) and drops them. Prints "ready".
//   node connection-setup-probe.mjs probe ADDRESS PORT RATE DURATION_MS FIRST_PORT LAST_PORT TIMEOUT_MS
//       Opens connections to ADDRESS:PORT at RATE per second for DURATION_MS, each from its own source port
//       (FIRST_PORT, FIRST_PORT + 1, ...: no 5-tuple is used twice), and resets each one once it is
//       established, so no TIME_WAIT holds the port. Prints one line per connection:
//         ok SEQ SOURCE_PORT TX_US RX_US      (times: µs since the epoch)
//         fail SEQ SOURCE_PORT TX_US REASON
//       then "done ATTEMPTED OK FAILED NEXT_PORT".
import net from "node:net";

const [mode, ...args] = process.argv.slice(2);

/** Microseconds since the epoch, with the monotonic clock's resolution. */
const nowUs = () => Math.round((performance.timeOrigin + performance.now()) * 1000);

function listen(port) {
  const server = net.createServer({ noDelay: true }, (socket) => {
    socket.on("error", () => {});
    socket.resume();
  });
  server.on("error", (e) => {
    process.stderr.write(`listen: ${e.message}\n`);
    process.exit(1);
  });
  server.listen({ host: "::", port, ipv6Only: false, backlog: 4096 }, () => process.stdout.write("ready\n"));
  process.on("SIGTERM", () => server.close(() => process.exit(0)));
}

/** One connection from sourcePort; resolves with its outcome. */
function connectOnce(address, port, sourcePort, timeoutMs) {
  return new Promise((resolve) => {
    const txUs = nowUs();
    const socket = net.connect({ host: address, port, localPort: sourcePort, noDelay: true });
    const timer = setTimeout(() => {
      socket.destroy();
      resolve({ ok: false, txUs, reason: "timeout" });
    }, timeoutMs);
    socket.once("connect", () => {
      const rxUs = nowUs();
      clearTimeout(timer);
      // A reset instead of a FIN: the client keeps no TIME_WAIT, the port is free for the next run.
      socket.resetAndDestroy();
      resolve({ ok: true, txUs, rxUs });
    });
    socket.once("error", (e) => {
      clearTimeout(timer);
      socket.destroy();
      resolve({ ok: false, txUs, reason: e.code ?? e.message });
    });
  });
}

async function probe(address, port, rate, durationMs, firstPort, lastPort, timeoutMs) {
  const intervalMs = 1000 / rate;
  const total = Math.floor((rate * durationMs) / 1000);
  const lines = [];
  let sourcePort = firstPort;
  let ok = 0;
  let failed = 0;
  const start = performance.now();
  for (let seq = 1; seq <= total; seq++) {
    // Paced from the start: a late connection does not push the later ones back.
    const due = start + (seq - 1) * intervalMs;
    const wait = due - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    let result;
    for (;;) {
      if (sourcePort > lastPort) {
        lines.push(`done ${seq - 1} ${ok} ${failed} ${sourcePort}`);
        process.stdout.write(`${lines.join("\n")}\nerror: source ports ${firstPort}-${lastPort} exhausted\n`);
        process.exit(1);
      }
      result = await connectOnce(address, port, sourcePort, timeoutMs);
      sourcePort++;
      // A port some other socket of this namespace holds is skipped, not counted.
      if (result.ok || result.reason !== "EADDRINUSE") break;
    }
    if (result.ok) {
      ok++;
      lines.push(`ok ${seq} ${sourcePort - 1} ${result.txUs} ${result.rxUs}`);
    } else {
      failed++;
      lines.push(`fail ${seq} ${sourcePort - 1} ${result.txUs} ${result.reason}`);
    }
  }
  lines.push(`done ${total} ${ok} ${failed} ${sourcePort}`);
  process.stdout.write(`${lines.join("\n")}\n`);
}

const int = (s) => {
  const n = Number(s);
  if (!Number.isFinite(n)) {
    process.stderr.write(`not a number: ${s}\n`);
    process.exit(2);
  }
  return n;
};

if (mode === "listen") {
  listen(int(args[0]));
} else if (mode === "probe") {
  const [address, port, rate, durationMs, firstPort, lastPort, timeoutMs] = args;
  await probe(address, int(port), int(rate), int(durationMs), int(firstPort), int(lastPort), int(timeoutMs));
} else {
  process.stderr.write("usage: connection-setup-probe.mjs listen PORT | probe ADDRESS PORT RATE DURATION_MS FIRST_PORT LAST_PORT TIMEOUT_MS\n");
  process.exit(2);
}
