// The kernel side of the socket load balancer (sock-lb.c): built beside the tc load balancer, its
// cgroup hooks attached to the client pod's cgroup by sock-lb-attach.c, on the maps the tc programs
// pinned. Cilium attaches bpf_sock.o at the node's root cgroup, so that every pod's and the host's
// sockets are balanced; the lab attaches at its client pod's cgroup only, because other lab runs
// and programs on this host share the root cgroup.
import { existsSync, mkdirSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { exec, run } from "../../netns.js";

const SOURCE_DIR = fileURLToPath(new URL("./", import.meta.url));
export const SOCK_LB_SOURCE = "sock-lb.c";
const ATTACH_SOURCE = "sock-lb-attach.c";

/** The hooks of sock-lb.c by program name, and the attach type `bpftool cgroup show` names each by. */
export const SOCK_LB_HOOKS = {
  sock4_connect: "cgroup_inet4_connect",
  sock6_connect: "cgroup_inet6_connect",
  sock4_sendmsg: "cgroup_udp4_sendmsg",
  sock6_sendmsg: "cgroup_udp6_sendmsg",
  sock4_recvmsg: "cgroup_udp4_recvmsg",
  sock6_recvmsg: "cgroup_udp6_recvmsg",
  sock4_getpeername: "cgroup_inet4_getpeername",
  sock6_getpeername: "cgroup_inet6_getpeername",
} as const;

/** Pinned names of the socket load balancer's own maps (lb-maps.h), per family. */
export const SOCK_LB_MAPS = { reverseSk: { ipv4: "lb4_reverse_sk", ipv6: "lb6_reverse_sk" } } as const;

/** Pure: the clang command that builds the attach tool (a host program linked with libbpf). */
export function attachToolCompileCommand(output: string): string[] {
  return ["clang", "-O2", "-Wall", "-o", output, join(SOURCE_DIR, ATTACH_SOURCE), "-lbpf"];
}

/** One hook as the kernel shows it on the cgroup. */
export interface AttachedHook {
  readonly id: number;
  readonly attachType: string;
  readonly name: string;
}

export class SocketLoadBalancer {
  constructor(
    /** The cgroup v2 directory the hooks go on. */
    readonly cgroup: string,
    /** sock-lb.o, compiled with the tc object's map sizes. */
    private readonly object: string,
    private readonly attachTool: string,
    /** Where the tc loader pinned the shared maps: <bpffs>/tc/globals. */
    private readonly pinRoot: string,
    /** Where the hooks' links are pinned: removing a pin detaches its hook. */
    readonly linkDir: string,
  ) {}

  /** Attaches every hook (the maps must be pinned already). A failed attach leaves none attached. */
  attach(): void {
    mkdirSync(this.linkDir, { recursive: true });
    const out = run([this.attachTool, this.object, this.pinRoot, this.cgroup, this.linkDir]);
    const expected = Object.keys(SOCK_LB_HOOKS).length;
    if (out.trim() !== `ok ${expected}`) {
      this.detach();
      throw new Error(`socket load balancer: attached "${out.trim()}" to ${this.cgroup}; expected ok ${expected}`);
    }
  }

  /** Detaches every hook by removing its link's pin. */
  detach(): void {
    if (!existsSync(this.linkDir)) return;
    for (const name of readdirSync(this.linkDir)) rmSync(join(this.linkDir, name));
  }

  /** The hooks the kernel shows on the cgroup (none once the cgroup is gone). */
  attached(): AttachedHook[] {
    if (!existsSync(this.cgroup)) return [];
    const result = exec(["bpftool", "-j", "cgroup", "show", this.cgroup]);
    if (result.status !== 0) throw new Error(`bpftool cgroup show ${this.cgroup}: ${result.stderr.trim()}`);
    const hooks = JSON.parse(result.stdout.trim() || "[]") as { id: number; attach_type: string; name: string }[];
    return hooks.map((h) => ({ id: h.id, attachType: h.attach_type, name: h.name }));
  }
}
