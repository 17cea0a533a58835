// The `testbed` command: one verb per job (see the README and DESIGN's command contract).
import { Command, CommanderError } from "commander";

const program = new Command("testbed")
  .description("Build, measure and compare the kube-proxy (iptables) and Cilium (eBPF) Service dataplanes")
  .showHelpAfterError()
  .exitOverride();

// Each verb's module is loaded only when that verb runs: plan pulls in the Pulumi SDK, report
// pulls in Vega, and neither should slow down or bloat `testbed decode` on a five-million-record log.
const verbs: Record<string, () => Promise<Command>> = {
  plan: async () => (await import("./plan.js")).planCommand(),
  diff: async () => (await import("./diff.js")).diffCommand(),
  decode: async () => (await import("./decode.js")).decodeCommand(),
  report: async () => (await import("./report.js")).reportCommand(),
  campaign: async () => (await import("./campaign.js")).campaignCommand(),
  lab: async () => (await import("./lab.js")).labCommand(),
  rehearse: async () => (await import("./rehearse.js")).rehearseCommand(),
  "verify-openstack": async () => (await import("./verify-openstack.js")).verifyOpenstackCommand(),
};

const requested = process.argv[2];
const toLoad = requested !== undefined && requested in verbs ? [requested] : Object.keys(verbs);

try {
  for (const name of toLoad) program.addCommand(await verbs[name]!());
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) process.exit(err.exitCode);
  console.error(`testbed: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
}
