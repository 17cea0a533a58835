#!/usr/bin/env bash
# `npm test`: installs what is missing, type-checks, builds the `testbed` bin, and runs every test suite.
# Extra arguments go to vitest (e.g. `npm test -- test/measure`).
# Every phase runs even when an earlier one failed (a failing non-lab suite does not hide the lab's
# results), and the exit status is non-zero when any failed, with a line naming each that did.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/deps.sh
source scripts/deps.sh

check_node
install_test_debian_packages
install_npm_packages

failed=()
# run NAME COMMAND...: runs one phase, remembers it when it fails.
run() {
  local name="$1"
  shift
  "$@" || failed+=("$name (exit $?)")
}

run "type check (tsc --noEmit)" npx tsc --noEmit -p .
# The bin (dist/cli/main.js) from a clean clone: tests run it as users do.
run "build (npm run build)" npm run -s build
if [ "$#" -gt 0 ]; then
  # The lab's suites judge real traffic: named on the command line, they still run one file at a time
  # (vitest's --maxWorkers does not reach the projects; vitest.config.ts reads this instead).
  one_file_at_a_time=0
  for arg in "$@"; do case "$arg" in test/lab*) one_file_at_a_time=1 ;; esac; done
  run "vitest $*" env TESTBED_ONE_FILE_AT_A_TIME="$one_file_at_a_time" npx vitest run "$@"
else
  # The lab's suites push real traffic through the kernel and judge it by what arrived: they run
  # last, one file at a time, so the other suites do not take the two cores from under them.
  run "the suites outside test/lab" npx vitest run --exclude 'test/lab/**'
  run "the lab's suites (test/lab)" env TESTBED_ONE_FILE_AT_A_TIME=1 npx vitest run test/lab
fi
if [ "${#failed[@]}" -gt 0 ]; then
  echo "npm test: ${#failed[@]} phase(s) failed:" >&2
  printf '  - %s\n' "${failed[@]}" >&2
  exit 1
fi
