#!/usr/bin/env bash
# Node benchmark: what an NRI plugin adds to CRI CreateContainer on a real
# containerd.
#
#   scripts/bench-node.sh [N] [VERSION]      (default: 300 creates, v2.4.2)
#
# Starts three identical throw-away containerd nodes (scripts/node-env.sh):
#   none       NRI enabled, no plugin
#   kubefence  our kubefence-nri (release build), validator on, as deployed
#   kubefence-novalidator  (only with BENCH_MODES naming it) the same with
#              --validator false: without our second round trip per create
#   kubefence-alt  (only with BENCH_MODES naming it) the kubefence-nri binary
#              at $BENCH_ALT_NRI, for A/B comparisons of a change
#   reference  bench/node/cmd/refplugin: the upstream Go NRI stub library
#              (github.com/containerd/nri v0.12.3 pkg/stub) with a no-op
#              CreateContainer handler, the shape of upstream's "template"
#              plugin (that plugin's own module is not on the Go module proxy)
# admits one pod through the real webhook (dev mode, namespace team-a) and
# runs bench/node/cmd/cribench: a gRPC CRI client that, every round, creates
# (and then removes) one container on each node in a fresh random order and
# times only the CreateContainer call. The container is admitted for the
# nono-runc handler, so on the kubefence node every create verifies the
# signed decision and is wrapped (the warm-up creates check the wrapped
# args). Prints the table of p50/p90/p99 per node and what each plugin adds
# over "none" (difference and ratio), plus the plugins' RSS and fds; the raw
# samples go to $BENCH_OUT (default: a file under /tmp, printed at the end).
#
# Environment: BENCH_MODES (default "none kubefence reference"; the first
# is the baseline), BENCH_WARMUP (10), BENCH_OUT, KUBEFENCE_E2E_NONO (a nono
# binary instead of scripts/provision-nono.sh's). Loopback and local sockets
# only; the load is one create at a time.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=node-env.sh
. "$here/node-env.sh"
# shellcheck source=../e2e/lib/kubefence.sh
. "$here/../e2e/lib/kubefence.sh"

N="${1:-300}"
VER="${2:-v2.4.2}"
WARM="${BENCH_WARMUP:-10}"
read -r -a MODES <<<"${BENCH_MODES:-none kubefence reference}"
declare -A NODE_DIR

cleanup() {
  local rc=$? m
  set +e
  kf_stop_all
  for m in "${MODES[@]}"; do
    [ -n "${NODE_DIR[$m]:-}" ] && kf_node_down "${NODE_DIR[$m]}" >/dev/null 2>&1
  done
  [ -n "${KF_WORK:-}" ] && rm -rf "$KF_WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

kf_work_init kubefence-bench-node
W="$KF_WORK"
OUT="${BENCH_OUT:-$(mktemp /tmp/kubefence-bench-node.XXXXXX.json)}"

kf_log "building kubefence (release) and bench/node (Go)"
(cd "$KF_ROOT" && cargo build --release -p kubefence-webhook -p kubefence-nri) >"$W/cargo.log" 2>&1 \
  || { tail -30 "$W/cargo.log" >&2; kf_die "cargo build failed"; }
target_dir="${CARGO_TARGET_DIR:-$KF_ROOT/target}"
KF_WEBHOOK="$target_dir/release/kubefence-webhook"
KF_NRI="$target_dir/release/kubefence-nri"
kf_go_env
gobin="$CACHE/bench-node-bin"
mkdir -p "$gobin"
(cd "$KF_ROOT/bench/node" && kf_retry go build -o "$gobin/" ./cmd/cribench ./cmd/refplugin) >"$W/go.log" 2>&1 \
  || { tail -30 "$W/go.log" >&2; kf_die "go build of bench/node failed"; }

kf_host_dir_install || kf_die "kubefence-nri install failed"
kf_webhook_start webhook || kf_die "the dev webhook did not start"

# One admitted pod, the same on every node (the decision binds namespace,
# name and handler, not the node).
printf 'echo KF done\n' >"$W/true.sh"
kf_pod_json "$W/pod.json" name=bench-pod '{}' "app|kubefence.test/busybox:1|sh|$W/true.sh"
kf_admit "$W/pod.json" team-a "$W/admitted.json" || kf_die "admission failed"
handler="$(kf_py handler "$W/admitted.json" "$KF_RUNTIME_CLASSES")"
[ "$handler" = nono-runc ] || kf_die "the admitted pod runs under '$handler', expected nono-runc"
kf_py container "$W/admitted.json" app >"$W/ctr.json"

targets=()
for m in "${MODES[@]}"; do
  KUBEFENCE_IMAGES="pause busybox" kf_node_up "$VER" >"$W/node-$m.log" 2>&1 \
    || { cat "$W/node-$m.log" >&2; kf_die "node $m did not come up"; }
  NODE_DIR[$m]="$KUBEFENCE_NODE_DIR"
  kf_py sandbox "$W/admitted.json" bench-pod team-a "uid-bench-$m" "$KUBEFENCE_POD_LOG_DIR/bench" \
    "$KUBEFENCE_CGROUP_PARENT" >"$W/sandbox-$m.json"
  if [ "${m%%-*}" != kubefence ]; then
    # the admitted pod requires plugin kubefence (the default validator
    # would refuse it elsewhere): the other nodes get it without that
    python3 - "$W/sandbox-$m.json" <<'EOF'
import json, sys
p = sys.argv[1]; sb = json.load(open(p))
sb["annotations"] = {k: v for k, v in sb["annotations"].items()
                     if not k.startswith("required-plugins.noderesource.dev")}
json.dump(sb, open(p, "w"))
EOF
  fi
  prefix=""
  case "$m" in
    kubefence)
      KF_AUDIT="$W/plugin.audit.jsonl" KF_PLUGIN_LOG="$W/plugin.log"
      kf_plugin_start || { tail -20 "$W/plugin.log" >&2; kf_die "kubefence-nri did not register"; }
      PID_kubefence="$KF_PLUGIN_PID"
      prefix="/nono/nono wrap"
      ;;
    kubefence-alt)
      KF_AUDIT="$W/plugin-alt.audit.jsonl" KF_PLUGIN_LOG="$W/plugin-alt.log"
      [ -x "${BENCH_ALT_NRI:-}" ] || kf_die "kubefence-alt needs BENCH_ALT_NRI, a kubefence-nri binary"
      KF_NRI_SAVE="$KF_NRI"; KF_NRI="$BENCH_ALT_NRI"
      kf_plugin_start || { tail -20 "$W/plugin-alt.log" >&2; kf_die "the alternative kubefence-nri did not register"; }
      KF_NRI="$KF_NRI_SAVE"
      PID_kubefence_alt="$KF_PLUGIN_PID"
      prefix="/nono/nono wrap"
      ;;
    kubefence-novalidator)
      KF_AUDIT="$W/plugin-nv.audit.jsonl" KF_PLUGIN_LOG="$W/plugin-nv.log"
      kf_plugin_start --validator false || { tail -20 "$W/plugin-nv.log" >&2; kf_die "kubefence-nri did not register"; }
      PID_kubefence_nv="$KF_PLUGIN_PID"
      prefix="/nono/nono wrap"
      ;;
    reference)
      "$gobin/refplugin" --socket "$NRI_SOCKET" 2>"$W/refplugin.log" &
      PID_reference=$!
      KF_PIDS+=("$PID_reference")
      for _ in $(seq 1 100); do grep -q 'Started plugin' "$W/refplugin.log" && break; sleep 0.1; done
      grep -q 'Started plugin' "$W/refplugin.log" || { cat "$W/refplugin.log" >&2; kf_die "refplugin did not start"; }
      ;;
  esac
  targets+=(-target "name=$m,endpoint=$CONTAINER_RUNTIME_ENDPOINT,handler=$handler,sandbox=$W/sandbox-$m.json,container=$W/ctr.json${prefix:+,args-prefix=$prefix}")
done

proc() { # PID -> "rss KiB, hwm KiB, fds"
  printf '%s KiB RSS, %s KiB peak, %s fds' "$(awk '/VmRSS/ {print $2}' "/proc/$1/status")" \
    "$(awk '/VmHWM/ {print $2}' "/proc/$1/status")" "$(ls "/proc/$1/fd" | wc -l)"
}
declare -A PIDS=([kubefence]="${PID_kubefence:-}" [kubefence-novalidator]="${PID_kubefence_nv:-}" [kubefence-alt]="${PID_kubefence_alt:-}" [reference]="${PID_reference:-}")
declare -A BEFORE
for m in "${!PIDS[@]}"; do [ -n "${PIDS[$m]}" ] && BEFORE[$m]="$(proc "${PIDS[$m]}")"; done
# CPU time a process spent running, in ns: the sum of its threads'
# schedstat (exact, and independent of how loaded the machine is; threads
# that exited meanwhile are not counted, and these daemons keep theirs).
cpu_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{s += $1} END {printf "%d", s}'; }
declare -A CPU0
for m in "${MODES[@]}"; do
  CPU0[ctrd-$m]="$(cpu_ns "$(cat "${NODE_DIR[$m]}/containerd.pid")")"
  [ -n "${PIDS[$m]:-}" ] && CPU0[plugin-$m]="$(cpu_ns "${PIDS[$m]}")"
done

kf_log "containerd $VER x3, $N creates each after $WARM warm-up, interleaved (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
started=$SECONDS
"$gobin/cribench" -n "$N" -warmup "$WARM" -out "$OUT" "${targets[@]}" | tee "$W/table.md"
echo
echo "containerd $VER, $(nproc) cores, load average after: $(cut -d' ' -f1-3 /proc/loadavg), $((SECONDS - started)) s"
echo
echo "CPU time per create (warm-up included, $((N + WARM)) creates and removes per node; schedstat):"
echo "| node | containerd µs/create | plugin µs/create | together µs/create |"
echo "|---|---|---|---|"
for m in "${MODES[@]}"; do
  c=$(( ($(cpu_ns "$(cat "${NODE_DIR[$m]}/containerd.pid")") - CPU0[ctrd-$m]) / (N + WARM) / 1000 ))
  p=0
  [ -n "${PIDS[$m]:-}" ] && p=$(( ($(cpu_ns "${PIDS[$m]}") - CPU0[plugin-$m]) / (N + WARM) / 1000 ))
  echo "| $m | $c | $p | $((c + p)) |"
done
echo
for m in "${!PIDS[@]}"; do
  [ -n "${PIDS[$m]}" ] && echo "$m plugin: before ${BEFORE[$m]}; after $(proc "${PIDS[$m]}")"
done
for a in "$W"/plugin*.audit.jsonl; do
  [ -f "$a" ] || continue
  wrapped="$(grep -c '"outcome":"inject"' "$a" || true)"
  echo "$(basename "$a"): $wrapped records with outcome inject (expected $((N + WARM)))"
  [ "$wrapped" -eq $((N + WARM)) ] || kf_die "kubefence did not wrap every create"
done
echo "raw samples: $OUT"
