# shellcheck shell=bash
# Shared helpers for the kubefence provisioning / node e2e scripts.
# Source it; it sets nothing but functions and a few variables.

KUBEFENCE_CACHE="${KUBEFENCE_CACHE:-/var/cache/kubefence}"
CACHE="$KUBEFENCE_CACHE"

kf_log() { echo "[$(basename "${0:-kubefence}")] $*" >&2; }
kf_die() { kf_log "ERROR: $*"; exit 1; }

# Go toolchain: /usr/local/go/bin on this machine kind; module and build caches
# live in the kubefence cache so a second run rebuilds nothing.
kf_go_env() {
  case ":$PATH:" in *:/usr/local/go/bin:*) ;; *) PATH="/usr/local/go/bin:$PATH" ;; esac
  export PATH
  command -v go >/dev/null 2>&1 || kf_die "go not found (expected /usr/local/go/bin/go)"
  export GOMODCACHE="${GOMODCACHE:-$CACHE/go/mod}"
  export GOCACHE="${GOCACHE:-$CACHE/go/build}"
  export GOPROXY="${GOPROXY:-https://proxy.golang.org}"
  export GOFLAGS="${GOFLAGS:--buildvcs=false}"
  # Local toolchain only unless the caller approved one (GOTOOLCHAIN=go1.27.3).
  export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
  mkdir -p "$GOMODCACHE" "$GOCACHE"
}

# Install the named Debian packages if any is missing (non-interactive).
_kf_apt_updated=""
kf_apt_install() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  kf_log "installing Debian packages: ${missing[*]}"
  if [ -z "$_kf_apt_updated" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 </dev/null
    _kf_apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 </dev/null
}

# Serialise concurrent provisioning of the same cache entry.
kf_lock() {
  mkdir -p "$CACHE"
  exec {KF_LOCK_FD}>"$CACHE/.lock-$1"
  flock "$KF_LOCK_FD"
}

# Run a command, and once more after a pause if it fails (module proxy or
# mirror hiccups on a busy machine); the second failure is final.
kf_retry() {
  "$@" && return 0
  kf_log "failed, retrying once in 5s: $*"
  sleep 5
  "$@"
}
