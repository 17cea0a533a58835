// A small client of Neutron's v2.0 API that acts as one identity. Against the local server
// (local-server.ts) the identity headers become the request context, so a request runs as a
// member or an admin of a project under Neutron's own policies.
import { randomUUID } from "node:crypto";

/** How long a request may take before it is abandoned: longer than the local server's SQLite lock wait. */
const REQUEST_TIMEOUT_MS = 300_000;

export const ROLES = {
  member: ["member", "reader"],
  admin: ["admin", "member", "reader"],
} as const;
export type Role = keyof typeof ROLES;

export interface Identity {
  /** Keystone-style project id: 32 hex digits. */
  readonly projectId: string;
  readonly userId: string;
  readonly role: Role;
}

/** A fresh project with one user holding `role` in it. */
export function freshIdentity(role: Role): Identity {
  return { projectId: randomUUID().replaceAll("-", ""), userId: randomUUID().replaceAll("-", ""), role };
}

/** Neutron's refusal as it answered it: the HTTP status and its NeutronError type and message. */
export class NeutronRefusal extends Error {
  constructor(
    readonly method: string,
    readonly path: string,
    readonly status: number,
    readonly type: string,
    readonly neutronMessage: string,
  ) {
    super(`${method} ${path}: ${status} ${type}: ${neutronMessage}`);
    this.name = "NeutronRefusal";
  }
}

export class NeutronApi {
  constructor(
    readonly url: string,
    readonly identity: Identity,
  ) {}

  /** The same server as another identity. */
  as(identity: Identity): NeutronApi {
    return new NeutronApi(this.url, identity);
  }

  async request(method: "GET" | "POST" | "PUT" | "DELETE", path: string, body?: unknown): Promise<Record<string, unknown>> {
    const res = await fetch(`${this.url}/v2.0/${path}`, {
      method,
      headers: {
        "X-Project-Id": this.identity.projectId,
        "X-User-Id": this.identity.userId,
        "X-Roles": ROLES[this.identity.role].join(","),
        Accept: "application/json",
        ...(body === undefined ? {} : { "Content-Type": "application/json" }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      // Only a guard against a server that never answers: the local server takes one request at a time, and a write
      // there may wait up to SQLITE_BUSY_SECONDS (120 s) for SQLite's lock on a loaded host before it answers.
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
    const text = await res.text();
    let parsed: Record<string, unknown> = {};
    if (text.trim()) {
      try {
        parsed = JSON.parse(text) as Record<string, unknown>;
      } catch {
        parsed = { text };
      }
    }
    if (!res.ok) {
      const err = (parsed.NeutronError ?? {}) as { type?: string; message?: string };
      throw new NeutronRefusal(method, path, res.status, err.type ?? res.statusText, err.message ?? (text.trim() || res.statusText));
    }
    return parsed;
  }

  get(path: string): Promise<Record<string, unknown>> {
    return this.request("GET", path);
  }

  post(path: string, body: unknown): Promise<Record<string, unknown>> {
    return this.request("POST", path, body);
  }

  put(path: string, body: unknown): Promise<Record<string, unknown>> {
    return this.request("PUT", path, body);
  }
}

/** Query string from pairs; Neutron filters lists by any attribute this way. */
export function query(filters: Record<string, string | boolean>): string {
  return new URLSearchParams(Object.entries(filters).map(([k, v]): [string, string] => [k, String(v)])).toString();
}
