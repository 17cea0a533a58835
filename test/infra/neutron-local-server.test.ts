// The local Neutron's files and process bookkeeping, without starting it (test/neutron/ starts it).
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { descendantPids, headerContextApiPaste, missingNeutronParts, neutronConfig, neutronUnavailable, NEUTRON_SERVER, STOCK_API_PASTE } from "../../infra/neutron/local-server.js";

const pipeline = (ini: string, section: string, key: string) => {
  const lines = ini.split("\n");
  const start = lines.indexOf(`[${section}]`);
  const line = lines.slice(start + 1).find((l) => l.startsWith(`${key} =`));
  return line?.slice(line.indexOf("=") + 1).trim().split(/\s+/);
};

describe("the api-paste.ini of the local Neutron", () => {
  const stock = fs.readFileSync(STOCK_API_PASTE, "utf8");
  const ours = headerContextApiPaste(stock);

  it("builds the request context from the identity headers: the keystone pipeline without token validation", () => {
    const keystone = pipeline(stock, "composite:neutronapi_v2_0", "keystone")!;
    expect(pipeline(ours, "composite:neutronapi_v2_0", "noauth")).toEqual(keystone.filter((f) => f !== "authtoken"));
    expect(pipeline(ours, "composite:neutronapi_v2_0", "noauth")).toContain("keystonecontext");
    expect(pipeline(ours, "composite:neutronapi_v2_0", "noauth")).not.toContain("fake_project_id");
  });

  it("changes that one line and nothing else", () => {
    const changed = ours.split("\n").filter((l, i) => l !== stock.split("\n")[i]);
    expect(changed).toHaveLength(1);
    expect(changed[0]).toMatch(/^noauth = /);
    // The version document's noauth pipeline (its own section) stays stock.
    expect(pipeline(ours, "composite:neutronversions_composite", "noauth")).toEqual(pipeline(stock, "composite:neutronversions_composite", "noauth"));
  });

  it("refuses a file it cannot rewrite, naming what is missing", () => {
    expect(() => headerContextApiPaste("[app:x]\nuse = y\n")).toThrow(/has no \[composite:neutronapi_v2_0\] section/);
    expect(() => headerContextApiPaste("[composite:neutronapi_v2_0]\nnoauth = a b\nkeystone = a b c\n")).toThrow(/has no authtoken and keystonecontext filters/);
  });
});

describe("neutronConfig", () => {
  it("puts every path under the server's directory and binds to loopback on the given port", () => {
    const files = neutronConfig("/tmp/n1", 40123);
    expect(files["neutron.conf"]).toMatch(/^bind_host = 127\.0\.0\.1$/m);
    expect(files["neutron.conf"]).toMatch(/^bind_port = 40123$/m);
    const paths = files["neutron.conf"]
      .split("\n")
      .filter((l) => !l.startsWith("#"))
      .join(" ")
      .split(/\s+/)
      .map((t) => t.replace(/^sqlite:\/\/\//, ""))
      .filter((t) => t.startsWith("/"));
    expect(paths.length).toBeGreaterThan(3);
    for (const p of paths) expect(p.startsWith("/tmp/n1/")).toBe(true);
  });
});

describe("process bookkeeping", () => {
  it("finds every descendant from /proc, deepest first, even with spaces and parentheses in command names", () => {
    const proc = fs.mkdtempSync(path.join(os.tmpdir(), "testbed-proc-"));
    try {
      const stat = (pid: number, comm: string, ppid: number) => {
        fs.mkdirSync(path.join(proc, String(pid)));
        fs.writeFileSync(path.join(proc, String(pid), "stat"), `${pid} (${comm}) S ${ppid} ${pid} 0 0 -1\n`);
      };
      stat(100, "neutron-server", 1);
      stat(101, "neutron-server: api worker (x)", 100);
      stat(102, "rpc) S 100", 100);
      stat(103, "child of api", 101);
      stat(200, "unrelated", 1);
      fs.mkdirSync(path.join(proc, "self"));
      expect(descendantPids(100, proc)).toEqual([103, 101, 102]);
      expect(descendantPids(200, proc)).toEqual([]);
    } finally {
      fs.rmSync(proc, { recursive: true, force: true });
    }
  });

  it("names the missing parts of the installation and says how to install them", () => {
    expect(missingNeutronParts((p) => p !== NEUTRON_SERVER)).toEqual([NEUTRON_SERVER]);
    expect(missingNeutronParts(() => true)).toEqual([]);
    expect(neutronUnavailable(() => true)).toBeUndefined();
    const message = neutronUnavailable((p) => p !== NEUTRON_SERVER)!;
    expect(message).toContain(`no local Neutron: ${NEUTRON_SERVER} not found`);
    expect(message).toContain("apt-get install --no-install-recommends neutron-server");
    expect(message).toContain("policy-rc.d that exits 101");
  });
});
