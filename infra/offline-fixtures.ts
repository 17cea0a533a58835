// What remote commands print, for offline runs of the program. Each entry stands for a real
// command's output so that the program's parsing of it runs under the mocked engine.

export interface CommandFixture {
  /** Matches the Pulumi resource name of a command:remote:Command or command:local:Command. */
  readonly name: RegExp;
  readonly stdout: string;
}

/** Filled by the modules that declare commands whose stdout the program reads. */
export const COMMAND_FIXTURES: CommandFixture[] = [];

export function mockCommandStdout(name: string, _inputs: Record<string, unknown>): string {
  return COMMAND_FIXTURES.find((f) => f.name.test(name))?.stdout ?? "";
}
