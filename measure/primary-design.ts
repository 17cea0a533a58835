// The comparisons a campaign is sized to answer, declared before it runs: one ratio statistic of one
// run profile at the largest step, every dataplane against the baseline, per family, with the runs
// those tests need for the power asked (statistics.ts runsForPower). The lab's profiles and the
// cloud's campaigns declare the same design (README, "Primary and exploratory comparisons").
import type { Dataplane } from "../scenario/schema.js";
import type { CampaignDefinition, PrimaryComparisons } from "./campaign-plan.js";
import { runsForPower } from "./statistics.js";
import type { RunProfile } from "./types.js";

/**
 * The primary comparisons of a profile: at its largest step, one ratio statistic of one run profile,
 * every dataplane against the baseline, per family; and what they must be able to show. The runs
 * their cells get follow from it (runsForPower): `primaryComparisons` computes them for the dataplanes
 * and families a campaign runs.
 */
export interface PrimaryDesign {
  readonly profile: RunProfile;
  /** A ratio statistic of the report (RATIO_DEFINITIONS): "mean" is the mean handshake time of connection setup. */
  readonly statistic: string;
  /** The smallest difference against the baseline worth showing, as a fraction (0.15: a ratio of 0.85 or 1/0.85). */
  readonly minimumEffect: number;
  /** Run-to-run coefficient of variation of the tested per-run value, as measured on a busy 2-core host. */
  readonly runCv: number;
  readonly power: number;
  /** Family-wise error rate over the primary comparisons. */
  readonly alpha: number;
}

/**
 * The question the default and paper profiles are sized to answer: is a dataplane's connection setup
 * at the largest step at least a fifth faster or slower than iptables'? Mean handshake time per run,
 * in both families. The run-to-run coefficient of variation of that mean was 0.06 to 0.14 (median
 * 0.09) over eight interleaved rounds at 10000 Services on the project's busy 2-core host; 0.12 leaves
 * room for a busier one.
 */
export const SETUP_PRIMARY_DESIGN: PrimaryDesign = { profile: "setup", statistic: "mean", minimumEffect: 0.2, runCv: 0.12, power: 0.9, alpha: 0.05 };

/**
 * The primary comparisons of a campaign from the profile's design: at the campaign's largest step,
 * each dataplane against the baseline in each family, with the runs those tests need. None when the
 * campaign does not run the design's profile or has nothing to compare.
 */
export function primaryComparisons(
  design: PrimaryDesign | undefined,
  campaign: Pick<CampaignDefinition, "dataplanes" | "families" | "profiles" | "services">,
  baseline: Dataplane,
): PrimaryComparisons | undefined {
  if (!design || !campaign.profiles.includes(design.profile) || !campaign.dataplanes.includes(baseline) || campaign.dataplanes.length < 2) return undefined;
  const tests = (campaign.dataplanes.length - 1) * campaign.families.length;
  const { minimumEffect, runCv, power, alpha } = design;
  return {
    profile: design.profile,
    services: Math.max(...campaign.services),
    statistic: design.statistic,
    baseline,
    runs: runsForPower({ alpha, tests, power, minimumEffect, runCv }),
    design: { alpha, power, minimumEffect, runCv },
  };
}
