// The paper capped every virtual link at 500 Mbit/s. Here a Neutron QoS bandwidth-limit policy at
// testbed:linkMbps, in both directions, on every port of the measured path.
import * as pulumi from "@pulumi/pulumi";
import * as openstack from "@pulumi/openstack";
import { CONFIG_NAMESPACE } from "../../scenario/schema.js";

export interface BandwidthLimit {
  /** Neutron's view: egress leaves the VM, ingress enters it. */
  readonly direction: "egress" | "ingress";
  readonly maxKbps: number;
  readonly maxBurstKbps: number;
}

/**
 * Neutron's guidance for TCP: a burst of 80% of the rate, or the shaper's bucket empties faster
 * than TCP can ramp up and the flow never reaches the cap. Ingress limits need the
 * `qos-bw-limit-direction` API extension (Neutron Pike and later).
 * 0 Mbit/s means no cap: no rules at all.
 */
export function bandwidthLimits(linkMbps: number): BandwidthLimit[] {
  if (linkMbps === 0) return [];
  const maxKbps = Math.round(linkMbps * 1000);
  if (maxKbps < 1) throw new Error(`${CONFIG_NAMESPACE}:linkMbps ${linkMbps} is below 1 kbit/s; accepted: 0 (no cap) or at least 0.001`);
  const maxBurstKbps = Math.max(1, Math.round(maxKbps * 0.8));
  return (["egress", "ingress"] as const).map((direction) => ({ direction, maxKbps, maxBurstKbps }));
}

export interface LinkQosArgs {
  readonly linkMbps: number;
}

/** The policy and its rules; ports that take `policyId` should also depend on `rules`. */
export class LinkQos extends pulumi.ComponentResource {
  readonly policyId: pulumi.Output<string>;
  readonly rules: openstack.networking.QosBandwidthLimitRule[];

  constructor(name: string, args: LinkQosArgs, opts?: pulumi.ComponentResourceOptions) {
    super("testbed:openstack:LinkQos", name, {}, opts);
    const limits = bandwidthLimits(args.linkMbps);
    if (limits.length === 0) throw new Error("LinkQos needs a cap above 0 Mbit/s; with testbed:linkMbps 0 the lab declares no policy");
    const policy = new openstack.networking.QosPolicy(
      `${name}-policy`,
      { name: "testbed-link-cap", description: `Every link of the measured path at ${args.linkMbps} Mbit/s, as in the paper` },
      { parent: this },
    );
    this.rules = limits.map(
      (limit) =>
        new openstack.networking.QosBandwidthLimitRule(
          `${name}-${limit.direction}`,
          { qosPolicyId: policy.id, direction: limit.direction, maxKbps: limit.maxKbps, maxBurstKbps: limit.maxBurstKbps },
          { parent: this },
        ),
    );
    this.policyId = policy.id;
    this.registerOutputs({ policyId: this.policyId });
  }
}
