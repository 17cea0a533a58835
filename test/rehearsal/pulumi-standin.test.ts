// The Pulumi CLI stand-in answering the real Automation API, as `testbed campaign --stack` drives it
// (backends/cloud-transport.ts PulumiStack): selecting the stack, its config with the secret in clear,
// its outputs with secrets marked, an update with nothing to change, and an update the rehearsal
// cannot carry out, refused before anything runs. (Updates that run over SSH: test/lab/rehearse-*.)
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PulumiStack } from "../../backends/cloud-transport.js";
import { resourceKey } from "../../infra/lifecycle.js";
import { LAB_PROFILES } from "../../lab/profiles.js";
import { entryScript } from "../../rehearsal/environment.js";
import { CHECKOUT } from "../../rehearsal/hosts.js";
import { planStack, STATE_ENV, StackState } from "../../rehearsal/pulumi/state.js";
import { rehearsalStackConfig } from "../../rehearsal/stack-config.js";

const KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ8q5FzJ9Nw2u0Q3kX7o1rY4mVb2cT6eH8sLdPfGhKjM test";
const PRIVATE = "-----BEGIN OPENSSH PRIVATE KEY-----\nnot-a-real-key\n-----END OPENSSH PRIVATE KEY-----\n";
const STACK = "rehearse-iptables";

let dir: string;
let state: StackState;
let before: string;

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), "testbed-standin-"));
  const config = rehearsalStackConfig({ dataplane: "iptables", profile: LAB_PROFILES.smoke, operatorAddress: "198.18.3.1", sshPublicKey: KEY, sshPrivateKey: PRIVATE, projectDir: CHECKOUT });
  const draft = await planStack(STACK, config, {});
  const fip = draft.resources.find((r) => r.type === "openstack:networking/floatingIp:FloatingIp")!;
  const known = { [resourceKey(fip)]: { address: "198.18.3.10" } };
  const deployed = await planStack(STACK, config, known);
  state = StackState.in(path.join(dir, "stacks"), STACK);
  state.create(config);
  state.setResources(deployed.resources);
  state.setKnown(known);
  state.setOutputs(deployed.outputs);
  before = JSON.stringify(deployed.resources);
  writeFileSync(path.join(dir, "pulumi"), entryScript("rehearsal/pulumi/cli.ts"), { mode: 0o755 });
  process.env.PATH = `${dir}:${process.env.PATH}`;
  process.env[STATE_ENV] = path.join(dir, "stacks");
}, 300_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("the Pulumi CLI stand-in under the Automation API", () => {
  it("selects an existing stack and refuses one it does not hold, as the CLI does", async () => {
    await expect(PulumiStack.select(STACK, dir)).resolves.toBeDefined();
    await expect(PulumiStack.select("rehearse-nothing", dir)).rejects.toThrow(/stack rehearse-nothing does not exist/);
  });

  it("lists the config with the secret key in clear, marked secret, and the outputs with the real program's values", async () => {
    const stack = await PulumiStack.select(STACK, dir);
    const config = await stack.config();
    expect(config["testbed:services"]).toEqual({ value: "1", secret: false });
    expect(config["testbed:sshPrivateKey"]).toEqual({ value: PRIVATE, secret: true });
    const outputs = await stack.outputs();
    expect(outputs.bastionAddress).toEqual({ value: "198.18.3.10", secret: false });
    expect(outputs.masterAddress?.value).toBe("198.19.0.13");
    expect(outputs.kubeconfig?.secret).toBe(true);
    expect(typeof outputs.kubeconfig?.value).toBe("string");
  });

  it("runs an update with nothing to change without touching a host, and records it", async () => {
    const stack = await PulumiStack.select(STACK, dir);
    await stack.setServices(1);
    expect(state.history()[0]).toMatchObject({ result: "succeeded", resourceChanges: { same: expect.any(Number) } });
    expect(Object.keys(state.history()[0]!.resourceChanges)).toEqual(["same"]);
    expect(JSON.stringify(state.resources())).toBe(before);
  }, 300_000);

  it("refuses an update that would change the hosts (a new link cap is new user data), before anything runs", async () => {
    const stack = await PulumiStack.select(STACK, dir);
    state.setConfig("testbed:linkMbps", "50", false);
    const error = await stack.setServices(1).catch((e: Error) => e);
    expect(error).toBeInstanceOf(Error);
    expect((error as Error).message).toMatch(/the rehearsal cannot carry out this update: it would (update|replace) openstack:compute\/instance:Instance::lab-servers-/);
    expect((error as Error).message).toMatch(/Nothing was changed/);
    expect(JSON.stringify(state.resources())).toBe(before);
    state.setConfig("testbed:linkMbps", "100", false);
  }, 300_000);

  it("answers only the commands the Automation API runs, and says so for any other", async () => {
    const { execFileSync } = await import("node:child_process");
    const run = (...args: string[]) => {
      try {
        return { code: 0, out: execFileSync(path.join(dir, "pulumi"), args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }) };
      } catch (e) {
        return { code: (e as { status: number }).status, out: String((e as { stderr: string }).stderr) };
      }
    };
    expect(run("version").out).toMatch(/^v3\.\d+\.\d+/);
    expect(run("stack", "output", "--json", "--stack", STACK).out).toMatch(/"kubeconfig": "\[secret\]"/);
    expect(run("destroy", "--yes", "--stack", STACK)).toMatchObject({ code: 1, out: expect.stringMatching(/does not answer `pulumi destroy/) });
  });
});
