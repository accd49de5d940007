#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls this):
#   1. installs what the tests need (scripts/deps.sh: Debian packages; scripts/clients.sh:
#      the real kubectl 1.20/1.27-1.35, Helm 4 and the Python client into .tools/;
#      scripts/images.sh: the busybox and pause images real nodes run, into .tools/images),
#   2. cargo fmt --check and clippy with warnings denied,
#   3. every test, the end-to-end suites included (real clients, etcd, root-only tests such
#      as the store's disk-full test: they are #[ignore]d in a plain `cargo test` and run here
#      with --include-ignored).
# Run as root on Debian 12 with Rust. A persistent CARGO_TARGET_DIR speeds up reruns.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$KRUST_REPO_ROOT"

log "installing test dependencies"
bash scripts/deps.sh
bash scripts/clients.sh >/dev/null
bash scripts/images.sh >/dev/null

log "cargo fmt --check"
cargo fmt --all --check

log "cargo clippy (warnings denied)"
cargo clippy --workspace --all-targets --locked -- -D warnings

log "cargo test (unit, integration and end-to-end)"
cargo test --workspace --locked -- --include-ignored
