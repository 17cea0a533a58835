// The Pulumi program (infra/index.ts) with its engine calls recorded: runOffline runs this module in
// place of the program when a replay needs dependencies. The hook must be in place before the program
// declares its first resource, hence the dynamic import.
import { recordEngineCalls } from "./engine-recording.js";

recordEngineCalls();
await import("../index.js");
