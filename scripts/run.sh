#!/usr/bin/env bash
# The main job: install what is missing, build the release binary and run a one-node cluster
# in the foreground, with its state under ./.krust/ (Ctrl-C stops it; running it again
# resumes the same cluster). It prints the `KUBECONFIG=... kubectl get nodes` line to use.
# Extra arguments are passed to `krust server`.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$KRUST_REPO_ROOT"

bash scripts/deps.sh
log "building the release binary (the first build takes several minutes)"
cargo build --release --locked -p krust
target_dir="${CARGO_TARGET_DIR:-$KRUST_REPO_ROOT/target}"
exec "$target_dir/release/krust" server --data-dir "$KRUST_REPO_ROOT/.krust" "$@"
