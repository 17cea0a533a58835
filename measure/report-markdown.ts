// The report's summary in words (report.md): the primary comparisons, what each dataplane shows
// against the baseline and what it does not, the paper's ratio beside ours, the number of runs
// behind every group, the method, and the warnings.
import { DATAPLANE_DESCRIPTIONS, DATAPLANES, FAMILIES, type Dataplane } from "../scenario/schema.js";
import type { CellStatistics, Report, RatioRow, Verdict } from "./report.js";
import { hasPaths, ONE_WAY_DELAY_METRIC, PACKET_DELAY_METRIC, pathsOf, profileKind, RATIO_DEFINITIONS } from "./report.js";
import { PATHS } from "../scenario/paths.js";
import { pathOf } from "./types.js";
import { countOf, joinAnd, servicesList, servicesText } from "./report-words.js";
import { oneWayMarkdown, validityMarkdown } from "./report-validity.js";

type Parts = Omit<Report, "markdown">;

/** Three significant digits, "n/a" when missing, "inf" for an unbounded interval end. */
export function fmt(x: number | undefined): string {
  if (x === undefined || Number.isNaN(x)) return "n/a";
  if (!Number.isFinite(x)) return x > 0 ? "inf" : "-inf";
  return String(Number(x.toPrecision(3)));
}

export function fmtP(p: number): string {
  if (Number.isNaN(p)) return "n/a";
  if (p < 0.001) return p < 1e-12 ? "<1e-12" : p.toExponential(1);
  return p.toFixed(3);
}

const ci = (low: number, high: number) => `[${fmt(low)}, ${fmt(high)}]`;

const STATISTIC_NAME: Record<string, string> = { std: "standard deviation", max: "maximum" };

/**
 * What each profile measures, said where report.md first names it. A profile without an entry is named as it is;
 * a new profile adds its words here.
 */
export const PROFILE_MEANINGS: Readonly<Record<string, string>> = {
  throughput: "**throughput**, one long D-ITG flow per run through the Service, read as its receiver's average bitrate",
  latency: "**latency**, one D-ITG flow per run at a constant packet rate through the Service, read as each packet's round trip",
  setup: "**setup**, connection setup: many new TCP connections per run through the Service, each timed from its SYN to the SYN-ACK's return (the handshake, where kube-proxy's rules are walked), a metric the paper lacks",
};

/** A ratio's cell value as a reader reads it: delays in µs (the statistics are in ms), the rest in their unit. */
function cellValue(value: number, unit: string): string {
  return unit === "ms" ? `${fmt(value * 1000)} µs` : `${fmt(value)} ${unit}`;
}

function paperTableName(rows: RatioRow[]): string | undefined {
  return rows.find((r) => r.paper)?.paper?.table;
}

/** The reading of a row: its own interval, or the robust companion's where that interval is unreliable. */
const readingOf = (r: RatioRow) => (r.intervalReliable ? r.verdict : r.robustVerdict);

/** A verdict in words: "nftables lower", "no difference shown". */
const verdictText = (dataplane: Dataplane, verdict: Verdict) => (verdict === "lower" || verdict === "higher" ? `${dataplane} ${verdict}` : verdict);

/** The dataplanes compared with the baseline in these rows, in the registry's order. */
const comparedIn = (rows: readonly RatioRow[]) => DATAPLANES.filter((d) => rows.some((r) => r.dataplane === d));

/**
 * How many of a number of steps a set of rows holds, and their Service counts: "2 of 4: 1000 and 5000 Services", or
 * "none of 4"; a declared primary comparison among them is marked "(primary)", or "(5000 primary)" beside others.
 */
function stepsOf(rows: readonly RatioRow[], of: number): string {
  if (rows.length === 0) return `none of ${of}`;
  const primary = rows.filter((r) => r.role === "primary").map((r) => r.services);
  const mark = primary.length === 0 ? "" : primary.length === rows.length ? " (primary)" : ` (${joinAnd(primary.map(String))} primary)`;
  return `${rows.length} of ${of}: ${servicesList(rows.map((r) => r.services))}${mark}`;
}

/**
 * The Summary: one row per metric (profile), statistic, family and dataplane: at which steps (Service counts) the
 * dataplane's interval lies below or above the baseline's, and at which the rank test holds after Holm's correction.
 * The paper's column counts the steps whose published ratio lies inside ours, where the paper has the statistic.
 */
function summaryTable(parts: Parts): string[] {
  const withPaths = hasPaths(parts.ratios);
  const lines = [
    `|${withPaths ? " path |" : ""} metric | statistic | family | dataplane against baseline | steps lower | steps higher | significant steps (Holm, alpha ${parts.settings.alpha}) | paper's ratio inside our interval |`,
    `|${withPaths ? " --- |" : ""} --- | --- | --- | --- | --- | --- | --- | --- |`,
  ];
  for (const path of pathsOf(parts.ratios)) {
  const ratios = parts.ratios.filter((r) => pathOf(r) === path);
  for (const profile of [...new Set(ratios.map((r) => r.profile))]) {
    for (const statistic of [...new Set(ratios.filter((r) => r.profile === profile).map((r) => r.statistic))]) {
      for (const family of FAMILIES) {
        for (const dataplane of comparedIn(ratios)) {
          const rows = ratios.filter((r) => r.profile === profile && r.statistic === statistic && r.family === family && r.dataplane === dataplane);
          if (rows.length === 0) continue;
          const first = rows[0]!;
          const name = first.intervalReliable ? STATISTIC_NAME[statistic] ?? statistic : `${STATISTIC_NAME[statistic] ?? statistic} (read by the ${first.robustName})`;
          const withPaper = rows.filter((r) => r.paper);
          const inside = withPaper.filter((r) => r.paper!.ratio >= r.ratio.low && r.paper!.ratio <= r.ratio.high);
          const paper = withPaper.length === 0 ? "" : first.intervalReliable ? `${inside.length} of ${withPaper.length}` : "(interval unreliable)";
          lines.push(
            `|${withPaths ? ` ${path} |` : ""} ${profile} | ${name} | ${family} | ${dataplane} / ${first.baseline} | ${stepsOf(rows.filter((r) => readingOf(r) === "lower"), rows.length)} | ${stepsOf(rows.filter((r) => readingOf(r) === "higher"), rows.length)} | ${stepsOf(rows.filter((r) => r.significant), rows.length)} | ${paper} |`,
          );
        }
      }
    }
  }
  }
  return lines;
}

/**
 * Per Service path, in words: at each profile, family and step, which dataplane is faster (the lowest mean
 * per-packet delay, or the highest mean throughput over runs) and by how much against the baseline, with the
 * reading of the mean delay's interval where the report has it. Only for reports beyond the paper's path.
 */
function pathSection(parts: Parts): string[] {
  if (!hasPaths(parts.cells)) return [];
  const s = parts.settings;
  const out = [
    "## Which dataplane is faster, per path",
    "",
    `Per path, profile, family and step: the dataplane with the lowest mean per-packet delay (delay profiles) or the highest mean throughput over runs, its value, and each dataplane's against ${s.baseline}. The ratio's ${Math.round(s.confidence * 100)}% interval and reading are those of the mean's ratio above (delay profiles); where the time goes on each path is in the section of the hop probes.`,
    "",
  ];
  for (const path of pathsOf(parts.cells)) {
    out.push(`### ${path}`, "", `${PATHS[path].description}.`, "", "| profile | family | Services | faster | mean | against the baseline |", "| --- | --- | ---: | --- | ---: | --- |");
    const cells = parts.cells.filter((c) => pathOf(c) === path && c.metric === (profileKind(c.profile) === "throughput" ? "throughputMbps" : PACKET_DELAY_METRIC));
    const steps = [...new Map(cells.map((c) => [`${c.profile}/${c.family}/${c.services}`, c])).values()];
    for (const step of steps) {
      const of = cells.filter((c) => c.profile === step.profile && c.family === step.family && c.services === step.services && Number.isFinite(c.mean));
      if (of.length === 0) continue;
      const higherIsFaster = profileKind(step.profile) === "throughput";
      const best = of.reduce((a, b) => ((higherIsFaster ? b.mean > a.mean : b.mean < a.mean) ? b : a));
      const base = of.find((c) => c.dataplane === s.baseline);
      const against = (c: CellStatistics) => {
        const ratio = parts.ratios.find((r) => pathOf(r) === path && r.statistic === "mean" && r.profile === c.profile && r.family === c.family && r.services === c.services && r.dataplane === c.dataplane);
        const change = base && c !== base ? `${c.dataplane} ${fmt(c.mean / base.mean)}x` : undefined;
        return change === undefined ? undefined : ratio ? `${change} ${ci(ratio.ratio.low, ratio.ratio.high)}, ${verdictText(c.dataplane, readingOf(ratio))}` : change;
      };
      const unit = best.unit === "ms" ? (x: number) => cellValue(x, "ms") : (x: number) => `${fmt(x)} ${best.unit}`;
      const others = of.map(against).filter((x): x is string => x !== undefined);
      out.push(`| ${step.profile} | ${step.family} | ${step.services} | **${best.dataplane}**${of.length === 1 ? " (alone)" : ""} | ${unit(best.mean)} | ${base ? others.join("; ") || `${s.baseline} itself` : `no ${s.baseline} runs`} |`);
    }
    out.push("");
  }
  return out;
}

/** One line per primary comparison: both cells' values, their ratio, its reading and its test. */
function primarySection(parts: Parts): string[] {
  const p = parts.settings.primary;
  const s = parts.settings;
  if (!p) return ["- The campaign declared no primary comparisons: every test below is exploratory."];
  const rows = parts.ratios.filter((r) => r.role === "primary");
  const design = p.design;
  const head = `The campaign declared, before it ran, ${p.profile} at ${servicesText(p.services)}, the ${STATISTIC_NAME[p.statistic] ?? p.statistic} of each dataplane against ${p.baseline}, per family, as its primary comparisons${hasPaths(parts.ratios) ? " (on each Service path measured)" : ""}, and gave each of their cells ${p.runs} runs: enough for a power of ${design.power} to show a difference of ${Math.round(design.minimumEffect * 100)}% at a run-to-run coefficient of variation of ${design.runCv} (Mann-Whitney, Noether's sample size, Holm at alpha ${design.alpha} over the comparisons). Holm's correction here counts these ${parts.tests.primary} tests only.`;
  if (rows.length === 0) return [`- ${head} None of them could be tested in this report (see the warnings).`];
  return [
    head,
    "",
    ...rows.map(
      (r) =>
        `- **${r.path ? `${r.path}, ` : ""}${r.family}, ${r.dataplane}/${r.baseline}:** ${STATISTIC_NAME[r.statistic] ?? r.statistic} ${cellValue(r.value, r.unit)} (${r.dataplane}) against ${cellValue(r.baselineValue, r.unit)} (${r.baseline}): ratio ${fmt(r.ratio.estimate)} ${ci(r.ratio.low, r.ratio.high)}, ${verdictText(r.dataplane, readingOf(r))}; rank test on ${r.testDescribes}: p = ${fmtP(r.pValue)}, ${fmtP(r.pHolm)} after Holm over the primary tests${r.significant ? `, **significant** at alpha ${s.alpha}` : `, not significant at alpha ${s.alpha}`} (${r.n} and ${r.nBaseline} runs, Cliff's delta ${fmt(r.cliffsDelta)}).`,
    ),
  ];
}

function ratioTable(rows: RatioRow[]): string[] {
  const robust = rows[0]!.robustName;
  // The ratio as the round-trip meter reads the same runs, where they kept its readings (D-ITG B15).
  const meter = rows.some((r) => r.meterRatio !== undefined);
  const lines = [
    `| Services | dataplane | paper | ratio | 95% CI | reading | test | p (Holm) | Cliff's delta | ${robust} ratio [95% CI] | n / n ${rows[0]!.baseline} |${meter ? " meter's ratio (ITGDec) |" : ""}`,
    `| ---: | --- | ---: | ---: | :---: | --- | --- | ---: | ---: | ---: | ---: |${meter ? " ---: |" : ""}`,
  ];
  for (const r of rows) {
    lines.push(
      `| ${r.services} | ${r.dataplane} | ${r.paper ? fmt(r.paper.ratio) : ""} | ${fmt(r.ratio.estimate)} | ${ci(r.ratio.low, r.ratio.high)} | ${r.intervalReliable ? verdictText(r.dataplane, r.verdict) : `(${verdictText(r.dataplane, r.verdict)}: interval unreliable)`} | ${r.role} | ${fmtP(r.pHolm)}${r.significant ? " *" : ""} | ${fmt(r.cliffsDelta)} | ${fmt(r.robust.estimate)} ${ci(r.robust.low, r.robust.high)}${r.intervalReliable ? "" : ` ${verdictText(r.dataplane, r.robustVerdict)}`} | ${r.n} / ${r.nBaseline} |${meter ? ` ${fmt(r.meterRatio)} |` : ""}`,
    );
  }
  return lines;
}

/** Where each delay profile's delays come from, in one method bullet. */
function delaySourceLine(parts: Parts): string[] {
  if (parts.delaySources.length === 0) return [];
  const of = parts.delaySources.map((d) => {
    const total = d.paired + d.sender + d.unrecorded;
    const kinds = [
      d.paired ? `${d.paired} exact round trips from the paired sender and receiver logs` : "",
      d.sender ? `${d.sender} as the measured log holds them` : "",
      d.unrecorded ? `${d.unrecorded} stored before exact round trips (the meter's own)` : "",
    ].filter(Boolean);
    return `${d.profile}: ${kinds.join(", ")} (of ${total} runs)`;
  });
  const paired = parts.delaySources.some((d) => d.paired > 0);
  return [
    `- **Delays:** ${of.join("; ")}. D-ITG's round-trip meter mis-stamps every echo that returns after the next packet left (B15${paired ? ", see the measurement validity section" : ""}); exact round trips take each packet's send stamp from the receiver's log instead${paired ? ", and every delay statistic, table and figure of a paired run comes from them" : ""}.`,
  ];
}

function runsTable(parts: Parts): string[] {
  const dataplanes = DATAPLANES.filter((d) => parts.counts.some((c) => c.dataplane === d));
  const withPaths = hasPaths(parts.counts);
  const lines = [
    `|${withPaths ? " path |" : ""} profile | family | Services | ${dataplanes.map((d) => `${d} runs (failed)`).join(" | ")} |`,
    `|${withPaths ? " --- |" : ""} --- | --- | ---: | ${dataplanes.map(() => "---:").join(" | ")} |`,
  ];
  const steps = new Map<string, { path: string; profile: string; family: string; services: number; runs: Map<Dataplane, string> }>();
  for (const c of parts.counts) {
    const id = `${pathOf(c)}/${c.profile}/${c.family}/${c.services}`;
    const step = steps.get(id) ?? { path: pathOf(c), profile: c.profile, family: c.family, services: c.services, runs: new Map() };
    step.runs.set(c.dataplane, `${c.ok}${c.failed ? ` (${c.failed})` : ""}`);
    steps.set(id, step);
  }
  for (const s of steps.values()) lines.push(`|${withPaths ? ` ${s.path} |` : ""} ${s.profile} | ${s.family} | ${s.services} | ${dataplanes.map((d) => s.runs.get(d) ?? "0").join(" | ")} |`);
  return lines;
}

function methodSection(parts: Parts): string[] {
  const s = parts.settings;
  const delayProfiles = [...new Set(parts.counts.map((c) => c.profile))].filter((p) => profileKind(p) === "delay");
  const lines = [
    "## How the numbers are computed",
    "",
    "- **Unit of analysis, throughput:** the run. Each run gives one value, the receiver's average bitrate over its flow (ITGDec's average bitrate); min, max, mean, median, standard deviation, p99 and p99.9 are taken over the runs of a group (with 100 runs the p99 and p99.9 sit next to the maximum).",
    `- **Unit of analysis, ${delayProfiles.length ? delayProfiles.join(", ") : "latency"} (delay profiles):** the latency maximum and standard deviation are per-packet statistics, as ITGDec prints them, over all packets of all runs of a group: the worst packet, and the pooled per-packet standard deviation (population, exact from each run's packet count, mean and standard deviation). Pooled median, p99 and p99.9 come from the runs' merged HDR histograms (within 0.1%). Packets of one run are not independent, so every interval and test below resamples or ranks **runs**, never packets. Per-run values (each run's mean, p99, max, standard deviation, jitter, loss) are in cells.csv with observation \`run\`; the standard deviation across runs of the per-run mean delay is the alternative reading of the paper's latency standard deviation.`,
    "- **Standard deviations:** across runs, the sample standard deviation (divisor n - 1); over packets, the population standard deviation (divisor n, as ITGDec; with millions of packets the two agree).",
    `- **Ratios** are each dataplane over the baseline, ${s.baseline} (\`report --baseline\` chooses it). Each has a ${Math.round(s.confidence * 100)}% **percentile bootstrap** interval: ${s.resamples} resamples, each drawing runs with replacement independently within the dataplane's group and within the baseline's group; the interval is the ${fmt((1 - s.confidence) / 2)} and ${fmt(1 - (1 - s.confidence) / 2)} quantiles of the resampled ratios. The generator (xoroshiro128+) is seeded with ${s.seed} mixed with the comparison's name, so every number is reproducible and does not move when other groups are added. An interval that contains 1 reads **no difference shown** (not: no difference).`,
    `- **Rank test:** two-sided Mann-Whitney U of a dataplane's runs against the baseline's (exact without ties for small groups, otherwise the normal approximation with tie and continuity corrections), on per-run values chosen per statistic: ${RATIO_DEFINITIONS.map((d) => `${d.kind} ${d.statistic}: ${d.test.describes}`).join("; ")}. **Effect size:** Cliff's delta = P(dataplane > baseline) - P(dataplane < baseline) on those values. **Multiple comparisons:** ${
      parts.tests.primary > 0
        ? `Holm's step-down correction twice, each at a family-wise error rate of ${s.alpha}: over the ${parts.tests.primary} **primary** comparisons (declared by the campaign before it ran and sized for them, see the summary) alone, and over the ${parts.tests.exploratory} other, **exploratory** tests together. An exploratory result suggests where to look next; only the primary ones answer the question the campaign was sized for`
        : `Holm's step-down correction over all ${parts.tests.exploratory} tests of this report (family-wise error rate ${s.alpha}); the campaign declared no primary comparisons, so every test is exploratory`
    }; * marks p (Holm) < ${s.alpha}.`,
    "- **The maximum is unstable:** a sample maximum is one observation and one stray packet decides it; its bootstrap interval is unreliable too (a resampled maximum never exceeds the observed one, so the interval hugs the estimate). Its interval is shown but marked unreliable, and the reading of a maximum comes from its robust companion, the median over runs of each run's p99 delay, beside the rank test on per-run maxima.",
    `- **Robust companions:** ${RATIO_DEFINITIONS.map((d) => `${d.kind} ${d.statistic}: ${d.robust.describes}`).join("; ")}.`,
    ...delaySourceLine(parts),
  ];
  return lines;
}

export function renderMarkdown(parts: Parts): string {
  const s = parts.settings;
  const totalRuns = parts.counts.reduce((sum, c) => sum + c.ok + c.failed + c.withoutSummary, 0);
  const analysed = parts.counts.reduce((sum, c) => sum + c.ok, 0);
  const measured = DATAPLANES.filter((d) => parts.counts.some((c) => c.dataplane === d));
  const others = measured.filter((d) => d !== s.baseline);
  const profilesMeasured = [...new Set(parts.counts.map((c) => c.profile))];
  const out: string[] = [
    `# Service dataplanes against ${s.baseline}: measurement report`,
    "",
    `${measured.map((d) => `**${d}**: ${DATAPLANE_DESCRIPTIONS[d]}`).join("; ")}. ${others.length === 0 ? "No other dataplane was measured" : others.length === 1 ? `${others[0]} is compared` : `${joinAnd(others)} are each compared`} with the baseline, ${s.baseline}.`,
    "",
    `What was measured, per profile: ${profilesMeasured.map((p) => PROFILE_MEANINGS[p] ?? `**${p}**`).join("; ")}. A step is one Service count; a group (or cell) is the runs of one profile, family, step and dataplane.`,
    "",
    `${s.campaignId ? `Campaign \`${s.campaignId}\`${s.backend ? ` (backend ${s.backend})` : ""}. ` : ""}${analysed} of ${countOf(totalRuns, "run")} analysed. Seed ${s.seed}, ${s.resamples} bootstrap resamples, ${Math.round(s.confidence * 100)}% percentile intervals, Holm over ${parts.tests.primary} primary and, separately, ${parts.tests.exploratory} exploratory rank tests at alpha ${s.alpha}.`,
    "",
    "## Primary comparisons",
    "",
    ...primarySection(parts),
    "",
    "## Summary (exploratory unless marked primary)",
    "",
  ];
  const profiles = [...new Set(parts.ratios.map((r) => r.profile))];
  if (profiles.length === 0) out.push(`- No step has runs of ${s.baseline} and another dataplane: there is no ratio to report.`);
  else {
    out.push(
      `One row per metric, statistic, family and dataplane: the steps (Service counts) at which the ratio's ${Math.round(s.confidence * 100)}% interval lies below 1 (lower than ${s.baseline}) or above 1 (higher); at the others it contains 1 (no difference shown). Then the steps at which the rank test is significant after Holm's correction. A declared primary comparison's step is marked (primary). A maximum is read by its robust companion, since its own interval is unreliable.`,
      "",
      ...summaryTable(parts),
    );
  }
  out.push(...pathSection(parts));
  out.push("", "## Warnings", "");
  if (parts.warnings.length === 0) out.push("None.");
  else out.push(...parts.warnings.map((w) => `- ${w}`));
  out.push("", "## Runs analysed per group", "", ...runsTable(parts), "", ...methodSection(parts), "");

  const withPaths = hasPaths(parts.ratios);
  for (const path of pathsOf(parts.ratios)) {
  for (const profile of profiles) {
    for (const statistic of [...new Set(parts.ratios.filter((r) => r.profile === profile).map((r) => r.statistic))]) {
      for (const family of FAMILIES) {
        const rows = parts.ratios.filter((r) => pathOf(r) === path && r.profile === profile && r.statistic === statistic && r.family === family);
        if (rows.length === 0) continue;
        const table = paperTableName(rows);
        out.push(
          `## ${withPaths ? `${path}: ` : ""}${profile}, ${family}: ratio of the ${STATISTIC_NAME[statistic] ?? statistic} against ${s.baseline}${table ? ` (paper's ${table}, eBPF/iptables)` : ""}`,
          "",
          `${rows[0]!.describes[0]!.toUpperCase()}${rows[0]!.describes.slice(1)}. Rank test on ${rows[0]!.testDescribes}.`,
          "",
          ...ratioTable(rows),
          "",
        );
      }
    }
  }
  }

  out.push(
    ...validityMarkdown(parts.validity, { rows: parts.ratios.filter((r) => profileKind(r.profile) === "delay") }, fmt, s.confidence),
    ...oneWayMarkdown(parts.cells, { oneWay: ONE_WAY_DELAY_METRIC, roundTrip: PACKET_DELAY_METRIC }, fmt),
  );
  out.push(...(parts.hops ?? []));
  out.push(...(parts.programming ?? []));
  out.push(...(parts.steps ?? []));
  out.push("## Figures", "");
  for (const f of parts.figures) out.push(`- ${f.title}: ![${f.file}](${f.file})`);
  out.push("", "## Tables", "");
  for (const t of parts.tables) out.push(`- [${t.file}](${t.file}): ${t.title}`);
  out.push("");
  return out.join("\n");
}
