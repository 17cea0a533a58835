// "When each step became measurable": for every prepared (dataplane, Service count) step, how long
// after the change every Service had a ready endpoint and the dataplane held exactly the step's
// Services, and how many it held per family (the store's step records, StepReadiness). A step that
// was never found with exactly its Services was not measured, so every row here has programmedServices
// equal to services; the table shows what a step cost to reach, and that the gate held.
import { stringify } from "csv-stringify/sync";
import { DATAPLANES, FAMILIES } from "../scenario/schema.js";
import type { StepRecord } from "./types.js";

export interface StepsReport {
  readonly csv: string;
  readonly markdown: readonly string[];
}

const seconds = (x: number) => (Number.isInteger(x) ? String(x) : x.toFixed(x < 10 ? 2 : 1));

/** Pure: steps.csv (`dataplane,family,services,endpointsReadyAfterS,programmedAfterS,programmedServices`) and the report's section. */
export function stepsReport(steps: readonly StepRecord[]): StepsReport | undefined {
  if (steps.length === 0) return undefined;
  const ordered = [...steps].sort(
    (a, b) => DATAPLANES.indexOf(a.dataplane) - DATAPLANES.indexOf(b.dataplane) || a.services - b.services || (a.preparedAt < b.preparedAt ? -1 : 1),
  );
  const rows = ordered.flatMap((s) =>
    FAMILIES.filter((f) => s.programmedServices[f] !== undefined).map((f) => [s.dataplane, f, s.services, s.endpointsReadyAfterS, s.programmedAfterS, s.programmedServices[f]!]),
  );
  const csv = stringify(rows, { header: true, columns: ["dataplane", "family", "services", "endpointsReadyAfterS", "programmedAfterS", "programmedServices"] });
  const markdown = [
    "## When each step became measurable",
    "",
    "Each time a campaign brought a dataplane to a Service count: seconds from the change until every Service had a ready endpoint, and until the worker's dataplane held exactly the step's Services (counted where the dataplane keeps them: kube-proxy's rules, its nftables maps, the eBPF service map), and how many it held per family. A step whose worker held more or fewer Services was not measured.",
    "",
    "| dataplane | Services | endpoints ready (s) | programmed (s) | held per family |",
    "| --- | ---: | ---: | ---: | --- |",
    ...ordered.map(
      (s) =>
        `| ${s.dataplane} | ${s.services} | ${seconds(s.endpointsReadyAfterS)} | ${seconds(s.programmedAfterS)} | ${FAMILIES.filter((f) => s.programmedServices[f] !== undefined)
          .map((f) => `${f} ${s.programmedServices[f]}`)
          .join(", ")} |`,
    ),
    "",
  ];
  return { csv, markdown };
}
