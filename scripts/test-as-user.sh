#!/usr/bin/env bash
# `npm test` where a user runs it: in a fresh clone of this repository's HEAD, inside a private
# folder (mode 0700, made by mktemp -d under $HOME: /root for root), while busy loops keep the
# cores busy. The suites must pass there too, not only in a world-readable checkout on an idle
# machine. The clone and the loops are removed at the end; the exit status is npm test's.
#
#   bash scripts/test-as-user.sh [--busy N] [--parent DIR] [-- ARGS for npm test]
#     --busy N      busy loops beside the suites (default 2, one per core of a 2-core host; 0: none)
#     --parent DIR  where the private folder is made (default $HOME)
#
# It tests what is committed: uncommitted changes are not in the clone.
set -euo pipefail
cd "$(dirname "$0")/.."

busy=2
parent="${HOME:-/root}"
npm_args=()
while [ "$#" -gt 0 ]; do
  case "$1" in
    --busy)
      [[ "${2:-}" =~ ^[0-9]+$ ]] || { echo "test-as-user: --busy: \"${2:-}\" is not accepted; accepted: a whole number of busy loops (0 for none)" >&2; exit 2; }
      busy="$2"
      shift 2
      ;;
    --parent)
      [ -d "${2:-}" ] || { echo "test-as-user: --parent: \"${2:-}\" is not accepted; accepted: an existing directory" >&2; exit 2; }
      parent="$2"
      shift 2
      ;;
    --) shift; npm_args=("$@"); break ;;
    *) echo "test-as-user: $1: unknown option; accepted: --busy N, --parent DIR, -- ARGS for npm test" >&2; exit 2 ;;
  esac
done

folder="$(mktemp -d "$parent/dataplane-testbed-test.XXXXXX")"
loops=()
finish() {
  local pid
  for pid in "${loops[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf -- "$folder"
}
trap finish EXIT

git clone --quiet --no-local . "$folder/dataplane-testbed"
echo "test-as-user: $(git rev-parse --short HEAD) cloned into $folder (mode $(stat -c %a "$folder")), $busy busy loop(s)"
# Bounded by timeout as well, in case this script is killed before it can stop them.
for ((i = 0; i < busy; i++)); do
  timeout 2h sh -c 'while :; do :; done' &
  loops+=("$!")
done
cd "$folder/dataplane-testbed"
npm test ${npm_args[@]+"${npm_args[@]}"}
