#!/usr/bin/env bash
# The test command (README "The two commands"; .ci/run calls it).
#
# Installs and starts everything the tests need on a fresh machine (Debian
# packages, nono, containerd, crictl, kube-apiserver, etcd and the test
# images, cached under ${KUBEFENCE_CACHE:-/var/cache/kubefence}), then runs:
#   1. cargo fmt --check, cargo clippy -D warnings
#   2. cargo test: unit and integration tests of every crate
#   3. e2e/node-e2e.sh: real containerd (2.2 and 2.4) + runc + nono + plugin
#   4. e2e/cluster-e2e.sh: real kube-apiserver + etcd + webhook + manifests
#   5. e2e/fault-node.sh: the plugin across containerd restarts, a frozen
#      and a hung plugin, hundreds of creates (never unwrapped, fds/RSS flat)
#   6. e2e/fault-webhook.sh: the webhook under load through certificate
#      rotation, SIGTERM and hostile input at volume
#   7. scripts/fuzz-ci.sh: every fuzz target for a bounded time
# and ends with one line summing them: "N passed, N failed".
#
#   KUBEFENCE_TEST_ONLY="cargo node cluster node-faults webhook-faults fuzz"
#                                                  run a subset
#   KUBEFENCE_FUZZ_SECONDS=20                      time per fuzz target
#   KUBEFENCE_FUZZ_AFTER_MIN=70                    skip (and say so) the fuzz
#       suite when the run is already older than this: on a fresh machine the
#       one-time builds (nono, containerd, kube-apiserver) take most of CI's
#       90 minutes, and the fuzz build would push past them
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
started=$(date +%s)
only="${KUBEFENCE_TEST_ONLY:-cargo node cluster node-faults webhook-faults fuzz}"
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
total_pass=0
total_fail=0
suites_failed=()

step() { printf '\n==> %s\n' "$*"; }
wants() { case " $only " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

# run_suite NAME CMD...: runs a suite, keeps its output, adds its counts
# (from its closing "N passed, N failed" line) to the totals.
run_suite() {
  local name="$1" start rc line p f
  shift
  step "$name: $*"
  start=$(date +%s)
  "$@" 2>&1 | tee "$logs/$name.log"
  rc=${PIPESTATUS[0]}
  line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$logs/$name.log" | tail -1)
  p=$(echo "$line" | awk '{print $1}')
  f=$(echo "$line" | awk '{print $3}')
  total_pass=$((total_pass + ${p:-0}))
  total_fail=$((total_fail + ${f:-0}))
  if [ "$rc" -ne 0 ]; then
    suites_failed+=("$name")
    # A suite that died before its summary still counts as a failure.
    [ -n "$line" ] && [ "${f:-0}" -gt 0 ] || total_fail=$((total_fail + 1))
  fi
  echo "--- $name: rc=$rc, ${p:-0} passed, ${f:-0} failed, $(( $(date +%s) - start )) s"
}

cargo_tests() {
  rustup component add rustfmt clippy >/dev/null 2>&1 || true
  local ok=1
  step "cargo fmt --check"
  cargo fmt --all -- --check || ok=0
  step "cargo clippy --all-targets -- -D warnings"
  cargo clippy --workspace --all-targets --locked -- -D warnings || ok=0
  step "cargo test"
  cargo test --workspace --locked 2>&1 | tee "$logs/cargo-test.txt"
  [ "${PIPESTATUS[0]}" -eq 0 ] || ok=0
  awk '/^test result:/ { p += $4; f += $6 } END { printf "%d passed, %d failed\n", p, f }' \
    "$logs/cargo-test.txt"
  [ "$ok" -eq 1 ]
}

wants cargo && run_suite cargo cargo_tests
wants node && run_suite node "$root/e2e/node-e2e.sh"
wants cluster && run_suite cluster "$root/e2e/cluster-e2e.sh"
wants node-faults && run_suite node-faults "$root/e2e/fault-node.sh"
wants webhook-faults && run_suite webhook-faults "$root/e2e/fault-webhook.sh"
if wants fuzz; then
  elapsed_min=$(( ($(date +%s) - started) / 60 ))
  if [ "$elapsed_min" -ge "${KUBEFENCE_FUZZ_AFTER_MIN:-70}" ]; then
    step "fuzz: SKIPPED, the run is already $elapsed_min minutes old (KUBEFENCE_FUZZ_AFTER_MIN)"
  else
    run_suite fuzz "$root/scripts/fuzz-ci.sh" "${KUBEFENCE_FUZZ_SECONDS:-20}"
  fi
fi

echo
if [ "${#suites_failed[@]}" -gt 0 ]; then
  echo "failed suites: ${suites_failed[*]}"
fi
echo "$total_pass passed, $total_fail failed"
[ "$total_fail" -eq 0 ] && [ "${#suites_failed[@]}" -eq 0 ]
