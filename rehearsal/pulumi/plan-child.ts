// One offline run of the real program for the Pulumi CLI stand-in (state.ts planStack): reads the
// request (stack, config, secret keys, known state) from a file and writes the resources, with their
// registration options, and the stack outputs to another.
import { readFileSync, writeFileSync } from "node:fs";
import { runOffline } from "../../infra/offline-engine.js";

const [requestFile, resultFile] = process.argv.slice(2);
if (!requestFile || !resultFile) throw new Error("usage: plan-child.ts REQUEST.json RESULT.json");
const request = JSON.parse(readFileSync(requestFile, "utf8")) as {
  stack: string;
  config: Record<string, string>;
  secretKeys: string[];
  knownState: Record<string, Record<string, unknown>>;
};
const run = await runOffline({ stack: request.stack, config: request.config, secretKeys: request.secretKeys, knownState: request.knownState });
writeFileSync(resultFile, JSON.stringify({ resources: run.resources, outputs: run.outputs }), { mode: 0o600 });
