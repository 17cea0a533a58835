#!/usr/bin/env bash
# Installs what the project needs on a Debian or Ubuntu host: the Debian tools the tests and the lab
# run for real, and the npm packages of package-lock.json. Sourced by test.sh and lab.sh.

# Debian packages, one line each with the reason.
DEB_PACKAGES=(
  d-itg        # ITGSend/ITGRecv/ITGDec: the traffic generator of the paper
  shellcheck   # checks every script the program puts on hosts
  cloud-init   # `cloud-init schema` validates every rendered user data file
  netplan.io   # netplan's generator reads the NIC names and addresses the guests write
  openssh-server  # a real sshd holds the worker's join key to its one forced command (tests)
  iptables     # kube-proxy-format rules in the lab
  nftables     # nft: kube-proxy's nftables-mode rules in the lab
  conntrack    # flushes connection tracking between lab runs
  clang        # compiles the lab's tc eBPF program
  llvm         # llvm-strip and friends used with clang -target bpf
  bpftool      # loads the lab's service maps in one batch and reads them back
  libbpf-dev   # bpf_helpers.h and friends for the lab's eBPF dataplane program
  libc6-dev    # C library headers: the hop probes' reader is a small host program compiled at setup
  iproute2     # ip netns, veth, tc
  time         # /usr/bin/time -v: peak memory in the benchmarks
)

# What only `npm test` (and `testbed verify-openstack`) needs, installed without recommended packages
# and with services kept from starting: they run their own server.
TEST_DEB_PACKAGES=(
  neutron-server  # a real Neutron API (OpenStack Zed): plans replayed as a project member
)

missing_debian_packages() {
  local p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || printf '%s\n' "$p"
  done
}

# apt-get install --no-install-recommends with a policy-rc.d that refuses every service start (exit
# 101), so that no postinst starts a daemon; a policy-rc.d the host already has stays as it is.
install_without_services() {
  local policy=${POLICY_RC_D:-/usr/sbin/policy-rc.d} created=0 rc=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    created=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null || rc=$?
  [ "$created" -eq 1 ] && rm -f "$policy"
  return "$rc"
}

# DEB_PACKAGES (the lab's needs); install_test_debian_packages adds TEST_DEB_PACKAGES.
install_debian_packages() {
  install_missing_debian_packages lab
}

install_test_debian_packages() {
  install_missing_debian_packages tests
}

install_missing_debian_packages() {
  local wanted_bare=() missing bare
  [ "$1" = "tests" ] && wanted_bare=("${TEST_DEB_PACKAGES[@]}")
  if ! command -v dpkg-query >/dev/null 2>&1; then
    echo "This host has no dpkg: install these tools with your package manager, then run again: ${DEB_PACKAGES[*]} ${wanted_bare[*]}" >&2
    return 1
  fi
  mapfile -t missing < <(missing_debian_packages "${DEB_PACKAGES[@]}")
  mapfile -t bare < <(missing_debian_packages "${wanted_bare[@]}")
  [ "${#missing[@]}" -eq 0 ] && [ "${#bare[@]}" -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "Missing Debian packages: ${missing[*]} ${bare[*]}" >&2
    echo "Install them as root, then run again:" >&2
    [ "${#missing[@]}" -gt 0 ] && echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
    [ "${#bare[@]}" -gt 0 ] && echo "  sudo apt-get install -y --no-install-recommends ${bare[*]}   (with a /usr/sbin/policy-rc.d that exits 101, so that no service starts)" >&2
    return 1
  fi
  echo "Installing Debian packages: ${missing[*]} ${bare[*]}"
  apt-get update -qq
  if [ "${#missing[@]}" -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  if [ "${#bare[@]}" -gt 0 ]; then
    install_without_services "${bare[@]}"
  fi
}

check_node() {
  if ! command -v node >/dev/null 2>&1; then
    echo "Node.js 20.19 or later is needed (https://nodejs.org or your distribution's nodejs package)." >&2
    return 1
  fi
  node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=19)?0:1)' || {
    echo "Node.js $(node --version) is too old: 20.19 or later is needed." >&2
    return 1
  }
}

install_npm_packages() {
  # npm ci when node_modules is missing or older than the lock file.
  if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    echo "Installing npm packages (npm ci)"
    npm ci --no-audit --no-fund --loglevel=error
  fi
}
