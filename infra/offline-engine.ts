// Runs the real Pulumi program against a mocked engine: no CLI, no cloud. Used by `testbed plan`,
// `testbed diff` and the tests. Provider-computed fields that the program reads (addresses, command
// output) are filled in here, so the program's own apply() code runs as it would in a deployment.
import { createHash } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import * as path from "node:path";
import { pathToFileURL } from "node:url";
import * as pulumi from "@pulumi/pulumi";
import { parse as parseYaml, YAMLError } from "yaml";
import { OFFLINE_ENV } from "./config.js";
import { mockCommandStdout } from "./offline-fixtures.js";

export interface PlannedResource {
  readonly type: string;
  readonly name: string;
  /** Inputs as the engine received them; secret values are wrapped as { "$secret": value }. */
  readonly inputs: Record<string, unknown>;
  /** The resource's URN and options, as the SDK registered them (absent in hand-made records). */
  urn?: string;
  options?: RegistrationOptions;
}

export interface OfflineRun {
  readonly stack: string;
  readonly resources: PlannedResource[];
  /** Stack outputs (the program's exports), secrets wrapped as { "$secret": value }. */
  readonly outputs: Record<string, unknown>;
}

/** What a registration asked of the engine beyond its inputs: the options a lifecycle depends on. */
export interface RegistrationOptions {
  readonly parent: string;
  /** Resources (type::name) the engine waits for: dependsOn and the resources behind input values. */
  readonly dependencies: readonly string[];
  /** Per input property, the resources (type::name) its value comes from. */
  readonly propertyDependencies: Readonly<Record<string, readonly string[]>>;
  readonly deleteBeforeReplace: boolean;
  readonly ignoreChanges: readonly string[];
  readonly replaceOnChanges: readonly string[];
  readonly additionalSecretOutputs: readonly string[];
  /** type::name of the resource whose deletion makes this one's delete unnecessary. */
  readonly deletedWith: string;
  readonly customTimeouts?: { readonly create?: string; readonly update?: string; readonly delete?: string };
}

/** `urn:pulumi:stack::project::parentType$type::name` -> `type::name`, the id plans key resources by. */
export function resourceIdOfUrn(urn: string): string {
  const parts = urn.split("::");
  const name = parts.slice(3).join("::");
  const qualified = parts[2] ?? "";
  return `${qualified.slice(qualified.lastIndexOf("$") + 1)}::${name}`;
}

interface RegisterRequest {
  getType(): string;
  getName(): string;
  getParent(): string;
  getDependenciesList(): string[];
  getPropertydependenciesMap(): { forEach(cb: (value: { getUrnsList(): string[] }, key: string) => void): void };
  getDeletebeforereplace(): boolean;
  getIgnorechangesList(): string[];
  getReplaceonchangesList(): string[];
  getAdditionalsecretoutputsList(): string[];
  getDeletedwith(): string;
  getCustomtimeouts(): { getCreate(): string; getUpdate(): string; getDelete(): string } | undefined;
}

/** Receives each registration's options, with the URN the mock monitor gave it. */
let onRegistration: ((type: string, name: string, urn: string, options: RegistrationOptions) => void) | undefined;
let monitorWrapped = false;

/**
 * Wraps the mock monitor's registerResource once per process to keep what the SDK told the engine
 * about each resource (MockResourceArgs carries the inputs only).
 */
function recordRegistrations(): void {
  if (monitorWrapped) return;
  monitorWrapped = true;
  const require = createRequire(import.meta.url);
  const mocks = require("@pulumi/pulumi/runtime/mocks.js") as {
    MockMonitor: { prototype: { registerResource(req: RegisterRequest, cb: (err: unknown, res: { getUrn(): string } | undefined) => void): Promise<void> } };
  };
  const original = mocks.MockMonitor.prototype.registerResource;
  mocks.MockMonitor.prototype.registerResource = function (req, callback) {
    return original.call(this, req, (err, res) => {
      if (!err && res && onRegistration) {
        const propertyDependencies: Record<string, string[]> = {};
        req.getPropertydependenciesMap().forEach((deps, key) => {
          propertyDependencies[key] = deps.getUrnsList().map(resourceIdOfUrn);
        });
        const dependencies = new Set(req.getDependenciesList().map(resourceIdOfUrn));
        for (const ids of Object.values(propertyDependencies)) for (const id of ids) dependencies.add(id);
        const timeouts = req.getCustomtimeouts();
        onRegistration(req.getType(), req.getName(), res.getUrn(), {
          parent: req.getParent() ? resourceIdOfUrn(req.getParent()) : "",
          dependencies: [...dependencies],
          propertyDependencies,
          deleteBeforeReplace: req.getDeletebeforereplace(),
          ignoreChanges: req.getIgnorechangesList(),
          replaceOnChanges: req.getReplaceonchangesList(),
          additionalSecretOutputs: req.getAdditionalsecretoutputsList(),
          deletedWith: req.getDeletedwith() ? resourceIdOfUrn(req.getDeletedwith()) : "",
          ...(timeouts
            ? { customTimeouts: { create: timeouts.getCreate() || undefined, update: timeouts.getUpdate() || undefined, delete: timeouts.getDelete() || undefined } }
            : {}),
        });
      }
      callback(err, res);
    });
  };
}

const SIG_KEY = "4dabf18193072939515e22adb298388d";
const SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270";

/**
 * Replaces the engine's secret envelopes by { "$secret": value } so callers can find and redact them,
 * string assets by { "$text": content } (the file a CopyToRemote would upload), and file assets by
 * { "$file": path, "$sha256": hash of its content }: what the engine keeps of a file asset.
 */
async function plainInputs(value: unknown): Promise<unknown> {
  if (value instanceof Promise) return plainInputs(await value);
  if (Array.isArray(value)) return Promise.all(value.map(plainInputs));
  if (value && typeof value === "object") {
    const obj = value as Record<string, unknown>;
    if (obj[SIG_KEY] === SECRET_SIG) return { $secret: await plainInputs(obj.value) };
    if (obj.__pulumiAsset === true && "text" in obj) return { $text: await (obj.text as Promise<string> | string) };
    if (obj.__pulumiAsset === true && "path" in obj) {
      const file = await (obj.path as Promise<string> | string);
      return { $file: file, $sha256: createHash("sha256").update(readFileSync(file)).digest("hex") };
    }
    const entries = await Promise.all(Object.entries(obj).map(async ([k, v]) => [k, await plainInputs(v)] as const));
    return Object.fromEntries(entries);
  }
  return value;
}

/** A MAC in Neutron's default base (fa:16:3e), fixed by the port's name so that plans are stable. */
export function standInMac(name: string): string {
  const digest = createHash("sha256").update(name).digest();
  return ["fa", "16", "3e", ...[0, 1, 2].map((i) => digest[i]!.toString(16).padStart(2, "0"))].join(":");
}

/** Deterministic fake addresses, from documentation ranges, for fields the cloud would compute. */
let addressCounter = 10;
function computedState(type: string, name: string, inputs: Record<string, unknown>): Record<string, unknown> {
  switch (type) {
    case "openstack:networking/floatingIp:FloatingIp":
      return { address: `203.0.113.${addressCounter++}` };
    case "openstack:networking/port:Port": {
      const fixed = (inputs.fixedIps as { ipAddress?: string }[] | undefined) ?? [];
      const given = fixed.map((f) => f.ipAddress).filter((a): a is string => typeof a === "string");
      return { allFixedIps: given.length > 0 ? given : [`192.0.2.${addressCounter++}`], macAddress: standInMac(name) };
    }
    case "openstack:compute/instance:Instance":
      return { accessIpV4: `192.0.2.${addressCounter++}` };
    case "openstack:compute/keypair:Keypair":
      return { fingerprint: "00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff" };
    case "command:remote:Command":
    case "command:local:Command":
      return { stdout: mockCommandStdout(name, inputs), stderr: "" };
    default:
      return {};
  }
}

/** The stacks a project has: one Pulumi.<stack>.yaml each. */
export function projectStacks(projectDir: string): string[] {
  return readdirSync(projectDir)
    .map((f) => /^Pulumi\.(.+)\.yaml$/.exec(f)?.[1])
    .filter((s): s is string => s !== undefined)
    .sort();
}

/**
 * The line a YAML parse error is about, as a person would fix it: the parser reports where it gave up, which for two
 * common slips is a line away from the slip itself (a key indented under a value; a [ or { never closed).
 */
function yamlProblemLine(lines: readonly string[], err: YAMLError): { line: number; what: string } | undefined {
  const at = err.linePos?.[0];
  if (!at) return undefined;
  const indent = (l: string) => l.length - l.trimStart().length;
  if (err.code === "BLOCK_AS_IMPLICIT_KEY") {
    const next = lines.findIndex((l, i) => i >= at.line && l.trim() !== "" && !l.trim().startsWith("#"));
    if (next >= 0 && indent(lines[next]!) > indent(lines[at.line - 1]!)) return { line: next + 1, what: `indented deeper than line ${at.line}, as if it were under its value` };
  }
  if (err.code === "BAD_INDENT" || err.code === "MISSING_CHAR") {
    for (let i = at.line - 1; i >= 0; i--) {
      const text = lines[i]!.replace(/#.*$/, "");
      const open = (text.match(/[[{]/g) ?? []).length - (text.match(/[\]}]/g) ?? []).length;
      if (open > 0) return { line: i + 1, what: `a ${text.includes("[") ? "[" : "{"} that is not closed on its line` };
    }
  }
  return { line: at.line, what: err.message.split("\n")[0]!.replace(/ at line \d+, column \d+:?$/, "") };
}

/** A YAML file's content, or an error naming the file and the line of the problem. */
function parseYamlFile(file: string, text: string): unknown {
  try {
    return parseYaml(text);
  } catch (err) {
    if (!(err instanceof YAMLError)) throw err;
    const problem = yamlProblemLine(text.split("\n"), err);
    const where = problem ? ` line ${problem.line}: ${problem.what}` : `: ${err.message.split("\n")[0]}`;
    throw new Error(`${file}${where}; not valid YAML; accepted: the YAML Pulumi writes, e.g. "config:" then "  testbed:dataplane: ebpf"`);
  }
}

/**
 * Refuses a stack file's config key without a namespace: Pulumi would put it in the project's namespace, where the
 * program never reads it, and the testbed: key it meant would stay at its default or be reported missing.
 */
function checkNamespaces(file: string, config: Record<string, unknown>): void {
  const bare = Object.keys(config).filter((k) => !k.includes(":"));
  if (bare.length === 0) return;
  throw new Error(
    `${file}: config key(s) ${bare.map((k) => `"${k}"`).join(", ")} have no namespace; the testbed's are written testbed:KEY (${bare.map((k) => `testbed:${k}`).join(", ")}), other providers' with theirs (e.g. openstack:authUrl)`,
  );
}

/** Project- and stack-level config of a stack, as the CLI would merge it (stack wins). */
export function readStackConfig(projectDir: string, stack: string, readFile: (p: string) => string): {
  values: Record<string, string>;
  secretKeys: string[];
} {
  const project = parseYamlFile("Pulumi.yaml", readFile(path.join(projectDir, "Pulumi.yaml"))) as { config?: Record<string, { value?: unknown }> };
  let stackText: string;
  const stackFile = `Pulumi.${stack}.yaml`;
  try {
    stackText = readFile(path.join(projectDir, stackFile));
  } catch {
    throw new Error(`stack "${stack}": no file ${stackFile} in ${projectDir}; accepted: a stack with a stack file there (${projectStacks(projectDir).join(", ")})`);
  }
  const parsed = parseYamlFile(stackFile, stackText) as { config?: Record<string, unknown> } | null;
  if (parsed !== null && (typeof parsed !== "object" || Array.isArray(parsed))) throw new Error(`${stackFile}: not a Pulumi stack file (its top level is not a mapping); accepted: "config:" with testbed:KEY entries`);
  const stackConfig = (parsed?.config ?? {}) as Record<string, unknown>;
  checkNamespaces(stackFile, stackConfig);
  const values: Record<string, string> = {};
  const secretKeys: string[] = [];
  const put = (key: string, v: unknown) => {
    if (v && typeof v === "object" && "secure" in (v as object)) {
      // Encrypted values cannot be read offline; the program sees a marked stand-in.
      values[key] = "offline-stand-in-for-an-encrypted-value";
      secretKeys.push(key);
      return;
    }
    values[key] = typeof v === "string" ? v : JSON.stringify(v);
  };
  for (const [key, spec] of Object.entries(project.config ?? {})) {
    if (spec && typeof spec === "object" && "value" in spec) put(key, spec.value);
  }
  for (const [key, v] of Object.entries(stackConfig)) put(key, v);
  return { values, secretKeys };
}

export interface OfflineOptions {
  readonly stack: string;
  /** Full config keys ("testbed:services") to their string values, as `pulumi config` stores them. */
  readonly config: Record<string, string>;
  readonly secretKeys?: readonly string[];
  /** The program's entry module; defaults to infra/index.ts. */
  readonly program?: string;
  /**
   * What a deployment already knows of some resources (type::name -> fields of their state), in place
   * of the stand-ins: the floating IP's address the cloud gave, the stdout a Command really printed.
   * The program's own apply() code then runs on the real values.
   */
  readonly knownState?: Readonly<Record<string, Readonly<Record<string, unknown>>>>;
}

/** infra/index beside this module: .ts from source, .js compiled (dist/infra/). */
const DEFAULT_PROGRAM = path.join(path.dirname(new URL(import.meta.url).pathname), `index${path.extname(new URL(import.meta.url).pathname)}`);

/**
 * Runs the program once in this process. Pulumi's runtime state is global, so a process runs one
 * stack: `testbed diff` runs each stack in a child process.
 */
export async function runOffline(opts: OfflineOptions): Promise<OfflineRun> {
  const resources: PlannedResource[] = [];
  process.env[OFFLINE_ENV] = "1";
  recordRegistrations();
  onRegistration = (type, name, urn, options) => {
    const planned = resources.find((r) => r.type === type && r.name === name && r.urn === undefined);
    if (planned) Object.assign(planned, { urn, options });
  };
  // Offline runs never hold the real private key; a stand-in keeps remote commands declarable.
  const config = { "testbed:sshPrivateKey": "offline-stand-in-private-key", ...opts.config };
  const secretKeys = [...new Set(["testbed:sshPrivateKey", ...(opts.secretKeys ?? [])])];
  await pulumi.runtime.setMocks(
    {
      async newResource(args) {
        const inputs = (await plainInputs(args.inputs)) as Record<string, unknown>;
        resources.push({ type: args.type, name: args.name, inputs });
        const known = opts.knownState?.[`${args.type}::${args.name}`] ?? {};
        return { id: `${args.name}-id`, state: { ...args.inputs, ...computedState(args.type, args.name, inputs), ...known } };
      },
      call(args) {
        // Lookups of existing cloud objects answer with a stand-in id, as the cloud would.
        if (args.token === "openstack:networking/getNetwork:getNetwork") {
          return { ...args.inputs, id: `${String(args.inputs.name)}-network-id` };
        }
        return args.inputs;
      },
    },
    "dataplane-testbed",
    opts.stack,
    false,
  );
  pulumi.runtime.setAllConfig(config, secretKeys as string[]);
  let program: Record<string, unknown>;
  try {
    program = (await import(pathToFileURL(opts.program ?? DEFAULT_PROGRAM).href)) as Record<string, unknown>;
  } catch (err) {
    // How far the program got: a refusal must come before any resource is declared. Registrations
    // reach the (mock) engine asynchronously, so those already under way are awaited first.
    await (pulumi.runtime as unknown as { waitForRPCs(): Promise<void> }).waitForRPCs().catch(() => undefined);
    throw Object.assign(err instanceof Error ? err : new Error(String(err)), { declared: resources.length });
  }
  const outputs: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(program)) {
    outputs[name] = await settle(value);
  }
  await (pulumi.runtime as unknown as { waitForRPCs(): Promise<void> }).waitForRPCs();
  return { stack: opts.stack, resources, outputs };
}

/** Resolves an exported value (Output, promise or plain) to plain data, wrapping secrets. */
async function settle(value: unknown): Promise<unknown> {
  if (pulumi.Output.isInstance(value)) {
    const output = value as pulumi.Output<unknown>;
    const [plain, secret] = await Promise.all([
      new Promise<unknown>((resolve) => output.apply((v) => resolve(v))),
      (output as unknown as { isSecret: Promise<boolean> }).isSecret,
    ]);
    const settled = await settle(plain);
    return secret ? { $secret: settled } : settled;
  }
  if (value instanceof Promise) return settle(await value);
  if (Array.isArray(value)) return Promise.all(value.map(settle));
  if (value && typeof value === "object" && !(value instanceof pulumi.Resource)) {
    const entries = await Promise.all(Object.entries(value).map(async ([k, v]) => [k, await settle(v)] as const));
    return Object.fromEntries(entries);
  }
  return value;
}

/** The content of an asset input as a plan holds it: a string asset's text, or a file asset's file (read now). */
export function assetText(source: unknown): string | undefined {
  if (!source || typeof source !== "object") return undefined;
  const asset = source as { $text?: unknown; $file?: unknown };
  if (typeof asset.$text === "string") return asset.$text;
  if (typeof asset.$file === "string") return readFileSync(asset.$file, "utf8");
  return undefined;
}

/** Replaces every { "$secret": value } by the string "[secret]". */
export function redactSecrets(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(redactSecrets);
  if (value && typeof value === "object") {
    const obj = value as Record<string, unknown>;
    if (Object.keys(obj).length === 1 && "$secret" in obj) return "[secret]";
    return Object.fromEntries(Object.entries(obj).map(([k, v]) => [k, redactSecrets(v)]));
  }
  return value;
}
