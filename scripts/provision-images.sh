#!/usr/bin/env bash
# Builds the node e2e test images as OCI image layout tarballs, with no
# registry, and caches them under
#   ${KUBEFENCE_CACHE:-/var/cache/kubefence}/images-v1/
#     pause.tar    kubefence.test/pause:1    static Go pause (scripts/pause)
#     busybox.tar  kubefence.test/busybox:1  Debian busybox-static + applet links
#     debian.tar   kubefence.test/debian:1   debootstrap --variant=minbase
#                                            (+ python3-minimal), glibc, perl
# Import with: ctr -n k8s.io images import <tar>
# Prints the image directory on stdout. Never rebuilds a cached image; the
# debootstrap rootfs is cached separately (debian-<suite>-minbase-v1).
# Environment: KUBEFENCE_DEBIAN_SUITE (default: the host's codename),
#              KUBEFENCE_DEBIAN_MIRROR (default: the Debian mirror apt uses).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../e2e/lib/common.sh
. "$here/../e2e/lib/common.sh"
# shellcheck source=../e2e/lib/oci.sh
. "$here/../e2e/lib/oci.sh"

IMG_DIR="$CACHE/images-v1"
mkdir -p "$IMG_DIR"
kf_lock images-v1

tmp="$(mktemp -d "${TMPDIR:-/tmp}/kubefence-images.XXXXXX")"
cleanup() {
  local m
  # debootstrap mounts proc/sys inside its target; never leave one behind.
  if [ -d "$tmp" ]; then
    for m in $(awk -v p="$tmp/" 'index($2, p) == 1 {print $2}' /proc/self/mounts | sort -r); do
      umount -l "$m" 2>/dev/null || true
    done
    rm -rf "$tmp"
  fi
}
trap cleanup EXIT

valid_image() { # a cached tarball is trusted only if it lists a complete layout
  [ -s "$1" ] && tar -tf "$1" 2>/dev/null | grep -qx 'index.json' \
    && tar -xOf "$1" index.json 2>/dev/null | grep -q "\"io.containerd.image.name\":\"$2\""
}

# ---------------------------------------------------------------- pause
build_pause() {
  local out="$IMG_DIR/pause.tar" name=kubefence.test/pause:1
  valid_image "$out" "$name" && return 0
  kf_go_env
  local r="$tmp/pause-rootfs"
  mkdir -p "$r"
  (cd "$here/pause" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$r/pause" .)
  "$r/pause" -v >/dev/null || kf_die "pause binary does not run"
  kf_tar_dir "$r" "$tmp/pause-layer.tar" --owner=0 --group=0
  kf_oci_image "$tmp/pause-layer.tar" "$name" "$out" '["/pause"]' '["PATH=/"]'
  kf_log "built $name -> $out"
}

# ---------------------------------------------------------------- busybox
build_busybox() {
  local out="$IMG_DIR/busybox.tar" name=kubefence.test/busybox:1
  valid_image "$out" "$name" && return 0
  kf_apt_install busybox-static
  local r="$tmp/busybox-rootfs" a
  mkdir -p "$r"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,root,proc,sys,dev,var/tmp}
  chmod 1777 "$r/tmp" "$r/var/tmp"
  install -m 0755 /bin/busybox "$r/bin/busybox"
  "$r/bin/busybox" true || kf_die "busybox-static does not run"
  for a in $("$r/bin/busybox" --list-full); do
    [ "$a" = bin/busybox ] && continue
    mkdir -p "$r/$(dirname "$a")"
    ln -sf /bin/busybox "$r/$a"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$r/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$r/etc/group"
  kf_tar_dir "$r" "$tmp/busybox-layer.tar" --owner=0 --group=0
  kf_oci_image "$tmp/busybox-layer.tar" "$name" "$out" '["/bin/sh"]'
  kf_log "built $name -> $out"
}

# ---------------------------------------------------------------- debian
debian_mirror() {
  if [ -n "${KUBEFENCE_DEBIAN_MIRROR:-}" ]; then echo "$KUBEFENCE_DEBIAN_MIRROR"; return; fi
  local m
  m="$(awk '$1=="URIs:" {for (i=2;i<=NF;i++) if ($i ~ /\/debian\/?$/) {print $i; exit}}' \
        /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1 || true)"
  [ -z "$m" ] && m="$(awk '$1=="deb" && $2 ~ /debian\/?$/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)"
  echo "${m:-http://deb.debian.org/debian}"
}

build_debian() {
  local out="$IMG_DIR/debian.tar" name=kubefence.test/debian:1
  valid_image "$out" "$name" && return 0
  local suite
  suite="${KUBEFENCE_DEBIAN_SUITE:-$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")}"
  local rcache="$CACHE/debian-$suite-minbase-v1" r="$tmp/debian-rootfs"
  if ! { [ -s "$rcache/rootfs.tar" ] && tar -tf "$rcache/rootfs.tar" ./usr/bin/perl >/dev/null 2>&1; }; then
    kf_apt_install debootstrap
    local mirror start=$SECONDS
    mirror="$(debian_mirror)"
    kf_log "debootstrap --variant=minbase $suite from $mirror (slow, cached afterwards)"
    mkdir -p "$r"
    debootstrap --variant=minbase --include=python3-minimal --components=main \
      "$suite" "$r" "$mirror" >"$tmp/debootstrap.log" 2>&1 \
      || { tail -30 "$tmp/debootstrap.log" >&2; kf_die "debootstrap failed"; }
    # debootstrap unmounts on success; be sure nothing is left mounted.
    local m
    for m in $(awk -v p="$r/" 'index($2, p) == 1 {print $2}' /proc/self/mounts | sort -r); do umount -l "$m"; done
    chroot "$r" /usr/bin/perl -e 'exit 0' || kf_die "debian rootfs: perl does not run"
    chroot "$r" /usr/bin/python3 -c 'pass' || kf_die "debian rootfs: python3 does not run"
    rm -rf "$r"/var/cache/apt/archives/*.deb "$r"/var/lib/apt/lists/* "$r"/var/log/* "$r"/tmp/* \
      "$r"/dev/* "$r"/proc/* "$r"/sys/* "$r"/run/*
    : >"$r/etc/resolv.conf"
    printf 'kubefence-debian\n' >"$r/etc/hostname"
    mkdir -p "$rcache"
    kf_tar_dir "$r" "$rcache/rootfs.tar.tmp"
    mv "$rcache/rootfs.tar.tmp" "$rcache/rootfs.tar"
    echo "$suite $mirror" >"$rcache/source"
    kf_log "debian rootfs cached in $rcache ($((SECONDS - start))s)"
  fi
  kf_oci_image "$rcache/rootfs.tar" "$name" "$out" '["/bin/bash"]' \
    '["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin","LANG=C.UTF-8"]'
  kf_log "built $name -> $out"
}

want="${*:-pause busybox debian}"
for img in $want; do
  case "$img" in
    pause) build_pause ;;
    busybox) build_busybox ;;
    debian) build_debian ;;
    *) kf_die "unknown image $img (pause|busybox|debian)" ;;
  esac
done
echo "$IMG_DIR"
