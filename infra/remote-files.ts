// Files the program puts on hosts. Each goes through one CopyToRemote under
// REMOTE_ARTIFACT_ROOT/<artifact path>; `testbed plan --out DIR` writes the same file at
// DIR/<artifact path>, so what a plan shows is byte for byte what a deployment uploads.
//
// Two ways to hand a file to the CopyToRemote, by size:
// - uploadArtifact: the content as a string asset. The state keeps it whole, as an input and as an
//   output of the resource, in every checkpoint: right for the small files (kubeadm and Cilium
//   configuration), which `testbed diff` then shows line by line.
// - uploadArtifactByHash: the content as a file the program writes into a local cache
//   (ARTIFACT_CACHE_DIR, named by its sha256), handed over as a file asset. The state keeps the
//   file's path and hash only: the Service manifest of a 10000-Service step is about 5 MB, which the
//   state would otherwise carry twice through every checkpoint of every `pulumi up`.
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import * as pulumi from "@pulumi/pulumi";
import * as command from "@pulumi/command";

/** Created by cloud-init on every host, owned by the SSH user. */
export const REMOTE_ARTIFACT_ROOT = "/opt/testbed";

/** Where uploadArtifactByHash keeps the files it uploads: in the checkout, ignored by git. */
export const ARTIFACT_CACHE_DIR = path.resolve(fileURLToPath(new URL("..", import.meta.url)), ".testbed/artifacts");
/** Cached files not written for this long are removed; any run of the program writes back what it uploads. */
export const ARTIFACT_CACHE_DAYS = 14;

export interface ArtifactUploadArgs {
  readonly connection: pulumi.Input<command.types.input.remote.ConnectionArgs>;
  /** Relative path, e.g. "kubeadm/init.yaml"; also the path under `plan --out`. */
  readonly artifactPath: string;
  readonly content: pulumi.Input<string>;
}

export function remoteArtifactPath(artifactPath: string): string {
  if (path.isAbsolute(artifactPath) || artifactPath.split("/").includes("..")) {
    throw new Error(`artifact path "${artifactPath}" must be relative and stay below ${REMOTE_ARTIFACT_ROOT}`);
  }
  return `${REMOTE_ARTIFACT_ROOT}/${artifactPath}`;
}

/** The upload of a small file: the state keeps its content. */
export function uploadArtifact(name: string, args: ArtifactUploadArgs, opts: pulumi.CustomResourceOptions): command.remote.CopyToRemote {
  return copyToRemote(name, args, pulumi.output(args.content).apply((text) => new pulumi.asset.StringAsset(text)), opts);
}

/** The upload of a large file: the state keeps its cached path and hash (cachedArtifactFile). */
export function uploadArtifactByHash(name: string, args: ArtifactUploadArgs, opts: pulumi.CustomResourceOptions, cacheDir = ARTIFACT_CACHE_DIR): command.remote.CopyToRemote {
  const source = pulumi.output(args.content).apply((text) => new pulumi.asset.FileAsset(cachedArtifactFile(text, args.artifactPath, cacheDir)));
  return copyToRemote(name, args, source, opts);
}

function copyToRemote(name: string, args: ArtifactUploadArgs, source: pulumi.Input<pulumi.asset.Asset>, opts: pulumi.CustomResourceOptions): command.remote.CopyToRemote {
  return new command.remote.CopyToRemote(
    name,
    {
      connection: args.connection,
      source,
      // No triggers: new content is an update, which pulumi-command copies again in place (it compares
      // the asset's hash); a trigger would replace the upload for the same effect.
      remotePath: remoteArtifactPath(args.artifactPath),
    },
    opts,
  );
}

/**
 * Writes the content to <cacheDir>/<sha256>/<file name> (once; later runs only refresh its time) and
 * returns that path. Named by content, so two stacks planned at once never write one path with two
 * contents. Entries not written for ARTIFACT_CACHE_DAYS go.
 */
export function cachedArtifactFile(content: string, artifactPath: string, cacheDir = ARTIFACT_CACHE_DIR, now = Date.now()): string {
  const hash = contentHash(content);
  const dir = path.join(cacheDir, hash);
  const file = path.join(dir, path.basename(artifactPath));
  fs.mkdirSync(dir, { recursive: true });
  const written = fs.existsSync(file) && fs.statSync(file).size === Buffer.byteLength(content) && contentHash(fs.readFileSync(file, "utf8")) === hash;
  if (!written) {
    const partial = `${file}.${process.pid}.partial`;
    fs.writeFileSync(partial, content);
    fs.renameSync(partial, file);
  }
  const stamp = new Date(now);
  fs.utimesSync(dir, stamp, stamp);
  pruneArtifactCache(cacheDir, now);
  return file;
}

/** Removes the cache's entries whose directory was last written more than ARTIFACT_CACHE_DAYS ago. */
export function pruneArtifactCache(cacheDir: string, now = Date.now()): string[] {
  const removed: string[] = [];
  for (const entry of fs.readdirSync(cacheDir, { withFileTypes: true })) {
    if (!entry.isDirectory() || !/^[0-9a-f]{64}$/.test(entry.name)) continue;
    const dir = path.join(cacheDir, entry.name);
    if (now - fs.statSync(dir).mtimeMs > ARTIFACT_CACHE_DAYS * 86_400_000) {
      fs.rmSync(dir, { recursive: true, force: true });
      removed.push(dir);
    }
  }
  return removed;
}

export function contentHash(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}
