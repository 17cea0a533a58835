import { describe, expect, it } from "vitest";
import { cellsText, countOf, joinAnd, servicesList, servicesText } from "../../measure/report-words.js";
import type { CellKey } from "../../measure/report.js";

const cell = (profile: string, family: CellKey["family"], dataplane: CellKey["dataplane"], services: number): CellKey => ({ profile, family, dataplane, services });

describe("the report's words", () => {
  it("counts with the noun's number", () => {
    expect([countOf(1, "run"), countOf(0, "run"), countOf(2, "step")]).toEqual(["1 run", "0 runs", "2 steps"]);
    expect([servicesText(1), servicesText(1000)]).toEqual(["1 Service", "1000 Services"]);
    expect([servicesList([1]), servicesList([1, 2000]), servicesList([1, 1000, 2000])]).toEqual(["1 Service", "1 and 2000 Services", "1, 1000 and 2000 Services"]);
    expect([joinAnd([]), joinAnd(["a"]), joinAnd(["a", "b"]), joinAnd(["a", "b", "c"])]).toEqual(["", "a", "a and b", "a, b and c"]);
  });

  it("names one cell, and every combination of profiles, families, dataplanes and Service counts in one part", () => {
    expect(cellsText([cell("latency", "ipv4", "ebpf", 1)])).toBe("latency ipv4: ebpf at 1 Service");
    const all = ["latency", "setup"].flatMap((p) =>
      (["ipv4", "ipv6"] as const).flatMap((f) => (["iptables", "nftables", "ebpf"] as const).flatMap((d) => [1, 2000].map((n) => cell(p, f, d, n)))),
    );
    expect(cellsText(all)).toBe("latency and setup, ipv4 and ipv6: iptables, nftables and ebpf at 1 and 2000 Services");
    // Families and dataplanes in the registries' order and Service counts ascending, whatever the order of the cells.
    expect(cellsText([...all].reverse())).toBe("setup and latency, ipv4 and ipv6: iptables, nftables and ebpf at 1 and 2000 Services");
  });

  it("never names a combination the set does not hold", () => {
    // Cartesian words ("latency and setup; ipv4 and ipv6; ...") would claim setup ipv4 iptables and more.
    const cells = [cell("latency", "ipv4", "ebpf", 1), cell("latency", "ipv6", "ebpf", 1), cell("setup", "ipv4", "ebpf", 1), cell("setup", "ipv6", "ebpf", 1), cell("setup", "ipv6", "iptables", 1)];
    expect(cellsText(cells)).toBe("latency, ipv4 and ipv6: ebpf at 1 Service; setup ipv4: ebpf at 1 Service; setup ipv6: iptables and ebpf at 1 Service");
    expect(cellsText([cell("latency", "ipv4", "ebpf", 1), cell("latency", "ipv4", "iptables", 2000)])).toBe("latency ipv4: iptables at 2000 Services, ebpf at 1 Service");
    expect(cellsText([cell("latency", "ipv4", "ebpf", 1), cell("setup", "ipv6", "iptables", 2000)])).toBe("latency ipv4: ebpf at 1 Service; setup ipv6: iptables at 2000 Services");
  });
});
