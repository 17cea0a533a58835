// How large one checkpoint of a stack's state is, estimated from an offline plan. The engine keeps
// each resource's inputs and its outputs, and for this program's commands and copies the outputs
// repeat the inputs (plus a command's stdout), so a checkpoint holds about twice the inputs. The
// offline engine writes a file asset as its path and hash, as the engine keeps it, and a string
// asset as its whole text. Every `pulumi up` writes such a checkpoint after each resource it changes.
import { assetText, type PlannedResource } from "./offline-engine.js";

/** Bytes of a checkpoint: the serialized inputs of every resource, twice. */
export function checkpointBytes(resources: readonly PlannedResource[]): number {
  return resources.reduce((sum, r) => sum + 2 * Buffer.byteLength(JSON.stringify(r.inputs)), 0);
}

/** The same plan with every file asset as a string asset: what the state held before uploads went by hash. */
export function withTextAssets(resources: readonly PlannedResource[]): PlannedResource[] {
  return resources.map((r) => {
    const source = r.inputs.source as { $file?: unknown } | undefined;
    if (r.type !== "command:remote:CopyToRemote" || typeof source?.$file !== "string") return r;
    return { ...r, inputs: { ...r.inputs, source: { $text: assetText(source) } } };
  });
}
