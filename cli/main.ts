// The `testbed` command: one verb per job (see the README and DESIGN's command contract).
import { Command, CommanderError } from "commander";

const program = new Command("testbed")
  .description("Build, measure and compare the kube-proxy (iptables) and Cilium (eBPF) Service dataplanes")
  .showHelpAfterError()
  .exitOverride();

const verbs: Array<() => Promise<Command>> = [
  async () => (await import("./plan.js")).planCommand(),
  async () => (await import("./diff.js")).diffCommand(),
  async () => (await import("./decode.js")).decodeCommand(),
  async () => (await import("./report.js")).reportCommand(),
  async () => (await import("./campaign.js")).campaignCommand(),
];

for (const load of verbs) program.addCommand(await load());

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) process.exit(err.exitCode);
  console.error(`testbed: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
}
