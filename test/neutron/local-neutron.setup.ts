// One real Neutron API server for every suite under test/neutron in a vitest run: started before
// the first of them, stopped (with all its workers) after the last. Suites read its URL with
// inject("neutronUrl"). The operator's external network exists before any suite starts, so that
// suites running side by side never race to create it.
import type { TestProject } from "vitest/node";
import { NeutronApi, freshIdentity } from "../../infra/neutron/api.js";
import { startLocalNeutron } from "../../infra/neutron/local-server.js";
import { ensureExternalNetworks } from "../../infra/neutron/replay.js";

declare module "vitest" {
  export interface ProvidedContext {
    neutronUrl: string;
    neutronPid: number;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const neutron = await startLocalNeutron();
  try {
    await ensureExternalNetworks(new NeutronApi(neutron.url, freshIdentity("admin")), ["public"]);
  } catch (err) {
    await neutron.stop();
    throw err;
  }
  project.provide("neutronUrl", neutron.url);
  project.provide("neutronPid", neutron.pid);
  return () => neutron.stop();
}
