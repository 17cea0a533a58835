// The stack files as `testbed plan` reads them (infra/offline-engine.ts readStackConfig): one per dataplane of the
// registry, and a stack file with a YAML slip or a key without its namespace refused naming the file and the line.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { projectStacks, readStackConfig } from "../../infra/offline-engine.js";
import { PROJECT_DIR } from "../../cli/project.js";
import { DATAPLANES } from "../../scenario/schema.js";

const dir = mkdtempSync(path.join(tmpdir(), "stack-files-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
writeFileSync(path.join(dir, "Pulumi.yaml"), readFileSync(path.join(PROJECT_DIR, "Pulumi.yaml")));

function refusal(name: string, text: string): string {
  writeFileSync(path.join(dir, `Pulumi.${name}.yaml`), text);
  try {
    readStackConfig(dir, name, (p) => readFileSync(p, "utf8"));
  } catch (err) {
    return (err as Error).message;
  }
  return "accepted";
}

describe("the committed stack files", () => {
  it("are one per dataplane of the registry, each setting its own", () => {
    expect(projectStacks(PROJECT_DIR)).toEqual([...DATAPLANES].sort());
    for (const d of DATAPLANES) expect(readStackConfig(PROJECT_DIR, d, (p) => readFileSync(p, "utf8")).values["testbed:dataplane"]).toBe(d);
  });

  it("their comments and the project's description speak of every dataplane, not of two", () => {
    for (const file of ["Pulumi.yaml", ...DATAPLANES.map((d) => `Pulumi.${d}.yaml`)]) {
      const comments = readFileSync(path.join(PROJECT_DIR, file), "utf8");
      expect(comments, file).not.toMatch(/\b(two|both) (stack files|stacks|dataplanes)\b/i);
      // A file that lists the stacks lists them all.
      if (/one per dataplane/.test(comments)) expect(comments, file).toContain(`one per dataplane: ${DATAPLANES.join(", ")}`);
    }
    const description = readFileSync(path.join(PROJECT_DIR, "Pulumi.yaml"), "utf8").replace(/\s+/g, " ");
    for (const d of ["iptables", "nftables", "eBPF"]) expect(description).toContain(d);
  });

  it("an unknown stack lists the stacks there are", () => {
    expect(() => readStackConfig(PROJECT_DIR, "ipvs", (p) => readFileSync(p, "utf8"))).toThrow(
      `stack "ipvs": no file Pulumi.ipvs.yaml in ${PROJECT_DIR}; accepted: a stack with a stack file there (${[...DATAPLANES].sort().join(", ")})`,
    );
  });
});

describe("a stack file with a slip", () => {
  it.each([
    ["indented", "config:\n  testbed:dataplane: ebpf\n   testbed:services: 5\n", "Pulumi.indented.yaml line 3: indented deeper than line 2, as if it were under its value; not valid YAML"],
    ["unclosed", "# a comment\nconfig:\n  testbed:families: [ipv4, ipv6\n  testbed:services: 5\n", "Pulumi.unclosed.yaml line 3: a [ that is not closed on its line; not valid YAML"],
    ["tab", "config:\n\ttestbed:dataplane: ebpf\n", "Pulumi.tab.yaml line 2: Tabs are not allowed as indentation; not valid YAML"],
    ["colon", "config:\n  testbed:dataplane ebpf\n  testbed:services: 5\n", "Pulumi.colon.yaml line 2: Implicit keys need to be on a single line; not valid YAML"],
  ])("%s: names the file and the line to fix", (name, text, message) => {
    expect(refusal(name, text)).toContain(message);
  });

  it("a key without the testbed: namespace is said to lack it, not reported as a missing setting", () => {
    expect(refusal("bare", "config:\n  dataplane: ebpf\n  testbed:services: 5\n")).toBe(
      'Pulumi.bare.yaml: config key(s) "dataplane" have no namespace; the testbed\'s are written testbed:KEY (testbed:dataplane), other providers\' with theirs (e.g. openstack:authUrl)',
    );
  });
});
