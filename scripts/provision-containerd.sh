#!/usr/bin/env bash
# Builds containerd, containerd-shim-runc-v2 and ctr from the Go module proxy
# at a pinned version (default v2.2.9; also used: v2.4.2) and caches them in
#   ${KUBEFENCE_CACHE:-/var/cache/kubefence}/containerd-<ver>/bin
# Never rebuilds a cached, working build. Prints the bin dir on stdout.
#
# Build settings (same as containerd's Makefile for the parts that matter):
#   CGO_ENABLED=0  -> fully static binaries, no libseccomp/btrfs headers needed.
#                     containerd generates seccomp profiles in Go; runc applies
#                     them. The btrfs snapshotter is cgo-only and is dropped.
#   tags: urfave_cli_no_docs no_btrfs (shim additionally no_grpc, as upstream)
#   ldflags: -X .../version.Version=<ver> so `containerd --version` is honest.
# Neither v2.2.9 (go 1.25.0) nor v2.4.2 (go 1.26.6) needs a Go newer than the
# local 1.26.8, so GOTOOLCHAIN stays local.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../e2e/lib/common.sh
. "$here/../e2e/lib/common.sh"

VERSION="${1:-${CONTAINERD_VERSION:-v2.2.9}}"
case "$VERSION" in v*) ;; *) VERSION="v$VERSION" ;; esac
case "$VERSION" in
  v2.*) ;;
  *) kf_die "only containerd 2.x is supported (got $VERSION)" ;;
esac

root="$CACHE/containerd-$VERSION"
bin="$root/bin"

verify() {
  local d="$1"
  [ -x "$d/containerd" ] && [ -x "$d/ctr" ] && [ -x "$d/containerd-shim-runc-v2" ] || return 1
  "$d/containerd" --version 2>/dev/null | grep -q " ${VERSION} " || return 1
  "$d/ctr" --version >/dev/null 2>&1 || return 1
  "$d/containerd-shim-runc-v2" -v 2>/dev/null | grep -q "${VERSION#v}" || return 1
}

if verify "$bin"; then
  echo "$bin"
  exit 0
fi

kf_lock "containerd-$VERSION"
if verify "$bin"; then echo "$bin"; exit 0; fi

kf_go_env
PKG=github.com/containerd/containerd/v2
# A go line newer than the local toolchain needs the one approved toolchain.
gomod_file="$(go mod download -json "$PKG@$VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p')"
gomod_go="$(awk '$1=="go"{print $2; exit}' "$gomod_file")"
if [ -n "$gomod_go" ] && [ "$GOTOOLCHAIN" = local ]; then
  local_go="$(go env GOVERSION)"; local_go="${local_go#go}"
  if [ "$(printf '%s\n%s\n' "$gomod_go" "$local_go" | sort -V | tail -1)" != "$local_go" ]; then
    kf_log "containerd $VERSION wants go $gomod_go > local $local_go: using GOTOOLCHAIN=go1.27.3"
    export GOTOOLCHAIN=go1.27.3
  fi
fi

stage="$root.tmp.$$"
rm -rf "$stage"
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin"
LDX="-X $PKG/version.Version=$VERSION -X $PKG/version.Package=$PKG"
kf_log "building containerd $VERSION (go $(go env GOVERSION), CGO_ENABLED=0); slow on a busy 2-core machine"
start=$SECONDS
CGO_ENABLED=0 GOBIN="$stage/bin" kf_retry go install \
  -trimpath -tags "urfave_cli_no_docs no_btrfs" -ldflags "-s -w $LDX" \
  "$PKG/cmd/containerd@$VERSION" "$PKG/cmd/ctr@$VERSION" >&2
CGO_ENABLED=0 GOBIN="$stage/bin" kf_retry go install \
  -trimpath -tags "urfave_cli_no_docs no_btrfs no_grpc" -ldflags "-s -w $LDX" \
  "$PKG/cmd/containerd-shim-runc-v2@$VERSION" >&2
verify "$stage/bin" || kf_die "built binaries in $stage/bin do not run or report the wrong version"
rm -rf "$root"
mv "$stage" "$root"
trap - EXIT
kf_log "containerd $VERSION built in $((SECONDS - start))s: $("$bin/containerd" --version)"
echo "$bin"
