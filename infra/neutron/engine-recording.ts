// What the offline engine's resource list does not keep but a replay needs: every registration's
// dependencies (the order Pulumi follows) and the values the mock answered (so that a value the
// program read from another resource, an id or an address, can be told from a literal).
import * as pulumi from "@pulumi/pulumi";

export interface RegisteredResource {
  readonly urn: string;
  readonly type: string;
  readonly name: string;
  readonly custom: boolean;
  readonly parentUrn: string;
  /** URNs this resource waits for: its inputs' resources and its dependsOn. */
  readonly dependencies: string[];
  /** Top-level input name -> URNs its value came from. */
  readonly propertyDependencies: Record<string, string[]>;
  readonly id: string;
  /** The state the mock answered (inputs plus what a cloud would compute). */
  readonly state: Record<string, unknown>;
}

export interface EngineInvoke {
  readonly token: string;
  readonly args: Record<string, unknown>;
  readonly result: Record<string, unknown>;
}

export interface EngineRecording {
  readonly resources: RegisteredResource[];
  readonly invokes: EngineInvoke[];
}

let recording: EngineRecording = { resources: [], invokes: [] };

export function engineRecording(): EngineRecording {
  return recording;
}

type Callback = (err: Error | null, response: unknown) => void;
interface Message {
  getUrn(): string;
  getId(): string;
  getObject(): { toJavaScript(): Record<string, unknown> } | undefined;
  getReturn(): { toJavaScript(): Record<string, unknown> } | undefined;
}
interface RegisterRequest {
  getType(): string;
  getName(): string;
  getCustom(): boolean;
  getParent(): string;
  getDependenciesList(): string[];
  getPropertydependenciesMap(): { forEach(f: (v: { getUrnsList(): string[] }, k: string) => void): void };
}
interface InvokeRequest {
  getTok(): string;
  getArgs(): { toJavaScript(): Record<string, unknown> } | undefined;
}
interface Monitor {
  registerResource(req: RegisterRequest, cb: Callback): void;
  invoke(req: InvokeRequest, cb: Callback): void;
}

/** Wraps the mocked resource monitor (set by runOffline) so that every registration and lookup is kept. */
export function recordEngineCalls(): void {
  const monitor = pulumi.runtime.getMonitor() as unknown as Monitor | undefined;
  if (!monitor) throw new Error("recordEngineCalls: no resource monitor; it runs inside runOffline's program");
  recording = { resources: [], invokes: [] };
  const store = recording;
  const register = monitor.registerResource.bind(monitor);
  monitor.registerResource = (req, cb) =>
    register(req, (err, response) => {
      if (!err && response) {
        const res = response as Message;
        const propertyDependencies: Record<string, string[]> = {};
        req.getPropertydependenciesMap().forEach((v, k) => {
          propertyDependencies[k] = v.getUrnsList();
        });
        store.resources.push({
          urn: res.getUrn(),
          type: req.getType(),
          name: req.getName(),
          custom: req.getCustom(),
          parentUrn: req.getParent(),
          dependencies: req.getDependenciesList(),
          propertyDependencies,
          id: res.getId(),
          state: res.getObject()?.toJavaScript() ?? {},
        });
      }
      cb(err, response);
    });
  const invoke = monitor.invoke.bind(monitor);
  monitor.invoke = (req, cb) =>
    invoke(req, (err, response) => {
      if (!err && response) {
        store.invokes.push({ token: req.getTok(), args: req.getArgs()?.toJavaScript() ?? {}, result: (response as Message).getReturn()?.toJavaScript() ?? {} });
      }
      cb(err, response);
    });
}
