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
  libbpf-dev   # bpf_helpers.h and friends for the eBPF program; libbpf for the hop probes' reader
  libc6-dev    # C library headers: the hop probes' reader is a small host program compiled at setup
  iproute2     # ip netns, veth, tc
  time         # /usr/bin/time -v: peak memory in the benchmarks
)

missing_debian_packages() {
  local p
  for p in "${DEB_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || printf '%s\n' "$p"
  done
}

install_debian_packages() {
  if ! command -v dpkg-query >/dev/null 2>&1; then
    echo "This host has no dpkg: install these tools with your package manager, then run again: ${DEB_PACKAGES[*]}" >&2
    return 1
  fi
  local missing
  mapfile -t missing < <(missing_debian_packages)
  [ "${#missing[@]}" -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "Missing Debian packages: ${missing[*]}" >&2
    echo "Install them as root, then run again:  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
    return 1
  fi
  echo "Installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
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
