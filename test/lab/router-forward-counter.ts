// Counts what the router forwards from worker 2's uplink, by where it goes: toward worker 1's uplink
// (the datacenter link) or straight toward the client (the access link). Worker 1's uplink receives
// from worker 2 only through the router, so `toWorker1` is what of worker 2's traffic crossed worker
// 1's uplink. Named nftables counters in the router's namespace; remove() deletes the table.
import type { LabTopology } from "../../lab/topology.js";

const TABLE = "dptb_forward_count";

export interface ForwardCounter {
  read(): { toWorker1: number; toClient: number };
  remove(): void;
}

export function countRouterForwards(topology: LabTopology, worker = 2): ForwardCounter {
  const { links } = topology.plan;
  const fromWorker = `${topology.prefix}-rw${worker}`;
  topology.run("router", ["nft", "-f", "-"], {
    input: [
      `table inet ${TABLE} {`,
      "  counter to_worker1 {}",
      "  counter to_client {}",
      "  chain forward {",
      "    type filter hook forward priority 0; policy accept;",
      `    iifname "${fromWorker}" oifname "${links.datacenter.gateway.ifname}" counter name "to_worker1"`,
      `    iifname "${fromWorker}" oifname "${links.access.gateway.ifname}" counter name "to_client"`,
      "  }",
      "}",
    ].join("\n"),
  });
  const packets = (name: string) => Number(/packets (\d+)/.exec(topology.run("router", ["nft", "list", "counter", "inet", TABLE, name]))?.[1]);
  return {
    read: () => ({ toWorker1: packets("to_worker1"), toClient: packets("to_client") }),
    remove: () => void topology.exec("router", ["nft", "delete", "table", "inet", TABLE]),
  };
}
