import { rehearsalStackConfig } from "../rehearsal/stack-config.js";
import { planStack } from "../rehearsal/pulumi/state.js";
import { LAB_PROFILES } from "../lab/profiles.js";
import { CHECKOUT } from "../rehearsal/hosts.js";
const config = rehearsalStackConfig({ dataplane: "iptables", profile: LAB_PROFILES.smoke, operatorAddress: "198.18.3.1", sshPublicKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ8q5FzJ9Nw2u0Q3kX7o1rY4mVb2cT6eH8sLdPfGhKjM x", sshPrivateKey: "x", projectDir: CHECKOUT, paths: ["nodeport-local","nodeport-remote","clusterip"] });
const p = await planStack("rehearse-iptables", config, {});
console.log(JSON.stringify(p.outputs.nodes), JSON.stringify(p.outputs.hostAddresses?.["worker-2"] ?? Object.keys(p.outputs.hostAddresses)));
console.log(p.resources.filter(r => r.type.startsWith("command:")).map(r => `${r.type} ${r.name} ${r.options?.parent}`).join("\n"));
console.log(JSON.stringify(p.outputs.ditgPaths, null, 1).slice(0, 3000));
