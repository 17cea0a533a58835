// The Service dataplanes of the lab's worker, one module each behind one interface, chosen by the
// scenario's dataplane enum through LAB_DATAPLANES. The lab backend drives them through this
// interface only: set up for a step, step aside for another, say what of it is on the packet path,
// count what it installed, tear down. A fourth dataplane is one more module here.
import type { Dataplane } from "../../scenario/schema.js";
import type { LabDataplaneModule } from "./types.js";
import { ebpf } from "./ebpf/module.js";
import { iptables } from "./iptables/module.js";
import { nftables } from "./nftables/module.js";

export type * from "./types.js";

export const LAB_DATAPLANES: Readonly<Record<Dataplane, LabDataplaneModule>> = { iptables, nftables, ebpf };

export function labDataplane(name: Dataplane): LabDataplaneModule {
  return LAB_DATAPLANES[name];
}
