// What the lab's traffic tests accept from a loaded 2-core host: a flow that ITGSend could not send at
// its full rate, when nothing it sent was lost and its records span the flow (measure/ditg-commands.ts
// shortfallReason). Such a flow still crossed the dataplane, the decoder and the store.
import type { FlowVerdict } from "../../measure/ditg-commands.js";

export const BUSY_HOST = /^ITGSend could not hold its rate: .*, none lost on the path$/;

/** A verdict of a flow that crossed the pipeline whole: ok, or short only because the host was busy. */
export function crossedWhole(verdict: FlowVerdict): boolean {
  return verdict.ok || BUSY_HOST.test(verdict.reason);
}
