#!/usr/bin/env bash
# `npm run lab`: the experiment on this machine, from a fresh Debian or Ubuntu host, as root.
# Installs what is missing (the same installer as `npm test`), then runs
# `testbed lab --profile default` (about 15 minutes on 2 cores) and says where the report is.
# Extra arguments go to `testbed lab`, e.g. `npm run lab -- --profile smoke` or `npm run lab -- --cleanup`.
set -euo pipefail
cd "$(dirname "$0")/.."

# Help needs neither Linux, root nor the lab's packages: it is printed before any check and installs nothing.
for arg in "$@"; do
  case "$arg" in
    --help | -h)
      if [ ! -d node_modules ]; then
        echo "npm run lab -- --help: the npm packages are not installed; run \`npm ci\` first (it needs no root)" >&2
        exit 1
      fi
      exec npm run -s testbed -- lab --help
      ;;
  esac
done

if [ "$(uname -s)" != "Linux" ]; then
  echo "npm run lab: the local lab needs Linux (network namespaces, tc, eBPF); this is $(uname -s)." >&2
  exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "npm run lab: the local lab needs root (it creates network namespaces, iptables rules and tc eBPF programs)." >&2
  echo "Run it as root, e.g.: sudo npm run lab" >&2
  exit 1
fi
# Root is not enough in a container or under setpriv/capsh: the capabilities the lab's tools use
# (the set of lab/privileges.ts, bit numbers from linux/capability.h).
cap_effective="$(sed -n 's/^CapEff:[[:space:]]*//p' "/proc/$$/status")"
missing_caps=()
for cap in NET_ADMIN:12 NET_RAW:13 SYS_ADMIN:21; do
  (( (0x${cap_effective:-0} >> ${cap#*:}) & 1 )) || missing_caps+=("CAP_${cap%%:*}")
done
if [ "${#missing_caps[@]}" -gt 0 ]; then
  printf -v lacking '%s, ' "${missing_caps[@]}"
  echo "npm run lab: the local lab needs root with CAP_NET_ADMIN, CAP_NET_RAW and CAP_SYS_ADMIN; this shell lacks ${lacking%, }." >&2
  echo "Run it from a root shell that has them (a privileged container, or without dropping capabilities)." >&2
  exit 1
fi

# shellcheck source=scripts/deps.sh
source scripts/deps.sh
check_node
install_debian_packages
install_npm_packages

out="lab-results"
measures=1
args=("$@")
# The report goes under --out; follow the user's choice. --cleanup and --help measure nothing.
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[$i]}" in
    --out) out="${args[$((i + 1))]:-$out}" ;;
    --out=*) out="${args[$i]#--out=}" ;;
    --cleanup) measures=0 ;;
  esac
done

status=0
npm run -s testbed -- lab --profile default "$@" || status=$?
if [ "$status" -eq 0 ] && [ "$measures" -eq 1 ] && [ -f "$out/report/report.md" ]; then
  echo
  echo "Report: $(cd "$out/report" && pwd)/report.md (tables as CSV and figures as SVG beside it)"
fi
exit "$status"
