#!/usr/bin/env bash
# Build the container images krust's nodes run offline, as OCI image archives, from Debian
# packages (no registry is needed):
#   busybox  docker.io/library/busybox:{latest,1.35}   busybox-static (sh, httpd, nc, wget, ...)
#   pause    registry.k8s.io/pause:{3.10,3.10.1}        images/pause.c, static: the sandbox's
#            first process; it reaps zombies
#
#   scripts/images.sh [OUT_DIR]     write busybox.tar and pause.tar (default: .tools/images)
#
# `krust agent` imports every *.tar of its --images-dir into its containerd at start, so
# `kubectl run x --image=busybox` works without a registry. The archives are reproducible:
# the same packages give the same digests.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$KRUST_REPO_ROOT"

out="${1:-$KRUST_TOOLS_DIR/images}"
case "$out" in -h|--help) usage; exit 0 ;; esac
[ -x /bin/busybox ] || die "/bin/busybox missing: install busybox-static (scripts/deps.sh)"
have cc || die "cc missing: install build-essential (scripts/deps.sh)"
mkdir -p "$out"
out="$(cd "$out" && pwd -P)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

EPOCH=0   # every file's mtime in the layers: reproducible digests

sha() { sha256sum "$1" | cut -d' ' -f1; }
size() { stat -c %s "$1"; }

# put_blob FILE: move FILE into the layout's blobs; prints its digest hex.
put_blob() {
    local d
    d="$(sha "$1")"
    mv "$1" "$2/blobs/sha256/$d"
    echo "$d"
}

# oci_archive ROOTFS CONFIG_JSON OUT_TAR NAME...: one-layer OCI image archive of ROOTFS whose
# runtime config is CONFIG_JSON (the image config's "config" object), tagged NAME...
oci_archive() {
    local rootfs="$1" config="$2" tarball="$3"
    shift 3
    local layout="$work/layout"
    rm -rf "$layout"
    mkdir -p "$layout/blobs/sha256"
    tar --sort=name --mtime="@$EPOCH" --owner=0 --group=0 --numeric-owner \
        -C "$rootfs" -cf "$work/layer.tar" .
    local diff_id
    diff_id="$(sha "$work/layer.tar")"
    gzip -n -9 "$work/layer.tar"
    local layer_size layer
    layer_size="$(size "$work/layer.tar.gz")"
    layer="$(put_blob "$work/layer.tar.gz" "$layout")"
    jq -cn --argjson config "$config" --arg diff "sha256:$diff_id" \
        '{architecture: "amd64", os: "linux", config: $config,
          rootfs: {type: "layers", diff_ids: [$diff]},
          history: [{created_by: "krust scripts/images.sh"}]}' >"$work/config.json"
    local config_size config_digest
    config_size="$(size "$work/config.json")"
    config_digest="$(put_blob "$work/config.json" "$layout")"
    jq -cn --arg c "sha256:$config_digest" --argjson cs "$config_size" \
        --arg l "sha256:$layer" --argjson ls "$layer_size" \
        '{schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json",
          config: {mediaType: "application/vnd.oci.image.config.v1+json", digest: $c, size: $cs},
          layers: [{mediaType: "application/vnd.oci.image.layer.v1.tar+gzip",
                    digest: $l, size: $ls}]}' >"$work/manifest.json"
    local manifest_size manifest
    manifest_size="$(size "$work/manifest.json")"
    manifest="$(put_blob "$work/manifest.json" "$layout")"
    printf '%s\n' "$@" | jq -R . | jq -cs --arg m "sha256:$manifest" --argjson ms "$manifest_size" \
        '{schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json",
          manifests: [.[] | {mediaType: "application/vnd.oci.image.manifest.v1+json",
                             digest: $m, size: $ms,
                             annotations: {"io.containerd.image.name": .,
                                           "org.opencontainers.image.ref.name": (. | sub(".*:"; ""))}}]}' \
        >"$layout/index.json"
    echo '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout"
    tar --sort=name --mtime="@$EPOCH" --owner=0 --group=0 --numeric-owner \
        -C "$layout" -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
    log "$(basename "$tarball"): $* (manifest sha256:$manifest)"
}

# --- busybox -------------------------------------------------------------------
root="$work/busybox"
mkdir -p "$root"/{bin,etc,root,tmp,var/www,home,proc,sys,dev}
chmod 1777 "$root/tmp"
cp /bin/busybox "$root/bin/busybox"
for applet in $(/bin/busybox --list); do
    [ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n' >"$root/etc/passwd"
printf 'root:x:0:\nnobody:x:65534:\n' >"$root/etc/group"
# sed reads the whole banner (no `head`: with pipefail a SIGPIPE'd busybox would fail the script).
version="$(/bin/busybox 2>/dev/null | sed -n '1s/^BusyBox v\([0-9]*\.[0-9]*\).*/\1/p')"
oci_archive "$root" '{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["sh"]}' \
    "$out/busybox.tar" docker.io/library/busybox:latest "docker.io/library/busybox:${version:-1}"

# --- pause ---------------------------------------------------------------------
root="$work/pause"
mkdir -p "$root"
cc -static -Os -Wall -Werror -o "$root/pause" images/pause.c
strip "$root/pause"
oci_archive "$root" '{"Entrypoint":["/pause"],"User":"65535:65535"}' \
    "$out/pause.tar" registry.k8s.io/pause:3.10.1 registry.k8s.io/pause:3.10
