// A rehearsal stack's state, one directory per stack, as the Pulumi CLI stand-in keeps it: the
// stack's config, the resources of its last deployment (their inputs, as the plan of the real program
// gives them), what the deployment learnt that no plan knows (the floating IP's address, what each
// Command printed), the stack outputs, and the history of updates.
import { execFile } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { PlannedResource } from "../../infra/offline-engine.js";
import type { StackConfig } from "../stack-config.js";

/** Where the stand-in finds the stacks' states (set for the campaign's process by the rehearsal). */
export const STATE_ENV = "TESTBED_REHEARSAL_STACKS";

export type KnownState = Record<string, Record<string, unknown>>;

export interface UpdateRecord {
  readonly version: number;
  readonly kind: "update";
  readonly startTime: string;
  readonly endTime: string;
  readonly message: string;
  readonly environment: Record<string, string>;
  readonly config: Record<string, never>;
  readonly result: "succeeded" | "failed";
  readonly resourceChanges: Record<string, number>;
  /** The stack outputs after the update (what the tests read of each step). */
  readonly outputs?: Record<string, unknown>;
}

export interface PlanResult {
  readonly resources: PlannedResource[];
  readonly outputs: Record<string, unknown>;
}

function write(file: string, value: unknown): void {
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(value), { mode: 0o600 });
  renameSync(tmp, file);
}

function read<T>(file: string, fallback: T): T {
  return existsSync(file) ? (JSON.parse(readFileSync(file, "utf8")) as T) : fallback;
}

export class StackState {
  constructor(
    readonly name: string,
    readonly dir: string,
  ) {}

  static in(root: string, name: string): StackState {
    return new StackState(name, path.join(root, name));
  }

  exists(): boolean {
    return existsSync(path.join(this.dir, "config.json"));
  }

  create(config: StackConfig): void {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    write(path.join(this.dir, "config.json"), config);
  }

  config(): StackConfig {
    return read(path.join(this.dir, "config.json"), {});
  }
  setConfig(key: string, value: string, secret: boolean): void {
    write(path.join(this.dir, "config.json"), { ...this.config(), [key]: { value, secret } });
  }

  resources(): PlannedResource[] {
    return read(path.join(this.dir, "resources.json"), []);
  }
  setResources(r: readonly PlannedResource[]): void {
    write(path.join(this.dir, "resources.json"), r);
  }

  known(): KnownState {
    return read(path.join(this.dir, "known.json"), {});
  }
  setKnown(k: KnownState): void {
    write(path.join(this.dir, "known.json"), k);
  }

  outputs(): Record<string, unknown> {
    return read(path.join(this.dir, "outputs.json"), {});
  }
  setOutputs(o: Record<string, unknown>): void {
    write(path.join(this.dir, "outputs.json"), o);
  }

  /** Newest first, as `pulumi stack history` lists them. */
  history(): UpdateRecord[] {
    return read(path.join(this.dir, "history.json"), []);
  }
  addHistory(r: Omit<UpdateRecord, "version">): UpdateRecord {
    const history = this.history();
    const record = { version: (history[0]?.version ?? 0) + 1, ...r };
    write(path.join(this.dir, "history.json"), [record, ...history]);
    return record;
  }

  get knownHostsFile(): string {
    return path.join(this.dir, "known_hosts");
  }
}

const PLAN_CHILD = fileURLToPath(new URL("./plan-child.ts", import.meta.url));
const CHECKOUT = fileURLToPath(new URL("../../", import.meta.url));

/**
 * Plans the real program (infra/index.ts) offline for a config, with what the deployment knows of
 * some resources (infra/offline-engine.ts knownState). In a child process: Pulumi's runtime state
 * is per process.
 */
export async function planStack(stack: string, config: StackConfig, known: KnownState): Promise<PlanResult> {
  const dir = mkdtempSync(path.join(tmpdir(), "testbed-rehearsal-plan-"));
  try {
    const request = path.join(dir, "request.json");
    const result = path.join(dir, "result.json");
    writeFileSync(
      request,
      JSON.stringify({
        stack,
        config: Object.fromEntries(Object.entries(config).map(([k, v]) => [k, v.value])),
        secretKeys: Object.entries(config).filter(([, v]) => v.secret).map(([k]) => k),
        knownState: known,
      }),
      { mode: 0o600 },
    );
    await new Promise<void>((resolve, reject) =>
      execFile(process.execPath, ["--import", "tsx/esm", PLAN_CHILD, request, result], { cwd: CHECKOUT, maxBuffer: 64 << 20 }, (err, _stdout, stderr) =>
        err ? reject(new Error(`planning stack ${stack} failed: ${stderr.trim() || err.message}`)) : resolve(),
      ),
    );
    return JSON.parse(readFileSync(result, "utf8")) as PlanResult;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
