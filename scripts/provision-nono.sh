#!/usr/bin/env bash
# Builds the pinned nono CLI once and caches it; never rebuilds what is cached.
# Prints the path of the binary on stdout.
set -euo pipefail
NONO_VERSION="${NONO_VERSION:-0.81.0}"
CACHE="${KUBEFENCE_CACHE:-/var/cache/kubefence}"
root="$CACHE/nono-$NONO_VERSION"
bin="$root/bin/nono"
if [ -x "$bin" ] && "$bin" --version >/dev/null 2>&1; then
  echo "$bin"
  exit 0
fi
mkdir -p "$root"
echo "provision-nono: building nono-cli $NONO_VERSION (about 13 minutes cold on 2 cores)" >&2
CARGO_TARGET_DIR="$CACHE/nono-build" cargo install --locked nono-cli \
  --version "$NONO_VERSION" --no-default-features --root "$root" >&2 \
  || CARGO_TARGET_DIR="$CACHE/nono-build" cargo install nono-cli \
  --version "$NONO_VERSION" --no-default-features --root "$root" >&2
rm -rf "$CACHE/nono-build"
"$bin" --version >&2
echo "$bin"
