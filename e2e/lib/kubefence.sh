# shellcheck shell=bash
# Shared by e2e/node-e2e.sh and scripts/demo.sh: build the two binaries,
# install nono + the catalog into a host dir, run the dev webhook, run the NRI
# plugin against a node from scripts/node-env.sh, admit pods through the real
# webhook and turn the admitted pod into crictl configs.
#
# Source scripts/node-env.sh first (it sources e2e/lib/common.sh). Every
# function writes under $KF_WORK (set by kf_work_init) and records the pids it
# starts, so kf_stop_all stops exactly those processes.

KF_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
KF_PY="$KF_ROOT/e2e/lib/kf.py"
KF_RUNTIME_CLASSES="${KF_RUNTIME_CLASSES:-nono=nono-runc}"

# kf_work_init PREFIX: a fresh temp dir in $KF_WORK.
kf_work_init() {
  KF_WORK="$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")"
  chmod 0711 "$KF_WORK"
  KF_PIDS=()
}

kf_py() { python3 "$KF_PY" "$@"; }

# kf_build: the webhook and the plugin (debug build, reused when up to date).
kf_build() {
  local log="$KF_WORK/cargo-build.log"
  (cd "$KF_ROOT" && cargo build -p kubefence-webhook -p kubefence-nri) >"$log" 2>&1 \
    || { tail -30 "$log" >&2; kf_log "cargo build failed"; return 1; }
  KF_WEBHOOK="${CARGO_TARGET_DIR:-$KF_ROOT/target}/debug/kubefence-webhook"
  KF_NRI="${CARGO_TARGET_DIR:-$KF_ROOT/target}/debug/kubefence-nri"
}

# kf_host_dir_install: nono (scripts/provision-nono.sh) and profiles/ staged
# like the image, then `kubefence-nri install` into $KF_WORK/host.
kf_host_dir_install() {
  local nono
  nono="${KUBEFENCE_E2E_NONO:-$("$KF_ROOT/scripts/provision-nono.sh")}" || return 1
  KF_NONO_SRC="$nono"
  mkdir -p "$KF_WORK/stage/profiles"
  cp "$nono" "$KF_WORK/stage/nono"
  cp "$KF_ROOT"/profiles/*.json "$KF_WORK/stage/profiles/"
  KF_HOST_DIR="$KF_WORK/host"
  "$KF_NRI" install --from "$KF_WORK/stage" --to "$KF_HOST_DIR" >"$KF_WORK/install.log" 2>&1 \
    || { cat "$KF_WORK/install.log" >&2; return 1; }
}

kf_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# kf_webhook_start NAME: `serve --dev --catalog profiles` on a free loopback
# port, dev dir $KF_WORK/NAME. Sets KF_WH_<NAME>_{PORT,DEV,PID}; the first
# one started is also KF_WH_PORT / KF_WH_DEV.
kf_webhook_start() {
  local name="$1" port dev pid i
  dev="$KF_WORK/$name"
  for i in 1 2 3; do
    port="$(kf_free_port)"
    (cd "$KF_ROOT" && exec "$KF_WEBHOOK" serve --dev --dev-dir "$dev" --catalog profiles \
      --listen "127.0.0.1:$port") >"$KF_WORK/$name.audit.jsonl" 2>"$KF_WORK/$name.log" &
    pid=$!
    KF_PIDS+=("$pid")
    local ok=""
    for _ in $(seq 1 100); do
      kill -0 "$pid" 2>/dev/null || break
      if curl -sf --cacert "$dev/tls.crt" "https://127.0.0.1:$port/healthz" >/dev/null 2>&1; then ok=1; break; fi
      sleep 0.1
    done
    if [ -n "$ok" ]; then
      printf -v "KF_WH_${name//-/_}_PORT" '%s' "$port"
      printf -v "KF_WH_${name//-/_}_DEV" '%s' "$dev"
      printf -v "KF_WH_${name//-/_}_PID" '%s' "$pid"
      if [ -z "${KF_WH_PORT:-}" ]; then KF_WH_PORT="$port"; KF_WH_DEV="$dev"; fi
      return 0
    fi
    kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
    kf_log "webhook $name did not come up on port $port (attempt $i):"; tail -5 "$KF_WORK/$name.log" >&2
  done
  return 1
}

# kf_plugin_start [EXTRA FLAGS...]: `kubefence-nri run` against $NRI_SOCKET;
# audit records (stdout) to $KF_AUDIT, log to $KF_PLUGIN_LOG. Waits until it
# registered. Keeps appending to the same files across restarts.
kf_plugin_start() {
  KF_AUDIT="${KF_AUDIT:-$KF_WORK/plugin.audit.jsonl}"
  KF_PLUGIN_LOG="${KF_PLUGIN_LOG:-$KF_WORK/plugin.log}"
  local before
  before="$(kf_plugin_registrations)"
  NO_COLOR=1 "$KF_NRI" run --socket "$NRI_SOCKET" --public-keys "$KF_WH_DEV/decision-public.pem" \
    --host-dir "$KF_HOST_DIR" --log-format compact "$@" >>"$KF_AUDIT" 2>>"$KF_PLUGIN_LOG" &
  KF_PLUGIN_PID=$!
  KF_PIDS+=("$KF_PLUGIN_PID")
  kf_plugin_wait_registered "$before" 100
}

# number of "registered with the runtime" lines in the plugin log
kf_plugin_registrations() {
  if [ -f "${KF_PLUGIN_LOG:-}" ]; then grep -c 'registered with the runtime' "$KF_PLUGIN_LOG" || true
  else echo 0; fi
}

# kf_plugin_wait_registered BEFORE TENTHS: waits for one more registration.
kf_plugin_wait_registered() {
  local before="$1" n="$2"
  for _ in $(seq 1 "$n"); do
    [ "$(kf_plugin_registrations)" -gt "$before" ] && return 0
    kill -0 "$KF_PLUGIN_PID" 2>/dev/null || { kf_log "plugin exited"; return 1; }
    sleep 0.1
  done
  return 1
}

kf_plugin_stop() {
  [ -n "${KF_PLUGIN_PID:-}" ] || return 0
  kill -TERM "$KF_PLUGIN_PID" 2>/dev/null || true
  wait "$KF_PLUGIN_PID" 2>/dev/null || true
  KF_PLUGIN_PID=""
}

# kf_stop_all: every process this library started (by pid), newest first.
kf_stop_all() {
  local i pid
  for ((i = ${#KF_PIDS[@]} - 1; i >= 0; i--)); do
    pid="${KF_PIDS[$i]}"
    kill -TERM "$pid" 2>/dev/null || continue
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  KF_PIDS=()
}

# kf_pod_json OUT NAMEFIELD ANNOTATIONS-JSON CONTAINER...
#   NAMEFIELD  name=<n> or generateName=<prefix>
#   CONTAINER  <name>|<image>|<interpreter>|<script file>  -> command [interp, -c, script]
kf_pod_json() {
  local out="$1"; shift
  python3 - "$@" >"$out" <<'EOF'
import json, sys
namefield, ann = sys.argv[1], json.loads(sys.argv[2])
k, v = namefield.split("=", 1)
pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {k: v}, "spec": {"containers": []}}
if ann:
    pod["metadata"]["annotations"] = ann
for c in sys.argv[3:]:
    name, image, interp, script = c.split("|", 3)
    pod["spec"]["containers"].append({"name": name, "image": image,
        "command": [interp, "-c", open(script).read()]})
print(json.dumps(pod, indent=1))
EOF
}

# kf_admit POD.json NAMESPACE OUT [PORT CACERT]: POSTs the AdmissionReview to
# /mutate, applies the patch; OUT = the admitted pod, OUT.response = the reply.
kf_admit() {
  local pod="$1" ns="$2" out="$3" port="${4:-$KF_WH_PORT}" ca="${5:-$KF_WH_DEV/tls.crt}"
  kf_py review "$pod" "$ns" >"$out.review" || return 1
  curl -sS --fail-with-body --cacert "$ca" -H 'content-type: application/json' \
    --data-binary @"$out.review" "https://127.0.0.1:$port/mutate" >"$out.response" || {
    kf_log "POST /mutate failed: $(cat "$out.response" 2>/dev/null)"; return 1; }
  kf_py apply "$pod" "$out.response" >"$out"
}

# kf_decision ADMITTED: the nono.sh/decision annotation
kf_decision() { kf_py annotation "$1" nono.sh/decision; }

# kf_set_annotation ADMITTED KEY VALUE|--delete OUT
kf_set_annotation() {
  python3 - "$@" <<'EOF'
import json, sys
src, key, val, out = sys.argv[1:5]
pod = json.load(open(src))
ann = pod["metadata"].setdefault("annotations", {})
if val == "--delete":
    ann.pop(key, None)
else:
    ann[key] = val
json.dump(pod, open(out, "w"), indent=1)
EOF
}

# kf_runp ADMITTED NAMESPACE [NAME] [HANDLER]: a host-network pod sandbox for
# the admitted pod (final name like the apiserver's if it had generateName).
# Sets KF_POD_NAME, KF_POD_CFG, KF_POD_ID, KF_POD_HANDLER; the CRI error in
# $KF_WORK/last.err.
kf_runp() {
  local admitted="$1" ns="$2" name="${3:-}" handler="${4:-}"
  [ -n "$name" ] || name="$(kf_py name "$admitted")"
  [ -n "$handler" ] || handler="$(kf_py handler "$admitted" "$KF_RUNTIME_CLASSES")"
  KF_POD_NAME="$name"; KF_POD_HANDLER="$handler"
  KF_POD_CFG="$KF_WORK/sandbox-$ns-$name.json"
  kf_py sandbox "$admitted" "$name" "$ns" "uid-$name-$RANDOM" "$KUBEFENCE_POD_LOG_DIR/$ns-$name" \
    "$KUBEFENCE_CGROUP_PARENT" >"$KF_POD_CFG" || return 1
  KF_POD_ID="$(crictl runp --runtime "$handler" "$KF_POD_CFG" 2>"$KF_WORK/last.err")" || return 1
}

# kf_ctr_config ADMITTED CONTAINER OUT [EXTRA.json]
kf_ctr_config() { kf_py container "$1" "$2" ${4:+"$4"} >"$3"; }

# kf_create POD_ID POD_CFG CTR_CFG: sets KF_CID; stderr in $KF_WORK/last.err
kf_create() {
  KF_CID="$(crictl create "$1" "$3" "$2" 2>"$KF_WORK/last.err")"
}

# kf_start_wait CID [SECONDS]: starts it and waits until it exited; prints
# "STATE EXITCODE".
kf_start_wait() {
  local cid="$1" n="${2:-30}" st=""
  crictl start "$cid" >/dev/null 2>"$KF_WORK/last.err" || { echo "START-FAILED"; return 1; }
  for _ in $(seq 1 $((n * 5))); do
    st="$(crictl inspect -o go-template --template '{{.status.state}} {{.status.exitCode}}' "$cid" 2>/dev/null)"
    case "$st" in CONTAINER_EXITED*) break ;; esac
    sleep 0.2
  done
  echo "$st"
}

# kf_logs CID: stdout+stderr of the container
kf_logs() { crictl logs "$1" 2>&1; }

# kf_spec CID OUT: the OCI runtime spec containerd created (crictl inspect
# info.runtimeSpec, the same content as the task's config.json).
kf_spec() {
  crictl inspect -o json "$1" 2>/dev/null | python3 -c '
import json, sys
print(json.dumps(json.load(sys.stdin)["info"]["runtimeSpec"], indent=1, sort_keys=True))' >"$2"
}

# kf_audit_find FIELD=VALUE...: the last plugin audit record matching all
kf_audit_find() {
  python3 - "$KF_AUDIT" "$@" <<'EOF'
import json, sys
path, conds = sys.argv[1], [a.split("=", 1) for a in sys.argv[2:]]
hit = None
for line in open(path, errors="replace"):
    line = line.strip()
    if not line.startswith("{"):
        continue
    try:
        r = json.loads(line)
    except ValueError:
        continue
    if all(str(r.get(k)) == v for k, v in conds):
        hit = line
if hit is None:
    sys.exit(1)
print(hit)
EOF
}

# kf_demo_pod DIR IMAGE: the demos' sample pod: DIR/app.sh (an allowed read
# and write, then the reads the default profile denies) and DIR/pod.json
# (generateName demo-, one container running it). Prints the pod as the
# user wrote it, with the script elided.
kf_demo_pod() {
  local dir="$1" image="$2"
  cat >"$dir/app.sh" <<'EOF'
exec 2>&1
echo "I am PID $$, running: $(tr '\0\n' '  ' </proc/1/cmdline | cut -c1-24)..."
echo "--- allowed: read /etc/os-release"
head -1 /etc/os-release
echo "--- allowed: write /tmp"
echo hello >/tmp/hello && cat /tmp/hello
echo "--- denied: read the service-account token"
cat /var/run/secrets/kubernetes.io/serviceaccount/token
echo "--- denied: list /root"
ls /root
exit 0
EOF
  kf_pod_json "$dir/pod.json" generateName=demo- '{}' "app|$image|sh|$dir/app.sh"
  python3 -c 'import json,sys; p=json.load(open(sys.argv[1])); p["spec"]["containers"][0]["command"][2]="<script>"; print(json.dumps(p))' "$dir/pod.json"
}
