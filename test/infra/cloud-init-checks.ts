// The real validators of a rendered #cloud-config: cloud-init's own schema check, and shellcheck over
// every script it embeds. runcmd and bootcmd become one sh script each through cloud-init's own
// shellify (imported from the installed cloud-init), exactly as on the host.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parse } from "yaml";

export interface CheckResult {
  readonly ok: boolean;
  readonly output: string;
}

function run(cmd: string, args: string[], input?: string): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(cmd, args, { input, encoding: "utf8" });
  if (r.error) throw r.error;
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** `cloud-init schema --config-file FILE`: ok only when it prints "Valid cloud-config". */
export function cloudInitSchema(userData: string): CheckResult {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "cloud-init-schema-"));
  try {
    const file = path.join(dir, "user-data.yaml");
    fs.writeFileSync(file, userData);
    const r = run("cloud-init", ["schema", "--config-file", file]);
    const output = `${r.stdout}${r.stderr}`;
    return { ok: r.status === 0 && r.stdout.includes("Valid cloud-config"), output };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** cloud-init's shellify, from the installed cloud-init (Debian's python3 package). */
export function shellify(commands: unknown[]): string {
  const r = run(
    "/usr/bin/python3",
    ["-c", "import json, sys\nfrom cloudinit.util import shellify\nsys.stdout.write(shellify(json.load(sys.stdin)))"],
    JSON.stringify(commands),
  );
  if (r.status !== 0) throw new Error(`cloud-init's shellify failed: ${r.stderr}`);
  return r.stdout;
}

export interface EmbeddedScript {
  /** "runcmd", "bootcmd" or the path of a written file. */
  readonly name: string;
  readonly script: string;
}

/** Every script a cloud-config runs: runcmd, bootcmd, and written files that start with a shell shebang. */
export function embeddedScripts(userData: string): EmbeddedScript[] {
  const doc = parse(userData) as Record<string, unknown>;
  const scripts: EmbeddedScript[] = [];
  for (const key of ["bootcmd", "runcmd"]) {
    const list = doc[key];
    if (Array.isArray(list) && list.length > 0) scripts.push({ name: key, script: shellify(list) });
  }
  for (const f of (doc.write_files as { path: string; content?: string }[] | undefined) ?? []) {
    if (typeof f.content === "string" && /^#!\s*(\/usr\/bin\/env\s+)?(\/bin\/|\/usr\/bin\/)?(ba|da)?sh\b/.test(f.content)) {
      scripts.push({ name: f.path, script: f.content });
    }
  }
  return scripts;
}

/** shellcheck at its default severity (style and up); the shell comes from the shebang. */
export function shellcheck(script: string): CheckResult {
  const r = run("shellcheck", ["-"], script);
  return { ok: r.status === 0, output: `${r.stdout}${r.stderr}` };
}

/** Both validators over one user-data document; the problems, or an empty list. */
export function cloudConfigProblems(userData: string): string[] {
  const problems: string[] = [];
  if (!userData.startsWith("#cloud-config\n")) problems.push("does not start with #cloud-config");
  const schema = cloudInitSchema(userData);
  if (!schema.ok) problems.push(`cloud-init schema: ${schema.output}`);
  for (const s of embeddedScripts(userData)) {
    const check = shellcheck(s.script);
    if (!check.ok) problems.push(`shellcheck ${s.name}: ${check.output}`);
  }
  return problems;
}
