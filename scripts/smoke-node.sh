#!/usr/bin/env bash
# Node smoke test: for each containerd version (default: v2.2.9 v2.4.2), bring
# a throw-away node up (scripts/node-env.sh), run a host-network pod on the
# `runc` handler and on the `nono-runc` handler with crictl (runp, create,
# start, wait, logs, stopp, rmp) using the busybox and the debian image, then
# tear the node down. Prints PASS/FAIL per step and a final
# "N passed, N failed" line; exits non-zero on any failure.
#
#   scripts/smoke-node.sh [VERSION...]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=node-env.sh
. "$here/node-env.sh"

VERSIONS=("$@")
[ "${#VERSIONS[@]}" -gt 0 ] || VERSIONS=(v2.2.9 v2.4.2)

passed=0; failed=0
pass() { passed=$((passed + 1)); echo "PASS: $*"; }
fail() { failed=$((failed + 1)); echo "FAIL: $*"; }

work=""
cleanup() {
  local rc=$?
  [ -n "${KUBEFENCE_NODE_DIR:-}" ] && kf_node_down "$KUBEFENCE_NODE_DIR" || true
  [ -n "$work" ] && rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
work="$(mktemp -d "${TMPDIR:-/tmp}/kubefence-smoke.XXXXXX")"

cri() { crictl "$@"; }

# step NAME CMD...: runs CMD, PASS/FAIL line; output kept in $work/last.out
step() {
  local name="$1"; shift
  if "$@" >"$work/last.out" 2>&1; then
    pass "$name"; return 0
  else
    fail "$name: $(tr '\n' ' ' <"$work/last.out" | cut -c1-400)"; return 1
  fi
}

wait_exited() { # CID -> waits until the container exited, checks exit code 0
  local cid="$1" st i
  for i in $(seq 1 150); do
    st="$(cri inspect -o go-template --template '{{.status.state}} {{.status.exitCode}}' "$cid")"
    case "$st" in CONTAINER_EXITED*) break ;; esac
    sleep 0.2
  done
  echo "state: $st"
  [ "$st" = "CONTAINER_EXITED 0" ]
}

logs_contain() { # CID WORD
  cri logs "$1" 2>&1 | tee /dev/stderr | grep -q -- "$2"
}

json_escape() { local s="$1"; s="${s//\\/\\\\}"; s="${s//\"/\\\"}"; printf '%s' "$s"; }

pod_config() { # NAME [ANNOTATIONS-JSON] -> path of a host-network pod config
  local name="$1" f="$work/pod-$1.json" ann="${2:-{\}}"
  cat >"$f" <<EOF
{
  "metadata": {"name": "$name", "namespace": "kubefence-smoke", "uid": "uid-$name-$$", "attempt": 1},
  "annotations": $ann,
  "log_directory": "$KUBEFENCE_POD_LOG_DIR/$name",
  "linux": {
    "cgroup_parent": "$KUBEFENCE_CGROUP_PARENT",
    "security_context": {"namespace_options": {"network": 2}}
  }
}
EOF
  echo "$f"
}

ctr_config() { # NAME IMAGE CMD-JSON -> path of a container config
  local f="$work/ctr-$1.json"
  cat >"$f" <<EOF
{
  "metadata": {"name": "$1"},
  "image": {"image": "$2"},
  "command": $3,
  "log_path": "$1.log",
  "linux": {}
}
EOF
  echo "$f"
}

run_handler() { # VERSION HANDLER
  local ver="$1" h="$2" tag="[$1 $2]" podcfg pod cid name image cmd word
  podcfg="$(pod_config "smoke-$h")"
  if ! step "$tag runp" cri runp --runtime "$h" "$podcfg"; then return; fi
  pod="$(tail -1 "$work/last.out")"
  step "$tag pod is Ready on handler $h" bash -c \
    "crictl inspectp -o go-template --template '{{.status.state}} {{.status.runtimeHandler}}' $pod | grep -qx 'SANDBOX_READY $h'" || true

  local -a names=(busybox debian) images=(kubefence.test/busybox:1 kubefence.test/debian:1)
  local -a scripts=(
    "echo kubefence-smoke-$h-busybox; ls /bin/ls >/dev/null"
    "perl -e 'print \"kubefence-smoke-$h-perl\\n\"'; python3 -c 'print(\"kubefence-smoke-$h-python\")'"
  )
  local -a words=("kubefence-smoke-$h-busybox" "kubefence-smoke-$h-python")
  local i
  for i in 0 1; do
    name="${names[$i]}"; image="${images[$i]}"; word="${words[$i]}"
    cmd="[\"/bin/sh\", \"-c\", \"$(json_escape "${scripts[$i]}")\"]"
    local ccfg; ccfg="$(ctr_config "$name" "$image" "$cmd")"
    if ! step "$tag create $name" cri create "$pod" "$ccfg" "$podcfg"; then continue; fi
    cid="$(tail -1 "$work/last.out")"
    step "$tag start $name" cri start "$cid" || continue
    step "$tag $name exited 0" wait_exited "$cid" || true
    step "$tag $name logs contain '$word'" logs_contain "$cid" "$word" || true
  done

  step "$tag stopp" cri stopp "$pod" || true
  step "$tag rmp" cri rmp "$pod" || true
  step "$tag no pod left" bash -c "[ -z \"\$(crictl pods -q)\" ]" || true
}

# The NRI default validator is on: a container whose pod requires an NRI plugin
# that is not connected must be refused (and the refusal must name it).
validator_check() { # VERSION
  local tag="[$1 default-validator]" podcfg pod ccfg
  podcfg="$(pod_config smoke-validator '{"required-plugins.noderesource.dev/container.guarded": "[\"kubefence\"]"}')"
  step "$tag runp (pod requires plugin kubefence for container guarded)" cri runp --runtime runc "$podcfg" || return 0
  pod="$(tail -1 "$work/last.out")"
  ccfg="$(ctr_config guarded kubefence.test/busybox:1 '["/bin/true"]')"
  if cri create "$pod" "$ccfg" "$podcfg" >"$work/last.out" 2>&1; then
    fail "$tag create guarded was NOT refused although plugin kubefence is missing"
  elif grep -q kubefence "$work/last.out"; then
    pass "$tag create guarded refused: $(grep -o 'rpc error.*' "$work/last.out" | head -1 | cut -c1-200)"
  else
    fail "$tag create guarded failed for another reason: $(tr '\n' ' ' <"$work/last.out" | cut -c1-300)"
  fi
  ccfg="$(ctr_config free kubefence.test/busybox:1 '["/bin/true"]')"
  step "$tag create of an unguarded container in the same pod still works" cri create "$pod" "$ccfg" "$podcfg" || true
  step "$tag stopp+rmp" bash -c "crictl stopp $pod && crictl rmp $pod" || true
}

t0=$SECONDS
for ver in "${VERSIONS[@]}"; do
  tv=$SECONDS
  if kf_node_up "$ver" >"$work/up-$ver.log" 2>&1; then
    pass "[$ver] node up ($((SECONDS - tv))s): $(containerd --version 2>/dev/null | awk '{print $3}'), runc $(runc --version | awk 'NR==1{print $3}'), NRI socket $NRI_SOCKET"
  else
    fail "[$ver] node up (log follows)"
    grep -v '^go: downloading' "$work/up-$ver.log" | tail -40 | sed 's/^/    | /'

    continue
  fi
  step "[$ver] CRI info RuntimeReady" bash -c "crictl info -o go-template --template '{{range .status.conditions}}{{.type}}={{.status}} {{end}}' | tee /dev/stderr | grep -q RuntimeReady=true" || true
  step "[$ver] NRI enabled with default validator" bash -c \
    "grep -q 'enable = true' '$CONTAINERD_CONFIG' && [ -S '$NRI_SOCKET' ]" || true
  for h in runc nono-runc; do
    run_handler "$ver" "$h"
  done
  validator_check "$ver"
  d="$KUBEFENCE_NODE_DIR"
  kf_node_down "$d" >"$work/down-$ver.log" 2>&1 || true
  leftovers="$( { [ -e "$d" ] && echo "dir $d"; awk -v p="$d/" 'index($2, p) == 1 {print "mount " $2}' /proc/self/mounts
                  pgrep -f "$d/" | sed 's/^/pid /'; ls -d /sys/fs/cgroup/*/"kubefence-e2e-${d##*.}" 2>/dev/null; } || true)"
  if [ -z "$leftovers" ]; then pass "[$ver] node down, nothing left ($((SECONDS - tv))s for this version)"
  else fail "[$ver] node down left: $(echo "$leftovers" | tr '\n' ' ')"; fi
done
echo "smoke-node: total $((SECONDS - t0))s for ${VERSIONS[*]}"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
