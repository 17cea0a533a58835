#!/usr/bin/env bash
# `npm test`: installs what is missing, type-checks, and runs every test suite.
# Extra arguments go to vitest (e.g. `npm test -- test/measure`).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/deps.sh
source scripts/deps.sh

check_node
install_debian_packages
install_npm_packages

npx tsc --noEmit -p .
npx vitest run "$@"
