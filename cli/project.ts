// Where the project is and how to start `testbed` again in a child process, the same whether this
// module runs from its TypeScript source (`npm run testbed`, tests: tsx) or compiled (the `testbed`
// bin: dist/cli/, plain JavaScript).
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const HERE = fileURLToPath(import.meta.url);

/** The nearest folder at or above `from` with a package.json: the checkout, for cli/ and for dist/cli/ alike. */
export function packageRoot(from: string): string {
  for (let dir = from; ; dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, "package.json"))) return dir;
    if (path.dirname(dir) === dir) throw new Error(`no package.json at or above ${from}`);
  }
}

/** The project's checkout: Pulumi.yaml and the stack files live here. */
export const PROJECT_DIR = packageRoot(path.dirname(HERE));

/** The version in package.json, as `testbed --version` prints it. */
export function projectVersion(): string {
  return (JSON.parse(readFileSync(path.join(PROJECT_DIR, "package.json"), "utf8")) as { version: string }).version;
}

/**
 * Node's arguments that start `testbed ARGS...` in a child process: the compiled entry when this
 * module is compiled, the TypeScript entry through tsx's loader when it runs from source.
 */
export function testbedChildArgs(args: readonly string[]): string[] {
  const ext = path.extname(HERE);
  const main = path.join(path.dirname(HERE), `main${ext}`);
  return [...(ext === ".ts" ? ["--import", "tsx/esm"] : []), main, ...args];
}
