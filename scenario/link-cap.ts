// The paper's link cap (testbed:linkMbps) as tc commands on one interface. The local lab runs them
// in its namespaces, and the cloud lab's guests run them on their measured NICs (linkShaping guest),
// so both backends cap a link the same way.

export const SHAPERS = ["tbf", "htb"] as const;
export type Shaper = (typeof SHAPERS)[number];

/** Pure: the tc commands (argument arrays) that cap egress of one interface at `mbps`. */
export function shapingCommands(ifname: string, shaper: Shaper, mbps: number): string[][] {
  const bitsPerSecond = Math.round(mbps * 1e6);
  // Enough tokens for 4 ms at full rate, and never less than two 64 KiB GSO super-packets,
  // which tbf would otherwise split or drop.
  const burstBytes = Math.max(Math.ceil((bitsPerSecond / 8) * 0.004), 2 * 65536);
  const rate = `${bitsPerSecond}bit`;
  if (shaper === "tbf") {
    return [["tc", "qdisc", "replace", "dev", ifname, "root", "tbf", "rate", rate, "burst", String(burstBytes), "latency", "50ms"]];
  }
  return [
    ["tc", "qdisc", "replace", "dev", ifname, "root", "handle", "1:", "htb", "default", "1"],
    ["tc", "class", "replace", "dev", ifname, "parent", "1:", "classid", "1:1", "htb", "rate", rate, "ceil", rate,
      "burst", String(burstBytes), "cburst", String(burstBytes)],
  ];
}
