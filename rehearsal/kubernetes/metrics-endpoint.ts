// The rehearsal's control-plane metrics endpoint, run in the worker's network namespace where the
// real agent would serve it (kube-proxy on 127.0.0.1:10249, the Cilium agent on :9962): GET /metrics
// answers with the file the node agent writes (agent-metrics.ts), 503 while there is none (the agent
// restarting). Prints "listening" once it accepts connections.
//
//   metrics-endpoint FILE HOST PORT
import { readFile } from "node:fs/promises";
import { createServer } from "node:http";

const [file, host, port] = process.argv.slice(2);
if (!file || !host || !port || !/^\d+$/.test(port)) {
  process.stderr.write("usage: metrics-endpoint FILE HOST PORT\n");
  process.exit(2);
}
const server = createServer((req, res) => {
  if (req.method !== "GET" || req.url !== "/metrics") {
    res.writeHead(404).end("not found\n");
    return;
  }
  readFile(file, "utf8").then(
    (text) => res.writeHead(200, { "content-type": "text/plain; version=0.0.4" }).end(text),
    () => res.writeHead(503).end("the agent is not running\n"),
  );
});
server.listen(Number(port), host, () => process.stdout.write("listening\n"));
process.on("SIGTERM", () => server.close(() => process.exit(0)));
