#!/usr/bin/env node
// The `testbed` command: one verb per job (see the README and DESIGN's command contract). The bin runs this file
// compiled (dist/cli/main.js, `npm run build`); `npm run testbed` runs it from source through tsx.
import { Command, CommanderError } from "commander";
import { projectVersion } from "./project.js";

const program = new Command("testbed").version(projectVersion(), "-V, --version", "print the version and exit").showHelpAfterError().exitOverride();

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
  if (toLoad.length > 1) {
    // The overview names every dataplane of the registry; a verb's own run does not pay for loading it.
    const { DATAPLANE_DESCRIPTIONS, DATAPLANES } = await import("../scenario/schema.js");
    program.description(
      `Build, measure and compare Kubernetes Service dataplanes as the Service count grows: ${DATAPLANES.map((d) => `${d} (${DATAPLANE_DESCRIPTIONS[d]})`).join(", ")}`,
    );
  }
  for (const name of toLoad) program.addCommand(await verbs[name]!());
  await program.parseAsync(process.argv);
} catch (err) {
  // `diff --exit-code` says "differ" with 1, as git does, so its errors say so with 2.
  const errorCode = requested === "diff" && process.argv.includes("--exit-code") ? 2 : 1;
  if (err instanceof CommanderError) process.exit(err.exitCode === 0 ? 0 : errorCode);
  console.error(`testbed: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(errorCode);
}
