// The committed "iptables" stack's OpenStack lab, on the real program under the mocked engine.
import { describeOpenStackStack } from "./openstack-stack-checks.js";

describeOpenStackStack("iptables");
