#!/usr/bin/env bash
# kubefence node end-to-end suite (issue 4): the real webhook (dev mode)
# admits pods, a throw-away containerd node (scripts/node-env.sh) runs them
# with crictl, and the real kubefence-nri plugin wraps them in nono.
#
#   e2e/node-e2e.sh [VERSION...]      default: v2.2.9 v2.4.2
#
# Self-provisioning (containerd, crictl + runc, images, nono: cached under
# /var/cache/kubefence), everything else under one temp dir plus the node's
# own /tmp/kubefence-node.* dir (containerd limits the shim socket path, so
# the node dir cannot live deeper); a trap stops every process it started
# (by pid), tears the node down and removes both dirs.
#
# Prints `PASS <name>` / `FAIL <name>: <why>` (with the CRI error, the
# container's output, the plugin log and the containerd log tail on failure),
# then `N passed, N failed`; exits 1 if any check failed.
#
# Environment:
#   KUBEFENCE_E2E_NONO   nono binary to install instead of scripts/provision-nono.sh's
#   KUBEFENCE_E2E_KEEP=1 keep the temp dir (not the node) for inspection
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../scripts/node-env.sh
. "$here/../scripts/node-env.sh"
# shellcheck source=lib/kubefence.sh
. "$here/lib/kubefence.sh"

VERSIONS=("$@")
[ "${#VERSIONS[@]}" -gt 0 ] || VERSIONS=(v2.2.9 v2.4.2)

passed=0; failed=0
pass() { passed=$((passed + 1)); echo "PASS $*"; }
# fail NAME WHY [CID]: the failure line, then what is needed to diagnose it
fail() {
  local name="$1" why="$2" cid="${3:-}"
  failed=$((failed + 1))
  echo "FAIL $name: $why"
  {
    if [ -s "$KF_WORK/last.err" ]; then echo "--- CRI error:"; cut -c1-1200 "$KF_WORK/last.err"; fi
    if [ -n "$cid" ]; then echo "--- container $cid output:"; kf_logs "$cid" 2>&1 | tail -20; fi
    if [ -f "${KF_PLUGIN_LOG:-}" ]; then echo "--- plugin log (tail):"; tail -8 "$KF_PLUGIN_LOG"; fi
    if [ -f "${KF_AUDIT:-}" ]; then echo "--- plugin audit (tail):"; tail -3 "$KF_AUDIT" | cut -c1-600; fi
    if [ -f "${CONTAINERD_LOG:-}" ]; then
      echo "--- containerd log (last warnings/errors):"
      grep -E 'level=(error|warning)' "$CONTAINERD_LOG" | tail -5 | cut -c1-600
    fi
  } | sed 's/^/    | /'
}

cleanup() {
  local rc=$?
  set +e
  kf_stop_all
  [ -n "${KUBEFENCE_NODE_DIR:-}" ] && kf_node_down "$KUBEFENCE_NODE_DIR" >/dev/null 2>&1
  if [ -n "${KF_WORK:-}" ] && [ -d "$KF_WORK" ]; then
    if [ "${KUBEFENCE_E2E_KEEP:-}" = 1 ]; then echo "kept $KF_WORK" >&2; else rm -rf "$KF_WORK"; fi
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

t_start=$SECONDS
kf_work_init kubefence-e2e
W="$KF_WORK"
mkdir -p "$W/pods" "$W/specs" "$W/sa" "$W/evil"

# ---------------------------------------------------------------- set-up
t=$SECONDS
kf_build || { echo "FAIL build: cargo build"; echo "0 passed, 1 failed"; exit 1; }
echo "# build: $((SECONDS - t))s"
t=$SECONDS
kf_host_dir_install || { echo "FAIL install: kubefence-nri install"; echo "0 passed, 1 failed"; exit 1; }
kf_webhook_start webhook || { echo "FAIL webhook: dev webhook did not start"; echo "0 passed, 1 failed"; exit 1; }
# a second, independent dev webhook: its key is not trusted by the node
kf_webhook_start webhook2 || { echo "FAIL webhook2 did not start"; echo "0 passed, 1 failed"; exit 1; }
"$KF_WEBHOOK" keygen --out "$W/otherkey" >/dev/null
echo "# nono, host dir, webhooks: $((SECONDS - t))s (nono $KF_NONO_SRC: $(file -b "$KF_NONO_SRC" | cut -d, -f1-2,4 | tr -d '\n'))"

# the fake service-account token, mounted like the kubelet does
SECRET="KF-FAKE-SA-TOKEN-$RANDOM$RANDOM"
echo "$SECRET" >"$W/sa/token"
TOKEN_MOUNT="{\"container_path\": \"/var/run/secrets/kubernetes.io/serviceaccount/token\", \"host_path\": \"$W/sa/token\", \"readonly\": true}"
echo "{\"mounts\": [$TOKEN_MOUNT]}" >"$W/extra-token.json"

# the workload's attack volume: a NONO_TOOL_SANDBOX_LAUNCH_SPEC file (as an
# init container or a previous run could leave in a volume) naming a busybox
# it also ships, with read+write on / (docs/nono-inputs.md, attack F)
cp /bin/busybox "$W/evil/busybox"
python3 - "$W/evil" <<'EOF'
import hashlib, json, os, sys
d = sys.argv[1]; host = os.path.join(d, "busybox"); st = os.stat(host)
B = lambda s: list(s.encode())
cmd = "echo KF spec-bypass=running; cat /var/run/secrets/kubernetes.io/serviceaccount/token"
spec = {"real_binary": B("/app/evil/busybox"), "executable_kind": "Elf", "interpreter": None,
        "interpreter_args": [], "argv": [B("sh"), B("-c"), B(cmd)], "env": [B("PATH=/bin")],
        "cwd": B("/"), "stdio_mode": "direct_fds", "stdio_limits": None,
        "caps": {"fs": [{"path": B("/"), "access": "read+write", "is_file": False}],
                 "unix_sockets": [], "network_blocked": False, "proxy_port": None,
                 "proxy_bind_ports": [], "tcp_connect_ports": [], "tcp_bind_ports": []},
        "allowed_exec_paths": [B("/")],
        "expected_dev": st.st_dev, "expected_ino": st.st_ino, "expected_size": st.st_size,
        "expected_mtime_nanos": st.st_mtime_ns,
        "expected_sha256": hashlib.sha256(open(host, "rb").read()).hexdigest()}
json.dump(spec, open(os.path.join(d, "spec.json"), "w"))
EOF

# ---------------------------------------------------------------- workloads
# busybox sh probe and python3 probe: one "KF key=value" line per check
cat >"$W/probe.sh" <<'EOF'
probe() { n=$1; shift; if out=$("$@" 2>&1); then echo "KF $n=ok"; else echo "KF $n=denied: $out"; fi; }
echo "KF pid1-argv=$(tr '\0' '\n' </proc/1/cmdline | head -2 | tr '\n' '|')"
echo "KF pid1-exe=$(readlink /proc/1/exe)"
probe allowed-read cat /etc/passwd
probe tmp-write sh -c 'echo x >/tmp/kf-probe && cat /tmp/kf-probe'
probe token-read cat /var/run/secrets/kubernetes.io/serviceaccount/token
echo "KF nono-env=$(env | grep '^NONO_' | grep -v '^NONO_CAP_FILE=' | tr '\n' ',')"
echo "KF done"
EOF
cat >"$W/probe.py" <<'EOF'
import os, socket
def probe(name, f):
    try:
        f()
        print("KF %s=ok" % name)
    except Exception as e:
        print("KF %s=denied: %s: %s" % (name, type(e).__name__, e))
try:
    argv = open("/proc/1/cmdline").read().split("\0")
    print("KF pid1-argv=%s|%s|" % (argv[0], argv[1]))
    print("KF pid1-exe=%s" % os.readlink("/proc/1/exe"))
except Exception as e:
    print("KF pid1-argv=denied: %s" % e)
probe("allowed-read", lambda: open("/etc/os-release").read())
probe("tmp-write", lambda: open("/tmp/kf-probe", "w").write("x"))
probe("token-read", lambda: print(open("/var/run/secrets/kubernetes.io/serviceaccount/token").read()))
probe("proc-read", lambda: open("/proc/self/status").read())
probe("socket", lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM).close())
# NONO_CAP_FILE is nono's own (it points at its capability state file)
print("KF nono-env=%s," % ",".join(sorted("%s=%s" % (k, v) for k, v in os.environ.items()
                                           if k.startswith("NONO_") and k != "NONO_CAP_FILE")))
print("KF done")
EOF
printf 'echo KF done\n' >"$W/true.sh"
# a long-running target for scenario 9 (kubectl debug --target)
printf 'import sys, time\nprint("KF app-up", flush=True)\ntime.sleep(600)\n' >"$W/app-wait.py"
BUSYBOX=kubefence.test/busybox:1
DEBIAN=kubefence.test/debian:1

# admit TAG NS NAMEFIELD ANNOTATIONS CONTAINER... -> $W/pods/TAG.admitted.json
admit() {
  local tag="$1" ns="$2" nf="$3" ann="$4"; shift 4
  kf_pod_json "$W/pods/$tag.json" "$nf" "$ann" "$@"
  kf_admit "$W/pods/$tag.json" "$ns" "$W/pods/$tag.admitted.json"
}

kv() { # FILE KEY -> value of "KF KEY=..." (first match)
  grep -m1 "^KF $2=" "$1" 2>/dev/null | cut -d= -f2- || true
}

# run_ctr TAG POD_ID POD_CFG ADMITTED CTR [EXTRA.json]: create+start+wait.
# Sets R_CID, R_STATE, R_LOG (output file), R_SPEC (OCI spec file), R_CFG,
# R_CREATED (1/0). On a refused create the CRI error is in $W/last.err.
run_ctr() {
  local tag="$1" pod="$2" podcfg="$3" admitted="$4" ctr="$5" extra="${6:-}"
  R_CFG="$W/specs/$tag.ctr.json"; R_LOG="$W/specs/$tag.log"; R_SPEC="$W/specs/$tag.spec.json"
  R_CID=""; R_STATE=""; R_CREATED=0
  : >"$R_LOG"; : >"$W/last.err"
  kf_ctr_config "$admitted" "$ctr" "$R_CFG" "$extra"
  if ! kf_create "$pod" "$podcfg" "$R_CFG"; then return 0; fi
  R_CREATED=1; R_CID="$KF_CID"
  kf_spec "$R_CID" "$R_SPEC" || true
  R_STATE="$(kf_start_wait "$R_CID" 30)" || true
  kf_logs "$R_CID" >"$R_LOG" 2>&1 || true
}

# expect_wrapped TAG PROFILE INTERP: the checks of scenario 1 on the last run_ctr
expect_wrapped() {
  local tag="$1" profile="$2" interp="$3" why a
  if [ "$R_CREATED" != 1 ]; then
    fail "$tag: container created" "CRI refused it"; return 1
  fi
  if why="$(kf_py spec-wrapped "$R_SPEC" "$profile" "$KF_HOST_DIR" "$R_CFG")"; then
    pass "$tag: OCI spec runs '/nono/nono wrap --silent --profile /nono/profiles/$profile.json ... -- <original args>', /nono is a read-only bind of the host dir, no NONO_* env"
  else
    fail "$tag: OCI spec wrapped" "$why" "$R_CID"
  fi
  if a="$(kf_audit_find event=create-container outcome=inject "pod=$KF_POD_NAME" "container=$(kf_py get "$R_CFG" metadata.name)" "profile=$profile")"; then
    pass "$tag: plugin audit record inject (profile $profile, key $(echo "$a" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("key_id","?")[:12])')...)"
  else
    fail "$tag: plugin audit record inject" "no matching record in $KF_AUDIT" "$R_CID"
  fi
  if [ "$R_STATE" != "CONTAINER_EXITED 0" ] || ! grep -q '^KF done' "$R_LOG"; then
    fail "$tag: sandboxed workload ran to the end" "state '$R_STATE', output: $(head -c 300 "$R_LOG" | tr '\n' ' ')" "$R_CID"
    return 1
  fi
  pass "$tag: sandboxed workload ran to the end (exit 0)"
  local argv exe
  argv="$(kv "$R_LOG" pid1-argv)"; exe="$(kv "$R_LOG" pid1-exe)"
  if [ "$profile" = strict ]; then
    : # /proc is not readable under strict: checked below as a denial
  elif [ "$(basename "${argv%%|*}")" = "$interp" ] && [ "$(echo "$argv" | cut -d'|' -f2)" = "-c" ] \
       && [[ "$exe" != *nono* ]]; then
    pass "$tag: PID 1 is the workload itself ($argv exe $exe), not nono"
  else
    fail "$tag: PID 1 is the workload" "pid1 argv '$argv' exe '$exe'" "$R_CID"
  fi
  if [ "$(kv "$R_LOG" allowed-read)" = ok ] && [ "$(kv "$R_LOG" tmp-write)" = ok ]; then
    pass "$tag: allowed read (/etc) and /tmp write work"
  else
    fail "$tag: allowed read and /tmp write" "allowed-read '$(kv "$R_LOG" allowed-read)' tmp-write '$(kv "$R_LOG" tmp-write)'" "$R_CID"
  fi
  local tok; tok="$(kv "$R_LOG" token-read)"
  if [[ "$tok" == denied:*"Permission denied"* ]] && ! grep -q "$SECRET" "$R_LOG"; then
    pass "$tag: service-account token read denied ($tok)"
  else
    fail "$tag: token read denied" "token-read '$tok'$(grep -q "$SECRET" "$R_LOG" && echo ', TOKEN CONTENT IN OUTPUT')" "$R_CID"
  fi
  return 0
}

# the plugin's message out of the CRI error
cri_reason() {
  grep -o 'kubefence: refusing container.*([a-z-]*)' "$W/last.err" | head -1 | sed 's/\\"/"/g' | cut -c1-260
}

# expect_reject TAG REASON: the last run_ctr was refused with REASON
expect_reject() {
  local tag="$1" reason="$2"
  if [ "$R_CREATED" = 1 ]; then
    fail "$tag: refused ($reason)" "the container was created (state '$R_STATE')" "$R_CID"; return
  fi
  if grep -q "kubefence: refusing container" "$W/last.err" && grep -q "($reason)" "$W/last.err"; then
    local a=""; a="$(kf_audit_find outcome=reject "reason=$reason" "pod=$KF_POD_NAME" || true)"
    if [ -n "$a" ]; then
      pass "$tag: creation refused, CRI error: $(cri_reason); audit reject/$reason"
    else
      fail "$tag: audit record reject/$reason" "CRI error right but no audit record"
    fi
  else
    fail "$tag: refused ($reason)" "CRI error does not carry the plugin's reason '$reason'"
  fi
}

# new_pod TAG ADMITTED NS [NAME] [HANDLER]: run a pod sandbox, or FAIL
new_pod() {
  local tag="$1"; shift
  : >"$W/last.err"
  if kf_runp "$@"; then return 0; fi
  fail "$tag: pod sandbox" "crictl runp failed"; return 1
}

rm_pod() { crictl stopp "$1" >/dev/null 2>&1 || true; crictl rmp -f "$1" >/dev/null 2>&1 || true; }

# ---------------------------------------------------------------- scenarios
scenario_1() { # admitted pods run wrapped: busybox sh, debian python3, strict
  local v="$1" tag
  tag="[$v] 1 busybox default"
  admit s1-busybox team-a generateName=web- '{}' "app|$BUSYBOX|sh|$W/probe.sh" \
    || { fail "$tag: admission" "webhook"; return; }
  if new_pod "$tag" "$W/pods/s1-busybox.admitted.json" team-a; then
    run_ctr "s1-busybox-$v" "$KF_POD_ID" "$KF_POD_CFG" "$W/pods/s1-busybox.admitted.json" app "$W/extra-token.json"
    if ! expect_wrapped "$tag" default sh && grep -q 'exec /nono/nono: no such file or directory' "$R_LOG"; then
      echo "    | diagnosis: /nono/nono is dynamically linked ($(file -b "$KF_HOST_DIR/nono" | grep -o 'interpreter [^,]*')); the busybox image has no glibc, so the wrapped exec fails (product bug: ship a static nono)"
    fi
    rm_pod "$KF_POD_ID"
  fi

  tag="[$v] 1 debian python3 default"
  admit s1-debian team-a generateName=api- '{}' "app|$DEBIAN|python3|$W/probe.py" \
    || { fail "$tag: admission" "webhook"; return; }
  if new_pod "$tag" "$W/pods/s1-debian.admitted.json" team-a; then
    run_ctr "s1-debian-$v" "$KF_POD_ID" "$KF_POD_CFG" "$W/pods/s1-debian.admitted.json" app "$W/extra-token.json"
    expect_wrapped "$tag" default python3 || true
    cp "$R_LOG" "$W/specs/s1-default-$v.log"
    rm_pod "$KF_POD_ID"
  fi

  tag="[$v] 1 debian python3 strict"
  admit s1-strict team-a name=strict-job '{"container.nono.sh/app": "strict"}' "app|$DEBIAN|python3|$W/probe.py" \
    || { fail "$tag: admission" "webhook"; return; }
  if new_pod "$tag" "$W/pods/s1-strict.admitted.json" team-a; then
    run_ctr "s1-strict-$v" "$KF_POD_ID" "$KF_POD_CFG" "$W/pods/s1-strict.admitted.json" app "$W/extra-token.json"
    if expect_wrapped "$tag" strict python3; then
      local d="$W/specs/s1-default-$v.log" dp ds sp ss
      dp="$(kv "$d" proc-read)"; ds="$(kv "$d" socket)"; sp="$(kv "$R_LOG" proc-read)"; ss="$(kv "$R_LOG" socket)"
      if [ "$dp" = ok ] && [ "$ds" = ok ] && [[ "$sp" == denied:* ]] && [[ "$ss" == denied:* ]]; then
        pass "$tag: strict denies what default allows: /proc (default ok, strict $sp), TCP socket (default ok, strict $ss)"
      else
        fail "$tag: strict denies what default allows" "default proc '$dp' socket '$ds'; strict proc '$sp' socket '$ss'" "$R_CID"
      fi
    fi
    rm_pod "$KF_POD_ID"
  fi
}

scenario_2() { # no decision annotation
  local v="$1"; local tag="[$v] 2 no decision"
  admit s2 team-a generateName=nodec- '{}' "app|$DEBIAN|sh|$W/true.sh" || { fail "$tag: admission" webhook; return; }
  kf_set_annotation "$W/pods/s2.admitted.json" nono.sh/decision --delete "$W/pods/s2.nodecision.json"
  new_pod "$tag" "$W/pods/s2.nodecision.json" team-a "" nono-runc || return
  run_ctr "s2-$v" "$KF_POD_ID" "$KF_POD_CFG" "$W/pods/s2.nodecision.json" app
  expect_reject "$tag" missing-decision
  rm_pod "$KF_POD_ID"
}

scenario_3() { # forged, altered, copied decisions
  local v="$1" tok f
  admit s3 team-a name=forge-me '{}' "app|$DEBIAN|sh|$W/true.sh" || { fail "[$v] 3: admission" webhook; return; }
  admit s3g team-a generateName=web- '{}' "app|$DEBIAN|sh|$W/true.sh" || { fail "[$v] 3: admission" webhook; return; }
  kf_pod_json "$W/pods/s3w2.json" name=forge-me '{}' "app|$DEBIAN|sh|$W/true.sh"
  kf_admit "$W/pods/s3w2.json" team-a "$W/pods/s3w2.admitted.json" "$KF_WH_webhook2_PORT" "$KF_WH_webhook2_DEV/tls.crt" \
    || { fail "[$v] 3: admission by the second webhook" webhook2; return; }
  tok="$(kf_decision "$W/pods/s3.admitted.json")"

  # variant NAME TOKEN NS PODNAME HANDLER REASON
  variant() {
    local name="$1" token="$2" ns="$3" pname="$4" handler="$5" reason="$6" src="${7:-$W/pods/s3.admitted.json}"
    local tag="[$v] 3 $name" f="$W/pods/s3-$name.json"
    kf_set_annotation "$src" nono.sh/decision "$token" "$f"
    new_pod "$tag" "$f" "$ns" "$pname" "$handler" || return 0
    run_ctr "s3-$name-$v" "$KF_POD_ID" "$KF_POD_CFG" "$f" app
    expect_reject "$tag" "$reason"
    rm_pod "$KF_POD_ID"
  }
  # sanity: the untouched decision is accepted on this very pod
  f="$W/pods/s3.admitted.json"
  if new_pod "[$v] 3 control" "$f" team-a forge-me nono-runc; then
    run_ctr "s3-control-$v" "$KF_POD_ID" "$KF_POD_CFG" "$f" app
    if [ "$R_CREATED" = 1 ] && [ "$R_STATE" = "CONTAINER_EXITED 0" ]; then
      pass "[$v] 3 control: the untouched decision runs (so each refusal below is the tampering)"
    else fail "[$v] 3 control: untouched decision runs" "created=$R_CREATED state '$R_STATE'" "$R_CID"; fi
    rm_pod "$KF_POD_ID"
  fi
  variant forged-zero-signature "$(kf_py token-tamper "$tok" sig-zero)" team-a forge-me nono-runc bad-signature
  variant forged-flipped-signature "$(kf_py token-tamper "$tok" sig-flip)" team-a forge-me nono-runc bad-signature
  variant signed-by-other-key "$(kf_py resign "$tok" "$W/otherkey/decision-signing.pem")" team-a forge-me nono-runc bad-signature
  variant second-webhook-instance "$(kf_decision "$W/pods/s3w2.admitted.json")" team-a forge-me nono-runc unknown-key
  variant altered-payload-byte "$(kf_py token-tamper "$tok" payload-byte)" team-a forge-me nono-runc bad-signature
  variant unknown-kid "$(kf_py token-tamper "$tok" kid)" team-a forge-me nono-runc unknown-key
  variant other-namespace "$tok" team-x forge-me nono-runc namespace-mismatch
  variant other-pod-name "$tok" team-a forge-me-too nono-runc pod-mismatch
  variant generatename-bad-suffix "$(kf_decision "$W/pods/s3g.admitted.json")" team-a web-x1 nono-runc pod-mismatch "$W/pods/s3g.admitted.json"
  variant other-handler "$tok" team-a forge-me nono-alt handler-mismatch
}

S4_PODID=""; S4_PODCFG=""
scenario_4_with_plugin() { # plain runc: untouched (first half, plugin running)
  local v="$1"; local tag="[$v] 4 plain runc"
  admit s4 plain generateName=plain- '{}' "app|$BUSYBOX|sh|$W/probe.sh" || { fail "$tag: admission" webhook; return; }
  local h; h="$(kf_py handler "$W/pods/s4.admitted.json" "$KF_RUNTIME_CLASSES")"
  [ "$h" = runc ] || { fail "$tag: webhook leaves a plain-namespace pod on runc" "handler $h"; return; }
  echo "{\"mounts\": [$TOKEN_MOUNT], \"envs\": [{\"key\": \"NONO_ALLOW\", \"value\": \"/\"}, {\"key\": \"KEEP_ME\", \"value\": \"1\"}]}" >"$W/extra-plain.json"
  new_pod "$tag" "$W/pods/s4.admitted.json" plain || return
  S4_PODID="$KF_POD_ID"; S4_PODCFG="$KF_POD_CFG"
  run_ctr "s4a-$v" "$S4_PODID" "$S4_PODCFG" "$W/pods/s4.admitted.json" app "$W/extra-plain.json"
  cp "$R_SPEC" "$W/specs/s4-with-plugin-$v.json" 2>/dev/null || true
  local why
  if [ "$R_CREATED" = 1 ] && why="$(kf_py spec-plain "$R_SPEC" "$R_CFG")"; then
    pass "$tag: with the plugin running, args are exactly crictl's, env kept (incl. NONO_ALLOW), no /nono mount"
  else
    fail "$tag: untouched with the plugin" "${why:-not created}" "$R_CID"
  fi
  if [ "$R_STATE" = "CONTAINER_EXITED 0" ] && [ "$(kv "$R_LOG" token-read)" = ok ]; then
    pass "$tag: runs unsandboxed (token readable: nothing confines runc pods)"
  else
    fail "$tag: runs unsandboxed" "state '$R_STATE' token-read '$(kv "$R_LOG" token-read)'" "$R_CID"
  fi
}
scenario_4_without_plugin() { # second half: the same container config, plugin stopped
  local v="$1"; local tag="[$v] 4 plain runc"
  [ -n "$S4_PODID" ] || return 0
  python3 - "$W/specs/s4a-$v.ctr.json" "$W/specs/s4b-$v.ctr.json" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1])); c["metadata"]["name"] = "app"; c["metadata"]["attempt"] = 1
json.dump(c, open(sys.argv[2], "w"))
EOF
  : >"$W/last.err"
  if kf_create "$S4_PODID" "$S4_PODCFG" "$W/specs/s4b-$v.ctr.json"; then
    kf_spec "$KF_CID" "$W/specs/s4-without-plugin-$v.json"
    local why
    if why="$(kf_py spec-same "$W/specs/s4-with-plugin-$v.json" "$W/specs/s4-without-plugin-$v.json")"; then
      pass "$tag: process.args, env and mounts identical with and without the plugin"
    else
      fail "$tag: identical with and without the plugin" "$why" "$KF_CID"
    fi
  else
    fail "$tag: create without the plugin" "CRI refused"
  fi
  rm_pod "$S4_PODID"; S4_PODID=""
}

scenario_5() { # plugin not running: the default validator refuses
  local v="$1"; local tag="[$v] 5 plugin not running"
  admit s5 team-a generateName=noplug- '{}' "app|$DEBIAN|sh|$W/true.sh" || { fail "$tag: admission" webhook; return; }
  local req; req="$(kf_py annotation "$W/pods/s5.admitted.json" required-plugins.noderesource.dev)"
  new_pod "$tag" "$W/pods/s5.admitted.json" team-a || return
  run_ctr "s5-$v" "$KF_POD_ID" "$KF_POD_CFG" "$W/pods/s5.admitted.json" app
  if [ "$R_CREATED" = 1 ]; then
    fail "$tag: default validator refuses" "container created without the plugin (state '$R_STATE')" "$R_CID"
  elif grep -q kubefence "$W/last.err" && ! grep -q 'kubefence: refusing' "$W/last.err"; then
    pass "$tag: pod annotated required-plugins=$req; containerd's default validator refused: $(grep -o 'rpc error.*' "$W/last.err" | head -1 | cut -c1-220)"
  else
    fail "$tag: default validator refuses" "refused for another reason"
  fi
  rm_pod "$KF_POD_ID"
}

scenario_6() { # containerd restart: plugin reconnects, next pod wrapped
  local v="$1" before; local tag="[$v] 6 containerd restart"
  before="$(kf_plugin_registrations)"
  if ! kf_node_restart >"$W/restart.log" 2>&1; then
    fail "$tag: containerd restarted" "$(tail -5 "$W/restart.log" | tr '\n' ' ')"; return
  fi
  if kf_plugin_wait_registered "$before" 300; then
    pass "$tag: plugin reconnected ($(grep -m1 -o 'lost the runtime; reconnecting' "$KF_PLUGIN_LOG" || echo 'no lost-runtime line'); registrations $before -> $(kf_plugin_registrations))"
  else
    fail "$tag: plugin reconnected within 30s" "registrations still $before"; return
  fi
  admit s6 team-a generateName=after- '{}' "app|$DEBIAN|python3|$W/probe.py" || { fail "$tag: admission" webhook; return; }
  new_pod "$tag" "$W/pods/s6.admitted.json" team-a || return
  run_ctr "s6-$v" "$KF_POD_ID" "$KF_POD_CFG" "$W/pods/s6.admitted.json" app "$W/extra-token.json"
  expect_wrapped "$tag: next pod" default python3 || true
  rm_pod "$KF_POD_ID"
}

scenario_7() { # the workload tries to widen its sandbox through NONO_*
  local v="$1"; local tag="[$v] 7 env attack"
  admit s7 team-a generateName=attack- '{}' "app|$DEBIAN|python3|$W/probe.py" || { fail "$tag: admission" webhook; return; }
  local evil="{\"container_path\": \"/app/evil\", \"host_path\": \"$W/evil\", \"readonly\": true}"
  echo "{\"mounts\": [$TOKEN_MOUNT], \"envs\": [{\"key\": \"NONO_ALLOW\", \"value\": \"/\"}]}" >"$W/extra-allow.json"
  echo "{\"mounts\": [$TOKEN_MOUNT, $evil], \"envs\": [{\"key\": \"NONO_TOOL_SANDBOX_LAUNCH_SPEC\", \"value\": \"/app/evil/spec.json\"}]}" >"$W/extra-spec.json"

  # attack ATTACK EXTRA MODE
  attack() {
    local name="$1" extra="$2" mode="$3" t="$tag $1 ($3)"
    new_pod "$t" "$W/pods/s7.admitted.json" team-a || return 0
    run_ctr "s7-$name-$mode-$v" "$KF_POD_ID" "$KF_POD_CFG" "$W/pods/s7.admitted.json" app "$extra"
    local leaked="" tok ne oci
    grep -q "$SECRET" "$R_LOG" && leaked=1
    tok="$(kv "$R_LOG" token-read)"; ne="$(kv "$R_LOG" nono-env)"
    if [ "$R_CREATED" != 1 ]; then
      pass "$t: sandbox not widened: creation refused ($(cri_reason | sed 's/.*: //'))"
      fail "$t: container runs with NONO_* neutralised" "refused instead: $(cri_reason | sed 's/.*: //')"
      rm_pod "$KF_POD_ID"; return 0
    fi
    # the product's contract (README): every NONO_* variable of the container
    # is set to "" (NRI cannot remove variables); a workload value must never
    # reach nono or the workload
    oci="$(python3 -c 'import json,sys; print(" ".join(e for e in json.load(open(sys.argv[1]))["process"]["env"] if e.startswith("NONO_")))' "$R_SPEC" 2>/dev/null || true)"
    local ocival pval
    ocival="$(echo "$oci" | tr ' ' '\n' | grep -v '=$' | grep . || true)"
    pval="$(echo "$ne" | tr ',' '\n' | grep -v '=$' | grep . || true)"
    if [ -n "$leaked" ] || [ "$tok" = ok ]; then
      fail "$t: sandbox not widened" "SANDBOX ESCAPED: the workload read the token ($(grep -m1 'spec-bypass' "$R_LOG" || echo "token-read $tok")); OCI env: $oci" "$R_CID"
    elif [[ "$tok" == denied:*"Permission denied"* ]]; then
      pass "$t: sandbox not widened: workload ran (state '$R_STATE'), token read still denied ($tok)"
    else
      pass "$t: sandbox not widened: nothing ran, nono refused to start (state '$R_STATE': $(grep -m1 '^nono:' "$R_LOG" | cut -c1-160))"
    fi
    if [ -z "$ocival" ] && [ -z "$pval" ]; then
      pass "$t: no workload-chosen NONO_* value reached the container (OCI env: '${oci:-none}'; workload saw '${ne:-nothing: it did not run}')"
    else
      fail "$t: NONO_* neutralised" "OCI spec env has '${ocival}'; workload saw '${pval:-$ne}'; nono said: $(grep -m1 '^nono:' "$R_LOG" | cut -c1-200)" "$R_CID"
    fi
    rm_pod "$KF_POD_ID"
  }
  attack NONO_ALLOW "$W/extra-allow.json" "validator on"
  attack NONO_TOOL_SANDBOX_LAUNCH_SPEC "$W/extra-spec.json" "validator on"
  # the same with the plugin's own validator off (a documented setting): does
  # the env removal itself hold?
  kf_plugin_stop
  kf_plugin_start --sandbox-handler nono-runc --sandbox-handler nono-alt --validator false \
    || { fail "$tag: plugin restart with --validator false" "did not register"; return; }
  attack NONO_ALLOW "$W/extra-allow.json" "validator off"
  attack NONO_TOOL_SANDBOX_LAUNCH_SPEC "$W/extra-spec.json" "validator off"
  kf_plugin_stop
  kf_plugin_start --sandbox-handler nono-runc --sandbox-handler nono-alt \
    || fail "$tag: plugin restart" "did not register"
}

scenario_8() { # second container in the sandbox, re-created container
  local v="$1"; local tag="[$v] 8"
  admit s8 team-a generateName=multi- '{}' "app|$DEBIAN|python3|$W/probe.py" "side|$DEBIAN|python3|$W/probe.py" \
    || { fail "$tag: admission" webhook; return; }
  new_pod "$tag" "$W/pods/s8.admitted.json" team-a || return
  local pod="$KF_POD_ID" podcfg="$KF_POD_CFG"
  run_ctr "s8-app-$v" "$pod" "$podcfg" "$W/pods/s8.admitted.json" app "$W/extra-token.json"
  expect_wrapped "$tag first container" default python3 >/dev/null || true
  run_ctr "s8-side-$v" "$pod" "$podcfg" "$W/pods/s8.admitted.json" side "$W/extra-token.json"
  expect_wrapped "$tag second container in the same sandbox" default python3 || true
  python3 - "$W/extra-token.json" "$W/extra-token-attempt1.json" <<'EOF'
import json, sys
e = json.load(open(sys.argv[1])); e["attempt"] = 1; json.dump(e, open(sys.argv[2], "w"))
EOF
  run_ctr "s8-app-again-$v" "$pod" "$podcfg" "$W/pods/s8.admitted.json" app "$W/extra-token-attempt1.json"
  expect_wrapped "$tag container re-created after it exited (attempt 1)" default python3 || true
  rm_pod "$pod"
}

scenario_9() { # kubectl debug: an ephemeral container the decision does not name
  local v="$1"; local tag="[$v] 9 ephemeral debug container"
  # app gets strict by its own annotation; the pod-wide profile stays the
  # cluster default, which is what any container not named in the decision
  # (kubectl debug's) must get (shared/src/decision.rs profile_for)
  admit s9 team-a generateName=dbg- '{"container.nono.sh/app": "strict"}' "app|$DEBIAN|python3|$W/app-wait.py" \
    || { fail "$tag: admission" webhook; return; }
  local claims pod_profile
  claims="$(python3 - "$(kf_decision "$W/pods/s9.admitted.json")" <<'EOF'
import base64, json, sys
p = sys.argv[1].split(".")[1]
print(json.dumps(json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))))
EOF
)" || true
  pod_profile="$(printf '%s' "$claims" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("profile",""))')" || true
  if [ "$pod_profile" != default ] || ! printf '%s' "$claims" | python3 -c '
import json, sys
c = json.load(sys.stdin)["containers"]
sys.exit(0 if c == {"app": "strict"} else 1)'; then
    fail "$tag: decision fixture" "want pod-wide profile default and containers {app: strict}, claims: $claims"; return
  fi
  new_pod "$tag" "$W/pods/s9.admitted.json" team-a || return 0
  local pod="$KF_POD_ID" podcfg="$KF_POD_CFG" app_cid st
  # the pod's own container, left running (the debug target)
  kf_ctr_config "$W/pods/s9.admitted.json" app "$W/specs/s9-app-$v.ctr.json" "$W/extra-token.json"
  if ! kf_create "$pod" "$podcfg" "$W/specs/s9-app-$v.ctr.json"; then
    fail "$tag: app container created" "CRI refused it"; rm_pod "$pod"; return
  fi
  app_cid="$KF_CID"
  crictl start "$app_cid" >/dev/null 2>"$W/last.err" || true
  for _ in $(seq 1 50); do
    crictl logs "$app_cid" 2>/dev/null | grep -q '^KF app-up' && break; sleep 0.2
  done
  st="$(crictl inspect -o go-template --template '{{.status.state}}' "$app_cid" 2>/dev/null)" || true
  kf_spec "$app_cid" "$W/specs/s9-app-$v.spec.json" || true
  if [ "$st" = CONTAINER_RUNNING ] && crictl logs "$app_cid" 2>/dev/null | grep -q '^KF app-up' \
     && kf_py spec-wrapped "$W/specs/s9-app-$v.spec.json" strict "$KF_HOST_DIR" "$W/specs/s9-app-$v.ctr.json" >/dev/null; then
    pass "$tag: target container app running, wrapped with its own profile strict"
  else
    fail "$tag: target container app running wrapped (strict)" "state '$st'; $(kf_py spec-wrapped "$W/specs/s9-app-$v.spec.json" strict "$KF_HOST_DIR" "$W/specs/s9-app-$v.ctr.json")" "$app_cid"
    rm_pod "$pod"; return
  fi
  # what kubectl debug adds: spec.ephemeralContainers, which the kubelet
  # creates through CRI in the running sandbox; the decision is unchanged
  python3 - "$W/pods/s9.admitted.json" "$W/pods/s9.debug.json" "$BUSYBOX" "$W/probe.sh" <<'EOF'
import json, sys
src, out, image, script = sys.argv[1:]
pod = json.load(open(src))
pod["spec"].setdefault("ephemeralContainers", []).append(
    {"name": "debugger-xyz", "image": image, "command": ["sh", "-c", open(script).read()],
     "targetContainerName": "app", "stdin": True, "tty": True})
json.dump(pod, open(out, "w"), indent=1)
EOF
  run_ctr "s9-debugger-$v" "$pod" "$podcfg" "$W/pods/s9.debug.json" debugger-xyz "$W/extra-token.json"
  expect_wrapped "$tag debugger-xyz (not in the decision: pod-wide profile $pod_profile)" "$pod_profile" sh || true
  st="$(crictl inspect -o go-template --template '{{.status.state}}' "$app_cid" 2>/dev/null)" || true
  [ "$st" = CONTAINER_RUNNING ] || fail "$tag: target container still running after the debug container" "state '$st'" "$app_cid"
  rm_pod "$pod"
}

# ---------------------------------------------------------------- per version
for ver in "${VERSIONS[@]}"; do
  tv=$SECONDS
  if KUBEFENCE_EXTRA_HANDLERS=nono-alt kf_node_up "$ver" >"$W/node-up-$ver.log" 2>&1; then
    pass "[$ver] node up ($((SECONDS - tv))s): $(containerd --version | awk '{print $3}'), handlers runc nono-runc nono-alt, NRI $NRI_SOCKET"
  else
    failed=$((failed + 1)); echo "FAIL [$ver] node up:"; grep -v '^go: downloading' "$W/node-up-$ver.log" | tail -30 | sed 's/^/    | /'
    continue
  fi
  KF_AUDIT="$W/plugin-$ver.audit.jsonl"; KF_PLUGIN_LOG="$W/plugin-$ver.log"
  if kf_plugin_start --sandbox-handler nono-runc --sandbox-handler nono-alt; then
    pass "[$ver] plugin registered: $(grep -m1 -o 'configured by runtime.*' "$KF_PLUGIN_LOG" | cut -c1-120)"
    scenario_1 "$ver"
    scenario_2 "$ver"
    scenario_3 "$ver"
    scenario_7 "$ver"
    scenario_8 "$ver"
    scenario_9 "$ver"
    scenario_4_with_plugin "$ver"
    scenario_6 "$ver"
    kf_plugin_stop
    scenario_5 "$ver"
    scenario_4_without_plugin "$ver"
  else
    fail "[$ver] plugin registered" "$(tail -5 "$KF_PLUGIN_LOG" | tr '\n' ' ')"
  fi
  kf_plugin_stop
  d="$KUBEFENCE_NODE_DIR"
  kf_node_down "$d" >"$W/node-down-$ver.log" 2>&1 || true
  left="$( { [ -e "$d" ] && echo "dir $d"; awk -v p="$d/" 'index($2, p) == 1 {print "mount " $2}' /proc/self/mounts
             pgrep -f "$d/" | sed 's/^/pid /'; ls -d /sys/fs/cgroup/*/"kubefence-e2e-${d##*.}" 2>/dev/null; } || true)"
  if [ -z "$left" ]; then pass "[$ver] node down, nothing left ($((SECONDS - tv))s for $ver)"
  else failed=$((failed + 1)); echo "FAIL [$ver] node down left: $(echo "$left" | tr '\n' ' ')"; fi
done

echo "# total $((SECONDS - t_start))s for ${VERSIONS[*]}"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
