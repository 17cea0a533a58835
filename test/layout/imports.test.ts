// The layout's promises, checked on the sources: the measurement pipeline (measure/) knows no
// backend, lab or cloud; the lab's dataplane registry and its modules do not import each other.
import { readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { DATAPLANES } from "../../scenario/schema.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

function sources(dir: string): string[] {
  return readdirSync(path.join(ROOT, dir)).flatMap((name) => {
    const rel = path.posix.join(dir, name);
    if (statSync(path.join(ROOT, rel)).isDirectory()) return sources(rel);
    return /\.(ts|mjs)$/.test(name) ? [rel] : [];
  });
}

/** The repository paths a source file imports (relative specifiers only), without extension. */
function importsOf(file: string): string[] {
  const text = readFileSync(path.join(ROOT, file), "utf8");
  const specs = [...text.matchAll(/(?:from\s+|import\s*\(\s*|import\s+)["'](\.[^"']+)["']/g)].map((m) => m[1]!);
  return specs.map((s) => path.posix.normalize(path.posix.join(path.posix.dirname(file), s)).replace(/\.(js|ts|mjs)$/, ""));
}

describe("layout", () => {
  it("measure/ imports neither lab/, infra/ nor backends/", () => {
    const offending = sources("measure").flatMap((f) => importsOf(f).filter((i) => /^(lab|infra|backends)\//.test(i)).map((i) => `${f} -> ${i}`));
    expect(offending).toEqual([]);
  });

  it("the backends sit above lab/ and infra/: neither imports them", () => {
    const offending = [...sources("lab"), ...sources("infra")].flatMap((f) => importsOf(f).filter((i) => i.startsWith("backends/")).map((i) => `${f} -> ${i}`));
    expect(offending).toEqual([]);
  });

  it("each lab dataplane lives in its own folder, and no module imports the registry", () => {
    const registry = "lab/dataplanes/index";
    const modules = sources("lab/dataplanes").filter((f) => f !== `${registry}.ts`);
    expect(modules.flatMap((f) => importsOf(f).filter((i) => i === registry).map(() => f))).toEqual([]);
    const folders = readdirSync(path.join(ROOT, "lab/dataplanes")).filter((n) => statSync(path.join(ROOT, "lab/dataplanes", n)).isDirectory());
    expect(folders.sort()).toEqual([...DATAPLANES].sort());
    for (const folder of folders) expect(sources(`lab/dataplanes/${folder}`)).toContain(`lab/dataplanes/${folder}/module.ts`);
  });
});
