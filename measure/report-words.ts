// Words of the report: counts with their noun, lists joined as a sentence joins them, and a set of cells named by
// what it spans, so that report.md never says "1 Services" or "step(s)".
import { DATAPLANES, FAMILIES } from "../scenario/schema.js";
import type { CellKey } from "./report.js";
import { DEFAULT_PATH, SERVICE_PATHS } from "../scenario/paths.js";

/** "3 runs", "1 run": a count with its noun. */
export function countOf(n: number, singular: string, plural = `${singular}s`): string {
  return `${n} ${n === 1 ? singular : plural}`;
}

/** "1 Service", "1000 Services". */
export const servicesText = (n: number) => countOf(n, "Service");

/** "a", "a and b", "a, b and c". */
export function joinAnd(items: readonly string[]): string {
  return items.length <= 1 ? (items[0] ?? "") : `${items.slice(0, -1).join(", ")} and ${items.at(-1)}`;
}

/** Items grouped by a key, in the order of their first appearance. */
function groupedBy<T>(items: readonly T[], key: (item: T) => string): { key: string; items: T[] }[] {
  const groups = new Map<string, T[]>();
  for (const item of items) groups.set(key(item), [...(groups.get(key(item)) ?? []), item]);
  return [...groups].map(([k, v]) => ({ key: k, items: v }));
}

/**
 * A set of cells in few words, and exactly: every name it gives stands for cells the set holds. Dataplanes with the
 * same Service counts are named together ("iptables and ebpf at 1 and 2000 Services, nftables at 1 Service"), so are
 * the families, then the profiles, whose cells read alike ("latency and setup, ipv4 and ipv6: ..."); parts that
 * differ are joined by "; ". Profiles come in the order of the cells, families and dataplanes in the registries'.
 */
export function cellsText(cells: readonly CellKey[]): string {
  // Cells beyond the paper's path are named path by path ("clusterip: latency ipv4: ebpf at 1 Service").
  if (cells.some((c) => c.path !== undefined)) {
    return SERVICE_PATHS.filter((p) => cells.some((c) => (c.path ?? DEFAULT_PATH) === p))
      .map((p) => `${p}: ${cellsText(cells.filter((c) => (c.path ?? DEFAULT_PATH) === p).map(({ path: _, ...key }) => key))}`)
      .join("; ");
  }
  const distinct = <T>(of: readonly CellKey[], pick: (c: CellKey) => T) => [...new Set(of.map(pick))];
  /** One profile's and family's cells: its dataplanes, grouped by their Service counts. */
  const dataplanesText = (of: readonly CellKey[]) => {
    const countsOf = (d: string) => servicesList(distinct(of.filter((c) => c.dataplane === d), (c) => c.services).sort((a, b) => a - b));
    const present = DATAPLANES.filter((d) => of.some((c) => c.dataplane === d));
    return groupedBy(present, countsOf).map((g) => `${joinAnd(g.items)} at ${g.key}`).join(", ");
  };
  /** One profile's cells: its families, grouped by what their dataplanes read, each as [families, dataplanes]. */
  const familiesOf = (of: readonly CellKey[]) =>
    groupedBy(FAMILIES.filter((f) => of.some((c) => c.family === f)), (f) => dataplanesText(of.filter((c) => c.family === f))).map((g) => [g.items, g.key] as const);
  const byProfile = groupedBy(distinct(cells, (c) => c.profile), (p) => JSON.stringify(familiesOf(cells.filter((c) => c.profile === p))));
  return byProfile
    .flatMap(({ items: profiles, key }) =>
      (JSON.parse(key) as [string[], string][]).map(([families, dataplanes]) => {
        const head = [joinAnd(profiles), joinAnd(families)].join(profiles.length > 1 || families.length > 1 ? ", " : " ");
        return `${head}: ${dataplanes}`;
      }),
    )
    .join("; ");
}

/** "1 Service", "1 and 2000 Services". */
export function servicesList(services: readonly number[]): string {
  return services.length === 1 ? servicesText(services[0]!) : `${joinAnd(services.map(String))} Services`;
}
