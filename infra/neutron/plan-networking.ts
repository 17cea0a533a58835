// Child-process entry of planNetworkingInChild: plan-networking.ts STACK CONFIG_JSON OUT_FILE.
import * as fs from "node:fs";
import { planNetworking } from "./networking-plan.js";

const [stack, config, out] = process.argv.slice(2);
if (!stack || !config || !out) throw new Error("usage: plan-networking.ts STACK CONFIG_JSON OUT_FILE");
fs.writeFileSync(out, JSON.stringify(await planNetworking(stack, JSON.parse(config) as Record<string, string>)));
