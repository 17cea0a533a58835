// The README's table of config keys names every key of the schema, so a new key cannot go undocumented.
import * as fs from "node:fs";
import { expect, it } from "vitest";
import { PLACEHOLDERS, scenarioSchema } from "../../scenario/schema.js";

function leafPaths(value: unknown, prefix = ""): string[] {
  if (value && typeof value === "object" && !Array.isArray(value)) {
    return Object.entries(value).flatMap(([k, v]) => leafPaths(v, prefix ? `${prefix}.${k}` : k));
  }
  return [prefix];
}

/** The ways the README writes a key: itself, or grouped with its siblings. */
function spellings(path: string): string[] {
  const parts = path.split(".");
  const last = parts.at(-1)!;
  const parent = parts.slice(0, -1).join(".");
  const forms = [path, `${parent}.*`];
  if (last === "ipv4" || last === "ipv6") forms.push(`${parent}.ipv4/ipv6`);
  if (parts[0] === "hosts") forms.push("hosts.<role>.vcpus/ramMiB/diskGiB/flavor");
  return forms.map((f) => `\`${f}\``);
}

it("documents every config key in the README", () => {
  const readme = fs.readFileSync("README.md", "utf8");
  const defaults = scenarioSchema.parse({
    dataplane: "ebpf",
    ...PLACEHOLDERS,
    measure: { profile: "latency", runId: "r" },
    flavors: { hostCpuMHz: 3000 },
    openstack: { availabilityZone: "nova" },
    kubernetes: { failCgroupV1: true },
  });
  const undocumented = leafPaths(defaults)
    .map((p) => (p.startsWith("measure.") ? "measure" : p))
    .filter((p) => !spellings(p).some((s) => readme.includes(s)));
  expect(undocumented).toEqual([]);
});
