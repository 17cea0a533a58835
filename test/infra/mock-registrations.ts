// What the SDK tells the engine about each resource (parent, dependencies, options), recorded by
// wrapping the mock monitor: MockResourceArgs alone does not carry them. Call recordRegistrations()
// before the program runs.
import { createRequire } from "node:module";

export interface Registration {
  readonly type: string;
  readonly name: string;
  readonly urn: string;
  readonly parent: string;
  /** Every resource the engine would wait for: dependsOn and the resources behind input values. */
  readonly dependencies: Set<string>;
  readonly deleteBeforeReplace: boolean;
  readonly ignoreChanges: string[];
  readonly additionalSecretOutputs: string[];
  readonly deletedWith: string;
  readonly customTimeouts: { create?: string; update?: string } | undefined;
}

interface RequestLike {
  getType(): string;
  getName(): string;
  getParent(): string;
  getDependenciesList(): string[];
  getPropertydependenciesMap(): { forEach(cb: (value: { getUrnsList(): string[] }) => void): void };
  getDeletebeforereplace(): boolean;
  getIgnorechangesList(): string[];
  getAdditionalsecretoutputsList(): string[];
  getDeletedwith(): string;
  getCustomtimeouts(): { getCreate(): string; getUpdate(): string } | undefined;
}

export const registrations: Registration[] = [];

/** Wraps the mock monitor's registerResource to keep what each registration asked of the engine. */
export function recordRegistrations(): void {
  const require = createRequire(import.meta.url);
  const mocks = require("@pulumi/pulumi/runtime/mocks.js") as {
    MockMonitor: { prototype: { registerResource(req: RequestLike, cb: (err: unknown, res: { getUrn(): string } | undefined) => void): Promise<void> } };
  };
  const original = mocks.MockMonitor.prototype.registerResource;
  mocks.MockMonitor.prototype.registerResource = function (req, callback) {
    return original.call(this, req, (err, res) => {
      if (!err && res) {
        const dependencies = new Set(req.getDependenciesList());
        req.getPropertydependenciesMap().forEach((deps) => deps.getUrnsList().forEach((u) => dependencies.add(u)));
        const timeouts = req.getCustomtimeouts();
        registrations.push({
          type: req.getType(),
          name: req.getName(),
          urn: res.getUrn(),
          parent: req.getParent(),
          dependencies,
          deleteBeforeReplace: req.getDeletebeforereplace(),
          ignoreChanges: req.getIgnorechangesList(),
          additionalSecretOutputs: req.getAdditionalsecretoutputsList(),
          deletedWith: req.getDeletedwith(),
          customTimeouts: timeouts ? { create: timeouts.getCreate() || undefined, update: timeouts.getUpdate() || undefined } : undefined,
        });
      }
      callback(err, res);
    });
  };
}

export function reg(name: string): Registration {
  const r = registrations.find((x) => x.name === name);
  if (!r) throw new Error(`no resource named ${name}; registered: ${registrations.map((x) => x.name).join(", ")}`);
  return r;
}

/** True when `from` waits for `to`, directly or through other resources. */
export function waitsFor(from: string, to: string): boolean {
  const byUrn = new Map(registrations.map((r) => [r.urn, r]));
  const target = reg(to).urn;
  const seen = new Set<string>();
  const stack = [...reg(from).dependencies];
  while (stack.length > 0) {
    const urn = stack.pop()!;
    if (urn === target) return true;
    if (seen.has(urn)) continue;
    seen.add(urn);
    const r = byUrn.get(urn);
    if (!r) continue;
    stack.push(...r.dependencies);
    // A dependency on a component is a dependency on its children.
    for (const child of registrations.filter((c) => c.parent === urn)) stack.push(child.urn);
  }
  return false;
}
