#!/usr/bin/env bash
# Builds the pinned nono CLI once and caches it; never rebuilds what is cached.
# Prints the path of the binary on stdout.
#
# nono is linked statically (glibc, +crt-static): it is bind-mounted into
# containers whose images may have no glibc or a different one (busybox,
# distroless static, alpine), and it runs before the workload.
set -euo pipefail
NONO_VERSION="${NONO_VERSION:-0.81.0}"
CACHE="${KUBEFENCE_CACHE:-/var/cache/kubefence}"
root="$CACHE/nono-$NONO_VERSION-static"
bin="$root/bin/nono"
target="x86_64-unknown-linux-gnu"

# Static (also static-pie): no program interpreter to load it.
is_static() { ! readelf -l "$1" 2>/dev/null | grep -q 'program interpreter'; }

if [ -x "$bin" ] && "$bin" --version >/dev/null 2>&1 && is_static "$bin"; then
  echo "$bin"
  exit 0
fi
mkdir -p "$CACHE"
exec 9>"$CACHE/.nono.lock"
flock 9
if [ -x "$bin" ] && "$bin" --version >/dev/null 2>&1 && is_static "$bin"; then
  echo "$bin"
  exit 0
fi
mkdir -p "$root"
echo "provision-nono: building nono-cli $NONO_VERSION statically (about 15 minutes cold on 2 cores)" >&2
# --target keeps +crt-static away from build scripts and proc macros.
export RUSTFLAGS="-C target-feature=+crt-static"
export CARGO_TARGET_DIR="$CACHE/nono-build"
# --locked first; nono's lock file names crate versions the registry may no
# longer serve (webpki-roots 1.0.11 is absent here), then the resolver's.
cargo install --locked nono-cli --version "$NONO_VERSION" --no-default-features \
  --target "$target" --root "$root.tmp" >&2 \
  || cargo install nono-cli --version "$NONO_VERSION" --no-default-features \
    --target "$target" --root "$root.tmp" >&2
rm -rf "$CACHE/nono-build"
if ! is_static "$root.tmp/bin/nono"; then
  echo "provision-nono: the build is not static" >&2
  exit 1
fi
rm -rf "$root"
mv "$root.tmp" "$root"
"$bin" --version >&2
echo "$bin"
