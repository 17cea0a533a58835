// The committed "nftables" stack's OpenStack lab (Ubuntu 22.04), on the real program under the mocked engine.
import { describeOpenStackStack } from "./openstack-stack-checks.js";

describeOpenStackStack("nftables");
