// Files the program puts on hosts. Each goes through one CopyToRemote with its content as a string
// asset, under REMOTE_ARTIFACT_ROOT/<artifact path>; `testbed plan --out DIR` writes the same file at
// DIR/<artifact path>, so what a plan shows is byte for byte what a deployment uploads.
import { createHash } from "node:crypto";
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import * as command from "@pulumi/command";

/** Created by cloud-init on every host, owned by the SSH user. */
export const REMOTE_ARTIFACT_ROOT = "/opt/testbed";

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

export function uploadArtifact(name: string, args: ArtifactUploadArgs, opts: pulumi.CustomResourceOptions): command.remote.CopyToRemote {
  return new command.remote.CopyToRemote(
    name,
    {
      connection: args.connection,
      source: pulumi.output(args.content).apply((text) => new pulumi.asset.StringAsset(text)),
      // No triggers: new content is an update, which pulumi-command copies again in place (it compares
      // the asset's hash); a trigger would replace the upload for the same effect.
      remotePath: remoteArtifactPath(args.artifactPath),
    },
    opts,
  );
}

export function contentHash(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}
