// Pulumi config -> Scenario. Nothing else in the program reads config.
import * as pulumi from "@pulumi/pulumi";
import {
  CONFIG_NAMESPACE,
  ScenarioError,
  parseScenario,
  placeholdersIn,
  scenarioSchema,
  unknownConfigKeyProblems,
  type Scenario,
} from "../scenario/schema.js";

/** Keys whose values are plain strings; every other key holds JSON (numbers, lists, objects). */
const STRING_KEYS = new Set(["dataplane", "adminCidr", "sshPublicKey"]);

/** Reads every schema key from a config source into the raw object the schema parses. */
export function readRawScenario(get: (key: string) => string | undefined): Record<string, unknown> {
  const raw: Record<string, unknown> = {};
  for (const key of Object.keys(scenarioSchema.shape)) {
    const text = get(key);
    if (text === undefined) continue;
    if (STRING_KEYS.has(key)) {
      raw[key] = text;
      continue;
    }
    try {
      raw[key] = JSON.parse(text);
    } catch {
      // Left as text: the schema then names the key and says what it accepts.
      raw[key] = text;
    }
  }
  return raw;
}

export interface LoadedConfig {
  readonly scenario: Scenario;
  /** Private half of testbed:sshPublicKey, for remote commands; always a secret. */
  readonly sshPrivateKey: pulumi.Output<string>;
}

/** Set by `testbed plan`/`diff` and the tests, where placeholders are expected. */
export const OFFLINE_ENV = "TESTBED_OFFLINE";

/**
 * Loads and validates the scenario. Throws ScenarioError before any resource is declared.
 * A real deployment (not a preview, not offline) also refuses the committed placeholders.
 */
export function loadConfig(): LoadedConfig {
  const config = new pulumi.Config(CONFIG_NAMESPACE);
  // Unknown keys first: a typo (testbed:sevices) would otherwise leave the default in place silently.
  const unknown = unknownConfigKeyProblems(Object.keys(pulumi.runtime.allConfig()));
  if (unknown.length > 0) throw new ScenarioError(unknown);
  const scenario = parseScenario(readRawScenario((k) => config.get(k)));
  const placeholders = placeholdersIn(scenario);
  const offline = process.env[OFFLINE_ENV] === "1";
  if (placeholders.length > 0) {
    const message = `${placeholders.join(" and ")} still hold the committed placeholder; replace them (see the README, "The cloud path")`;
    if (!offline && !pulumi.runtime.isDryRun()) throw new Error(message);
    if (!offline) void pulumi.log.warn(message);
  }
  // Presence is checked through the raw accessor: reading the value itself would unwrap the secret.
  if (!offline && !pulumi.runtime.isDryRun() && pulumi.runtime.getConfig(`${CONFIG_NAMESPACE}:sshPrivateKey`) === undefined) {
    throw new Error(
      `${CONFIG_NAMESPACE}:sshPrivateKey is missing; set it with \`pulumi config set --secret ${CONFIG_NAMESPACE}:sshPrivateKey < ~/.ssh/id_ed25519\``,
    );
  }
  const key = config.getSecret("sshPrivateKey") ?? pulumi.output("");
  return {
    scenario,
    sshPrivateKey: pulumi.secret(key),
  };
}
