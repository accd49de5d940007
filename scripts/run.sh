#!/usr/bin/env bash
# The main job: install what is missing, build the release binary and run a one-node cluster
# in the foreground — control plane and a node running pods on containerd — with its state
# under ./.krust/ (Ctrl-C stops it; running it again resumes the same cluster). The example
# workload (examples/web.yaml) is deployed through .krust/manifests/. It prints the
# `KUBECONFIG=... kubectl get nodes` line to use. Run as root (containerd, runc, CNI).
# Extra arguments are passed to `krust server`.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$KRUST_REPO_ROOT"

[ "$(id -u)" -eq 0 ] || die "run as root: the node runs containers (containerd, runc, CNI)"
bash scripts/deps.sh
data="$KRUST_REPO_ROOT/.krust"
log "building the node images (busybox, pause) into $data/agent/images"
bash scripts/images.sh "$data/agent/images" >/dev/null
mkdir -p "$data/manifests"
cp examples/web.yaml "$data/manifests/web.yaml"
log "building the release binary (the first build takes several minutes)"
cargo build --release --locked -p krust
target_dir="${CARGO_TARGET_DIR:-$KRUST_REPO_ROOT/target}"
exec "$target_dir/release/krust" server --data-dir "$data" "$@"
