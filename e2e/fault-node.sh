#!/usr/bin/env bash
# kubefence node fault suite (issue 6): the real kubefence-nri plugin across
# repeated restarts of a real containerd, with hundreds of container
# creations in a sandboxed (nono-runc) pod.
#
#   e2e/fault-node.sh [ROUNDS] [CREATES_PER_ROUND] [VERSION]   (default 10 20 v2.4.2)
#
# One throw-away node (scripts/node-env.sh), the dev webhook admitting one
# pod for the sandbox handler (so it carries the signed decision and the
# `required-plugins.noderesource.dev/pod: kubefence` annotation), one plugin
# process for the whole run. Each round:
#   1. SIGTERM containerd and start it again (the pod sandbox survives); in
#      every even round the plugin is frozen (SIGSTOP) across the restart, as
#      a CPU-starved or paused plugin would be;
#   2. while the plugin has not re-registered yet, try creates in the pod:
#      each must be refused (containerd's default validator: required plugin
#      missing) or come out wrapped, never unwrapped (a frozen plugin is
#      thawed after 3 such creates);
#   3. wait for the plugin to register again (same pid, no restart);
#   4. CREATES_PER_ROUND creates, each checked for the nono argv in the OCI
#      spec containerd wrote and removed again; the first one is started and
#      must run to completion under nono;
#   5. sample the plugin's VmRSS and open file descriptors.
# After the rounds, the plugin hangs (SIGSTOP) while containerd runs: a
# create must fail (NRI request timeout) or be wrapped, the next ones be
# refused until the thawed plugin has re-registered, and wrapped after.
# Then: no create was ever unwrapped, every round reconnected, fds did not
# grow, RSS stayed within a bound (see below), and the plugin wrote one
# `inject` audit record per wrapped create.
#
# Prints PASS/FAIL lines and `N passed, N failed`; exits 1 on any failure.
# Bounded: ROUNDS x (restart <= 20 s + reconnect <= 30 s + creates).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../scripts/node-env.sh
. "$here/../scripts/node-env.sh"
# shellcheck source=lib/kubefence.sh
. "$here/lib/kubefence.sh"

ROUNDS="${1:-10}"
PER_ROUND="${2:-20}"
VER="${3:-v2.4.2}"

passed=0; failed=0
pass() { passed=$((passed + 1)); echo "PASS $*"; }
fail() {
  failed=$((failed + 1)); echo "FAIL $1: $2"
  {
    [ -s "$W/last.err" ] && { echo "--- CRI error:"; cut -c1-800 "$W/last.err"; }
    [ -f "${KF_PLUGIN_LOG:-}" ] && { echo "--- plugin log (tail):"; tail -6 "$KF_PLUGIN_LOG"; }
  } | sed 's/^/    | /'
}
cleanup() {
  local rc=$?
  set +e
  kf_stop_all
  [ -n "${KUBEFENCE_NODE_DIR:-}" ] && kf_node_down "$KUBEFENCE_NODE_DIR" >/dev/null 2>&1
  [ -n "${KF_WORK:-}" ] && rm -rf "$KF_WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

t_start=$SECONDS
kf_work_init kubefence-fault-node
W="$KF_WORK"
kf_build || { echo "FAIL build"; echo "0 passed, 1 failed"; exit 1; }
kf_host_dir_install || { echo "FAIL install"; echo "0 passed, 1 failed"; exit 1; }
kf_webhook_start webhook || { echo "FAIL webhook did not start"; echo "0 passed, 1 failed"; exit 1; }
KUBEFENCE_IMAGES="pause busybox" kf_node_up "$VER" >"$W/node-up.log" 2>&1 \
  || { cat "$W/node-up.log"; echo "FAIL node up"; echo "0 passed, 1 failed"; exit 1; }
KF_AUDIT="$W/plugin.audit.jsonl" KF_PLUGIN_LOG="$W/plugin.log"
kf_plugin_start || { echo "FAIL plugin did not register"; tail "$W/plugin.log"; echo "0 passed, 1 failed"; exit 1; }
PLUGIN_PID="$KF_PLUGIN_PID"

printf 'echo KF done\n' >"$W/true.sh"
kf_pod_json "$W/pod.json" generateName=fault- '{}' "app|kubefence.test/busybox:1|sh|$W/true.sh"
kf_admit "$W/pod.json" team-a "$W/admitted.json" || { echo "FAIL admission"; echo "0 passed, 1 failed"; exit 1; }
kf_runp "$W/admitted.json" team-a || { fail "sandbox" "crictl runp refused"; echo "$passed passed, $failed failed"; exit 1; }
[ "$KF_POD_HANDLER" = nono-runc ] || fail "sandbox handler" "'$KF_POD_HANDLER', expected nono-runc"
kf_ctr_config "$W/admitted.json" app "$W/ctr-base.json"
pass "set-up: containerd $VER, plugin pid $PLUGIN_PID, pod $KF_POD_NAME ($KF_POD_HANDLER) $KF_POD_ID"

attempt=0
n_wrapped=0; n_refused=0; n_unwrapped=0; n_other=0
# try_create: one create in the pod with a new attempt number. Sets T_RESULT
# to wrapped | refused | unwrapped | error, and removes what it created.
try_create() {
  attempt=$((attempt + 1))
  python3 - "$W/ctr-base.json" "$attempt" >"$W/ctr.json" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1])); c["metadata"]["attempt"] = int(sys.argv[2])
c["log_path"] = "app-%s.log" % sys.argv[2]
print(json.dumps(c))
EOF
  T_CID=""
  if ! T_CID="$(crictl create "$KF_POD_ID" "$W/ctr.json" "$KF_POD_CFG" 2>"$W/last.err")"; then
    # crictl prints the CRI error with the quotes escaped
    if grep -qE 'required plugin \\?"kubefence\\?" not present' "$W/last.err"; then T_RESULT=refused
    else T_RESULT=error; cp "$W/last.err" "$W/last-error.err"; fi
    T_CID=""
    return 0
  fi
  local a0
  a0="$(crictl inspect -o go-template --template '{{index .info.runtimeSpec.process.args 0}} {{index .info.runtimeSpec.process.args 1}}' "$T_CID" 2>/dev/null || echo "?")"
  if [ "$a0" = "/nono/nono wrap" ]; then T_RESULT=wrapped; else T_RESULT=unwrapped; T_ARGS="$a0"; fi
}
rm_ctr() { [ -n "$T_CID" ] && crictl rm -f "$T_CID" >/dev/null 2>&1 || true; }
tally() {
  case "$T_RESULT" in
    wrapped) n_wrapped=$((n_wrapped + 1)) ;;
    refused) n_refused=$((n_refused + 1)) ;;
    unwrapped) n_unwrapped=$((n_unwrapped + 1)); fail "create $attempt" "UNWRAPPED: args '$T_ARGS'" ;;
    *) n_other=$((n_other + 1)) ;;
  esac
}

sample() { # -> "RSS_KiB FDS"
  echo "$(awk '/VmRSS/ {print $2}' "/proc/$PLUGIN_PID/status") $(ls "/proc/$PLUGIN_PID/fd" | wc -l)"
}
rss=(); fds=(); reconnected=0; raced=0; started_ok=0

for r in $(seq 1 "$ROUNDS"); do
  before="$(kf_plugin_registrations)"
  frozen=""
  if [ $((r % 2)) -eq 0 ]; then kill -STOP "$PLUGIN_PID"; frozen=1; fi
  if ! kf_node_restart >"$W/restart.log" 2>&1; then
    [ -n "$frozen" ] && kill -CONT "$PLUGIN_PID"
    fail "round $r: containerd restart" "$(tail -3 "$W/restart.log" | tr '\n' ' ')"; break
  fi
  # racing the reconnect: creates before the plugin is back
  for _ in 1 2 3; do
    [ "$(kf_plugin_registrations)" -gt "$before" ] && break
    try_create; tally; rm_ctr; raced=$((raced + 1))
    [ -n "$frozen" ] && [ "$T_RESULT" != refused ] && fail "round $r: create with the plugin frozen" "$T_RESULT, expected refused"
  done
  [ -n "$frozen" ] && kill -CONT "$PLUGIN_PID"
  if kf_plugin_wait_registered "$before" 300; then
    reconnected=$((reconnected + 1))
  else
    fail "round $r: plugin re-registered within 30 s" "registrations still $before"; break
  fi
  for i in $(seq 1 "$PER_ROUND"); do
    try_create; tally
    if [ "$T_RESULT" != wrapped ]; then
      [ "$T_RESULT" = unwrapped ] || fail "round $r create $i" "$T_RESULT (plugin registered)"
    elif [ "$i" = 1 ]; then
      st="$(kf_start_wait "$T_CID" 30)" || true
      if [ "$st" = "CONTAINER_EXITED 0" ] && kf_logs "$T_CID" | grep -q 'KF done'; then
        started_ok=$((started_ok + 1))
      else
        fail "round $r: started wrapped container" "state '$st', output: $(kf_logs "$T_CID" | tail -3 | tr '\n' ' ')"
      fi
    fi
    rm_ctr
  done
  read -r s_rss s_fd < <(sample)
  rss+=("$s_rss"); fds+=("$s_fd")
  echo "     round $r: registrations $before -> $(kf_plugin_registrations), plugin RSS ${s_rss} KiB, fds $s_fd"
done

# A plugin that hangs while registered: containerd's NRI request times out
# (KUBEFENCE_NRI_REQUEST_TIMEOUT, 2 s here).
before="$(kf_plugin_registrations)"
kill -STOP "$PLUGIN_PID"
hung=()
for _ in 1 2 3; do try_create; tally; rm_ctr; hung+=("$T_RESULT"); done
kill -CONT "$PLUGIN_PID"
echo "     hung plugin, last create error: $(grep -o 'desc = .*' "$W/last-error.err" 2>/dev/null | head -1 | cut -c1-300)"
case " ${hung[*]} " in
  *" unwrapped "*) fail "hung plugin" "a create came out unwrapped: ${hung[*]}" ;;
  *" wrapped "*) fail "hung plugin" "a create with the plugin stopped was wrapped?: ${hung[*]}" ;;
  *) pass "hung plugin: creates failed closed (${hung[*]})" ;;
esac
if kf_plugin_wait_registered "$before" 300; then
  try_create; tally; r0="$T_RESULT"; rm_ctr
  [ "$r0" = wrapped ] && pass "thawed plugin re-registered; next create wrapped" || fail "after the hang" "next create $r0"
else
  fail "thawed plugin re-registered within 30 s" "registrations still $before"
fi
read -r s_rss s_fd < <(sample)
rss+=("$s_rss"); fds+=("$s_fd")

kill -0 "$PLUGIN_PID" 2>/dev/null && pass "plugin pid $PLUGIN_PID alive through $ROUNDS containerd restarts" \
  || fail "plugin alive" "pid $PLUGIN_PID exited"
[ "$reconnected" -eq "$ROUNDS" ] && pass "plugin re-registered after every restart ($reconnected/$ROUNDS)" \
  || fail "plugin re-registered after every restart" "$reconnected/$ROUNDS"
total=$((n_wrapped + n_refused + n_unwrapped + n_other))
[ "$n_unwrapped" -eq 0 ] && pass "no create came out unwrapped: $total creates, $n_wrapped wrapped, $n_refused refused by the default validator (while the plugin was away), $n_other other errors; $raced raced the reconnect" \
  || fail "no unwrapped create" "$n_unwrapped of $total unwrapped"
[ "$n_wrapped" -ge $((ROUNDS * PER_ROUND)) ] && pass "all $((ROUNDS * PER_ROUND)) creates after re-registration wrapped" \
  || fail "creates after re-registration" "only $n_wrapped wrapped"
[ "$started_ok" -eq "$ROUNDS" ] && pass "one wrapped container per round ran to completion under nono ($started_ok/$ROUNDS)" \
  || fail "wrapped containers ran" "$started_ok/$ROUNDS"
# The hung plugin answers the requests it got once thawed, after containerd
# gave up on them: those are audited as inject too, without a container.
injects="$(grep -c '"outcome":"inject"' "$KF_AUDIT" || true)"
[ "$injects" -ge "$n_wrapped" ] && [ "$injects" -le $((n_wrapped + ${#hung[@]})) ] \
  && pass "an inject audit record per wrapped create ($injects for $n_wrapped, + up to ${#hung[@]} answered late by the hung plugin)" \
  || fail "inject audit records" "$injects records for $n_wrapped wrapped creates"

if [ "${#fds[@]}" -ge 2 ]; then
  # The mux, its tasks and the signal handler hold a fixed set of fds; one
  # connection to the runtime at a time. Any growth across rounds is a leak.
  maxfd="$(printf '%s\n' "${fds[@]:1}" | sort -n | tail -1)"
  [ "$maxfd" -le "${fds[0]}" ] && pass "fds flat: ${fds[*]}" || fail "fds flat" "${fds[*]}"
  # RSS: the first round warms up the allocator and the runtime's buffers;
  # after it, a leak of even 1 KiB per create or 50 KiB per reconnect would
  # add >= ROUNDS*PER_ROUND KiB; allow 1 MiB for allocator noise.
  growth=$(( rss[${#rss[@]} - 1] - rss[0] ))
  bound=1024
  [ "$growth" -le "$bound" ] && pass "RSS flat: ${rss[*]} KiB (growth ${growth} KiB <= ${bound} KiB after round 1)" \
    || fail "RSS flat" "${rss[*]} KiB: growth ${growth} KiB > ${bound} KiB"
fi
grep -q 'lost the runtime; reconnecting' "$KF_PLUGIN_LOG" && pass "plugin logged the lost runtime ($(grep -c 'lost the runtime' "$KF_PLUGIN_LOG") times)" \
  || fail "plugin log" "no 'lost the runtime' line"

echo "# total $((SECONDS - t_start))s"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
