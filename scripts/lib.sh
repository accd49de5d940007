# shellcheck shell=bash
# Shared helpers for krust's scripts. Source it; don't run it:
#   . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
# Sets:
#   KRUST_REPO_ROOT   the repository root (parent of scripts/)
#   KRUST_TOOLS_DIR   project-local tools folder (default <repo>/.tools; git-ignored)
#   KRUST_TOOLS_BIN   $KRUST_TOOLS_DIR/bin

KRUST_REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
KRUST_TOOLS_DIR="${KRUST_TOOLS_DIR:-$KRUST_REPO_ROOT/.tools}"
KRUST_TOOLS_BIN="$KRUST_TOOLS_DIR/bin"
export KRUST_REPO_ROOT KRUST_TOOLS_DIR KRUST_TOOLS_BIN

_krust_prog="$(basename "$0")"

log()  { printf '[%s] %s\n' "$_krust_prog" "$*"; }
warn() { printf '[%s] WARNING: %s\n' "$_krust_prog" "$*" >&2; }
die()  { printf '[%s] ERROR: %s\n' "$_krust_prog" "$*" >&2; exit 1; }

# usage: print the calling script's leading comment block (its help text).
usage() { awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "$0"; }

have() { command -v "$1" >/dev/null 2>&1; }

# as_root CMD...: run CMD as root (directly when root, else through sudo).
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif have sudo; then
        sudo "$@"
    else
        die "need root (or sudo) to run: $*"
    fi
}

# pkg_installed NAME: true when the Debian package NAME is fully installed.
pkg_installed() {
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = "installed" ]
}

# Scratch space, removed on exit. Call `krust_tmp_init` (not in a subshell),
# then use "$KRUST_TMP".
KRUST_TMP=""
krust_tmp_init() {
    if [ -z "$KRUST_TMP" ]; then
        KRUST_TMP="$(mktemp -d "${TMPDIR:-/tmp}/krust-scripts.XXXXXX")"
        # shellcheck disable=SC2064  # expand now: the path is fixed
        trap "rm -rf '$KRUST_TMP'" EXIT
    fi
}
