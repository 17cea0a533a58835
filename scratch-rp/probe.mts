import { rehearsalStackConfig } from "../rehearsal/stack-config.js";
import { planStack } from "../rehearsal/pulumi/state.js";
import { probeHosts } from "../rehearsal/environment.js";
import { LAB_PROFILES } from "../lab/profiles.js";
import { CHECKOUT } from "../rehearsal/hosts.js";
import { STACK_PROBES } from "../infra/setup-probe.js";
for (const paths of [undefined, ["nodeport-local","nodeport-remote","clusterip"]] as const) {
const config = rehearsalStackConfig({ dataplane: "iptables", profile: LAB_PROFILES.smoke, operatorAddress: "198.18.3.1", sshPublicKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ8q5FzJ9Nw2u0Q3kX7o1rY4mVb2cT6eH8sLdPfGhKjM x", sshPrivateKey: "x", projectDir: CHECKOUT, ...(paths ? {paths} : {}) });
const p = await planStack("rehearse-iptables", config, {});
for (const s of STACK_PROBES) console.log(s.output, probeHosts(p.resources, s.probe.binary));
}
