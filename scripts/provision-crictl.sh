#!/usr/bin/env bash
# Builds crictl (sigs.k8s.io/cri-tools, pinned v1.37.0) from the Go module
# proxy into ${KUBEFENCE_CACHE:-/var/cache/kubefence}/crictl-<ver>/bin, and
# makes sure runc comes from Debian (apt-get install runc) at a version that
# containerd 2.x accepts (>= 1.1.0; bookworm ships 1.1.5).
# Prints the crictl bin dir on stdout. Never rebuilds a cached, working crictl.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../e2e/lib/common.sh
. "$here/../e2e/lib/common.sh"

CRICTL_VERSION="${1:-${CRICTL_VERSION:-v1.37.0}}"
RUNC_MIN="${RUNC_MIN:-1.1.0}"
root="$CACHE/crictl-$CRICTL_VERSION"
bin="$root/bin"

# ---- runc (Debian)
if ! command -v runc >/dev/null 2>&1; then
  kf_apt_install runc
fi
runc_ver="$(runc --version | awk '/^runc version/ {print $3}')"
runc_ver="${runc_ver%%+*}"
if [ -z "$runc_ver" ] || [ "$(printf '%s\n%s\n' "$RUNC_MIN" "$runc_ver" | sort -V | head -1)" != "$RUNC_MIN" ]; then
  kf_die "runc $runc_ver at $(command -v runc) is older than $RUNC_MIN"
fi
runc features >/dev/null 2>&1 || kf_die "runc $runc_ver lacks 'runc features' (needed by containerd 2.x)"
kf_log "runc $runc_ver at $(command -v runc)"

# ---- crictl
verify() { [ -x "$1/crictl" ] && "$1/crictl" --version 2>/dev/null | grep -q "${CRICTL_VERSION#v}"; }
if verify "$bin"; then echo "$bin"; exit 0; fi
kf_lock "crictl-$CRICTL_VERSION"
if verify "$bin"; then echo "$bin"; exit 0; fi

kf_go_env
stage="$root.tmp.$$"
rm -rf "$stage"; trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin"
kf_log "building crictl $CRICTL_VERSION"
CGO_ENABLED=0 GOBIN="$stage/bin" kf_retry go install -trimpath \
  -ldflags "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=${CRICTL_VERSION#v}" \
  "sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION" >&2
verify "$stage/bin" || kf_die "built crictl does not run or reports the wrong version: $("$stage/bin/crictl" --version 2>&1 || true)"
rm -rf "$root"; mv "$stage" "$root"; trap - EXIT
echo "$bin"
