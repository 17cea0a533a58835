// What tc shows on the probes' hooks, read back in one batch per namespace (pure: tc's JSON as it
// prints it; the kernel suites attach and detach the probes for real).
import { describe, expect, it } from "vitest";
import { shownPrefs } from "../../lab/hops/hop-probes.js";

describe("shownPrefs", () => {
  it("reads one filter list per hook, in the batch's order, each priority once", () => {
    // tc 6.1 `-j -batch` of three `filter show` lines: a probe and the eBPF dataplane's filter, nothing, a hook without a qdisc.
    const output = [
      '[{"protocol":"all","pref":1,"kind":"bpf","chain":0},{"protocol":"all","pref":1,"kind":"bpf","chain":0,"options":{"handle":"0x1","bpf_name":"hf_uplink_in","direct-action":true}},{"protocol":"all","pref":49152,"kind":"bpf","chain":0},{"protocol":"all","pref":49152,"kind":"bpf","chain":0,"options":{"handle":"0x1"}}]',
      "[]",
      "[]",
      "",
    ].join("\n");
    expect(shownPrefs(output, 3)).toEqual([[1, 49152], [], []]);
  });

  it("refuses output that does not hold one list per hook", () => {
    expect(() => shownPrefs("[]\n", 2)).toThrow(/tc showed 1 filter lists for 2 hooks/);
    expect(() => shownPrefs("Error: Cannot find device\n[]\n", 2)).toThrow(SyntaxError);
  });
});
