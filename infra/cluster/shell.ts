// Shell text for the scripts the cluster layer runs on hosts: quoting and the wrapper that turns a
// script into one remote command line.

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
 * The remote command line that runs a bash script as root. The script travels inside the command
 * (not as a file) so that it is part of the resource's inputs; standard input stays free for
 * secrets, which therefore never appear in the command line, the process list or a log.
 */
export function asRootCommand(script: string): string {
  return `sudo bash -c ${shellQuote(script)}`;
}
