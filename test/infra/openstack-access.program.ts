// A Pulumi program that builds only the OpenStack lab, with cloud-init parts from "another layer",
// and exports what the layers above receive (HostAccess), so a test can look at it.
import * as pulumi from "@pulumi/pulumi";
import { loadConfig } from "../../infra/config.js";
import { HOST_ROLES } from "../../infra/hosts.js";
import { OpenStackLab } from "../../infra/openstack/lab.js";

const { scenario, sshPrivateKey } = loadConfig();
const lab = new OpenStackLab("lab", {
  scenario,
  sshPrivateKey,
  stack: pulumi.getStack(),
  cloudInitParts: {
    master: [{ packages: ["etcd-client"], runcmd: [["touch", "/var/lib/master-part"]] }],
    worker: [{ runcmd: [["touch", "/var/lib/worker-part"]] }],
  },
});

export const connections = Object.fromEntries(HOST_ROLES.map((r) => [r, lab.hosts[r].connection]));
export const addresses = Object.fromEntries(HOST_ROLES.map((r) => [r, lab.hosts[r].addresses]));
export const interfaces = Object.fromEntries(HOST_ROLES.map((r) => [r, lab.hosts[r].interfaces]));
export const serverUrns = Object.fromEntries(HOST_ROLES.map((r) => [r, lab.hosts[r].server.urn]));
export const bastionAddress = lab.bastionAddress;
