// Shell text for the scripts the program runs on hosts: quoting, and the wrapper that turns a script
// into one remote command line that bounds its own run time.

/** Single-quotes a value for POSIX sh: safe for any byte sequence except NUL. */
export function shellQuote(value: string): string {
  return `'${value.replaceAll("'", `'"'"'`)}'`;
}

/** `NAME=value` lines for the top of a script; values are quoted, names checked. */
export function shellAssignments(vars: Readonly<Record<string, string | number>>): string {
  return Object.entries(vars)
    .map(([name, value]) => {
      if (!/^[A-Z_][A-Z0-9_]*$/.test(name)) throw new Error(`shell variable name "${name}": accepted: upper-case letters, digits and '_'`);
      return `${name}=${shellQuote(String(value))}`;
    })
    .join("\n");
}

/**
 * How long a remote script may run, and what it waits for. pulumi-command's customTimeouts stop
 * waiting for a command, not the command: its SSH session ignores the deadline, so a script that
 * hangs on the host keeps the host busy and the next `pulumi up` finds it still running. Every
 * remote script therefore ends itself at limitS and says what it was waiting for.
 */
export interface ScriptBound {
  readonly limitS: number;
  /** What the script waits for, as the message of a script that ran out of time names it. */
  readonly waitingFor: string;
}

/** Seconds GNU timeout waits after its TERM before it kills what is left. */
export const KILL_AFTER_S = 30;

/** The command's Pulumi timeout for a script with this bound: the bound, the kill grace and room for SSH. */
export function pulumiTimeout(limitS: number): string {
  return `${Math.ceil((limitS + KILL_AFTER_S + 90) / 60)}m`;
}

/** customTimeouts for a command whose script carries this bound. */
export function commandTimeouts(bound: Pick<ScriptBound, "limitS">): { create: string; update: string; delete: string } {
  const t = pulumiTimeout(bound.limitS);
  return { create: t, update: t, delete: t };
}

/**
 * The remote command line that runs a bash script as root, ended after bound.limitS (exit 124, or
 * 137 when it ignored the TERM) with a message that names what it waited for. The script travels
 * inside the command (not as a file) so that it is part of the resource's inputs; standard input
 * stays free for secrets, which therefore never appear in the command line, the process list or a log.
 * The line's status is the script's, so `|| true` after it still tolerates a failure.
 */
export function asRootCommand(script: string, bound: ScriptBound): string {
  if (!Number.isInteger(bound.limitS) || bound.limitS < 1) throw new Error(`script time limit ${bound.limitS}: accepted: a whole number of seconds >= 1`);
  const gaveUp = `gave up after ${bound.limitS} s (the script's own limit) waiting for ${bound.waitingFor}`;
  return `sudo timeout --kill-after=${KILL_AFTER_S} ${bound.limitS} bash -c ${shellQuote(script)} || { rc=$?; if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then echo ${shellQuote(gaveUp)} >&2; fi; (exit "$rc"); }`;
}

/** The bash script inside a command line made by asRootCommand. */
export function scriptOfRootCommand(commandLine: string): string {
  const m = /^sudo timeout --kill-after=\d+ \d+ bash -c '((?:[^']|'"'"')*)' \|\| \{/.exec(commandLine);
  if (!m) throw new Error(`not a command line of asRootCommand: ${commandLine.slice(0, 80)}`);
  return m[1]!.replaceAll(`'"'"'`, "'");
}
