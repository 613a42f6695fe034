#!/usr/bin/env bash
# Builds and runs every cargo-fuzz target of fuzz/ for a bounded time each,
# starting from the committed seeds in fuzz/corpus/<target>/ (never written
# to: new inputs go to a scratch corpus). Fails if any target crashes,
# leaks past the RSS limit or hangs.
#
#   scripts/fuzz-ci.sh [SECONDS] [TARGET...]     (default: 20 s, all targets)
#
# Environment: FUZZ_BUILD_FLAGS (default "-O").
# Needs a nightly toolchain (installed with rustup if missing) and
# cargo-fuzz (installed from crates.io into ~/.cargo/bin if missing).
# Build output: fuzz/target/ (gitignored); crash inputs are kept in
# fuzz/target/artifacts/<target>/ and printed.
set -euo pipefail

secs=${1:-20}
shift || true
here=$(cd "$(dirname "$0")/.." && pwd)
export PATH="$HOME/.cargo/bin:$PATH"

if ! rustup toolchain list | grep -q '^nightly'; then
    rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

cd "$here/fuzz"
if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi

# FUZZ_BUILD_FLAGS="-O --debug-assertions" adds overflow checks and
# debug_assert!s (a full rebuild of every dependency).
read -r -a flags <<<"${FUZZ_BUILD_FLAGS:--O}"
cargo +nightly fuzz build "${flags[@]}"

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
failed=()
for t in "${targets[@]}"; do
    mkdir -p "$scratch/$t" "target/artifacts/$t"
    echo "== $t: ${secs}s"
    # -close_fd_mask=1: the NRI handlers print audit records on stdout.
    if ! cargo +nightly fuzz run "${flags[@]}" "$t" "$scratch/$t" "corpus/$t" -- \
        -max_total_time="$secs" -rss_limit_mb=2048 -timeout=25 -close_fd_mask=1 \
        -artifact_prefix="target/artifacts/$t/" -print_final_stats=1 2>"$scratch/$t.log"; then
        failed+=("$t")
        tail -n 40 "$scratch/$t.log"
        ls -l "target/artifacts/$t/" || true
    else
        grep -E '^(#[0-9]+.*DONE|stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb)' "$scratch/$t.log" || true
        grep -E 'cov: ' "$scratch/$t.log" | tail -n 1 || true
    fi
done

# One line a test runner's reader understands: a target is a test.
summary="$(( ${#targets[@]} - ${#failed[@]} )) passed, ${#failed[@]} failed"
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz-ci: FAILED: ${failed[*]} (inputs in fuzz/target/artifacts/)" >&2
    echo "$summary"
    exit 1
fi
echo "fuzz-ci: all ${#targets[@]} targets ran ${secs}s without a crash"
echo "$summary"
