// Starts a local Neutron, prints {"pid", "dir"} and waits: the test kills this process outright.
import { startLocalNeutron } from "../../infra/neutron/local-server.js";

const neutron = await startLocalNeutron();
console.log(JSON.stringify({ pid: neutron.pid, dir: neutron.dir }));
setInterval(() => {}, 60_000);
