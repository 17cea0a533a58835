#!/usr/bin/env bash
# `npm test`: installs what is missing, type-checks, and runs every test suite.
# Extra arguments go to vitest (e.g. `npm test -- test/measure`).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/deps.sh
source scripts/deps.sh

check_node
install_test_debian_packages
install_npm_packages

npx tsc --noEmit -p .
if [ "$#" -gt 0 ]; then
  # The lab's suites judge real traffic: named on the command line, they still run one file at a time
  # (vitest's --maxWorkers does not reach the projects; vitest.config.ts reads this instead).
  one_file_at_a_time=0
  for arg in "$@"; do case "$arg" in test/lab*) one_file_at_a_time=1 ;; esac; done
  TESTBED_ONE_FILE_AT_A_TIME="$one_file_at_a_time" npx vitest run "$@"
else
  # The lab's suites push real traffic through the kernel and judge it by what arrived: they run
  # last, one file at a time, so the other suites do not take the two cores from under them.
  npx vitest run --exclude 'test/lab/**'
  TESTBED_ONE_FILE_AT_A_TIME=1 npx vitest run test/lab
fi
