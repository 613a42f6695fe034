#!/usr/bin/env bash
# kubefence, the whole chain: one command, on a fresh machine of this project's kind.
#
#   scripts/chain.sh
#
# Provisions what is missing (kube-apiserver + etcd, containerd v2.4.2,
# crictl + runc, the test images, nono: cached under /var/cache/kubefence),
# builds the webhook and the NRI plugin, then, under temp dirs it removes at
# the end:
#   1. starts etcd + a real kube-apiserver on loopback (scripts/cluster-env.sh),
#   2. applies the shipped manifests (overlays/self-signed; only the webhook
#      configurations' clientConfig points at 127.0.0.1, there is no Service
#      network) and runs `kubefence-webhook serve --config` with the shipped
#      config, authenticated as its ServiceAccount (e2e/lib/cluster.sh),
#   3. labels a namespace nono.sh/mode=enforce and creates a pod in it with
#      `kubectl create` (generateName): the apiserver calls the webhook,
#   4. reads the STORED pod back and verifies its signed decision with the
#      public key from the applied ConfigMap kubefence-decision-keys, for the
#      handler of the RuntimeClass the pod names,
#   5. starts a containerd node with NRI and the kubefence plugin (trusting
#      that same public key), translates the stored pod into CRI configs the
#      way the kubelet does (e2e/lib/kf.py from-pod) and runs it with crictl:
#      shows the args the plugin rewrote and the sandboxed program's output:
#      an allowed read works, the service-account token read fails with
#      "Permission denied",
#   6. tears everything down and checks that no process, mount or file is left.
# Exits non-zero if any step does not show what it should.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=node-env.sh
. "$here/node-env.sh"
# shellcheck source=cluster-env.sh
. "$here/cluster-env.sh"
# shellcheck source=../e2e/lib/kubefence.sh
. "$here/../e2e/lib/kubefence.sh"
# shellcheck source=../e2e/lib/cluster.sh
. "$here/../e2e/lib/cluster.sh"

CONTAINERD="${KUBEFENCE_CHAIN_CONTAINERD:-v2.4.2}"
KUBE="${KUBEFENCE_CHAIN_KUBE:-v1.33.13}"
IMAGE=kubefence.test/debian:1
NS=kf-demo
bold() { if [ -t 1 ]; then printf '\n\033[1m== %s\033[0m\n' "$*"; else printf '\n== %s\n' "$*"; fi; }
say() { echo "   $*"; }
indent() { sed 's/^/   | /'; }
die() { echo; echo "CHAIN FAILED: $*"; exit 1; }
k() { kubectl --request-timeout=20s "$@"; }
jget() { python3 "$KF_PY" get "$@"; }

started_pids=() dirs=()
cleanup() {
  local rc=$? p left=""
  set +e
  trap - EXIT
  bold "7. tear down"
  kf_stop_all
  kf_cl_webhook_stop
  if [ -n "${KUBEFENCE_NODE_DIR:-}" ]; then kf_node_down "$KUBEFENCE_NODE_DIR" >/dev/null 2>&1 && say "node stopped and removed (pods, containerd, shims, mounts, cgroups)"; fi
  if [ -n "${KUBEFENCE_CLUSTER_DIR:-}" ]; then kf_cluster_down "$KUBEFENCE_CLUSTER_DIR" >/dev/null 2>&1 && say "kube-apiserver and etcd stopped, cluster dir removed"; fi
  [ -n "${KF_WORK:-}" ] && rm -rf "$KF_WORK" && say "removed $KF_WORK"
  for p in "${started_pids[@]}"; do kill -0 "$p" 2>/dev/null && left="$left process $p ($(tr '\0' ' ' </proc/"$p"/cmdline 2>/dev/null | cut -c1-60));"; done
  for p in "${dirs[@]}"; do
    [ -e "$p" ] && left="$left file $p;"
    awk -v d="$p/" 'index($2, d) == 1 {print $2}' /proc/self/mounts | grep -q . && left="$left mounts under $p;"
  done
  if [ -n "$left" ]; then say "LEFT BEHIND:$left"; [ "$rc" = 0 ] && rc=1
  else say "checked: none of the ${#started_pids[@]} processes started is alive, no mount or file of the ${#dirs[@]} temp dirs is left"; fi
  if [ "$rc" = 0 ]; then echo; echo "chain: OK"; else echo; echo "chain: FAILED (exit $rc)"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

kf_work_init kubefence-chain
W="$KF_WORK"; dirs+=("$W")
T0=$SECONDS

bold "0. provision and build (cached after the first run)"
t=$SECONDS
kf_build || die "cargo build failed"
say "built $KF_WEBHOOK and $KF_NRI"
kf_host_dir_install || die "installing nono and the profiles failed"
say "nono + profiles/ installed into the node's host dir $KF_HOST_DIR (kubefence-nri install)"
say "($((SECONDS - t))s)"

bold "1. the control plane: etcd + kube-apiserver $KUBE on loopback"
t=$SECONDS
kf_cluster_up "$KUBE" >"$W/cluster-up.log" 2>&1 || { tail -20 "$W/cluster-up.log"; die "the cluster did not come up"; }
dirs+=("$KUBEFENCE_CLUSTER_DIR"); started_pids+=("$KUBE_APISERVER_PID" "$ETCD_PID")
say "kube-apiserver $(k version -o json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["serverVersion"]["gitVersion"])') at $KUBE_APISERVER_URL (pid $KUBE_APISERVER_PID), etcd pid $ETCD_PID, up in $((SECONDS - t))s"
say "KUBECONFIG=$KUBECONFIG (admin); no kubelet, scheduler or controllers: the node below plays the kubelet"

bold "2. the shipped manifests, and the webhook against the apiserver"
port="$(kf_free_port)"
mkdir -p "$W/cl"
kf_cl_manifests "$W/cl" "$port" "$KF_WEBHOOK" || die "preparing the manifests failed"
kf_cl_apply || { cat "$W/cl/kustomize.err" "$W/cl/apply.out" 2>/dev/null | tail -10; die "kubectl apply --server-side failed"; }
say "kubectl apply --server-side -f <kustomize manifests/overlays/self-signed + clientConfig url https://127.0.0.1:$port>:"
indent <"$W/cl/apply.out"
kf_cl_webhook_kubeconfig || die "no token for the kubefence-webhook ServiceAccount"
kf_cl_webhook_start deny 2>>"$W/cl/webhook-start.log" || { cat "$W/cl/webhook-start.log"; die "the webhook did not start"; }
started_pids+=("$KF_CL_WEBHOOK_PID")
say "kubefence-webhook serve --config <manifests/base/webhook-config.toml, paths moved to $W/cl> on https://127.0.0.1:$port (pid $KF_CL_WEBHOOK_PID)"
say "it authenticates as system:serviceaccount:kubefence-system:kubefence-webhook (a TokenRequest token; the shipped RBAC is all it has)"

bold "3. a namespace opts in, a user creates a pod through the apiserver"
k create namespace "$NS" >/dev/null || die "could not create namespace $NS"
k label namespace "$NS" nono.sh/mode=enforce >/dev/null || die "could not label $NS"
say "kubectl create namespace $NS; kubectl label namespace $NS nono.sh/mode=enforce"
say "the pod as the user wrote it (no runtime class, no annotations):"
kf_demo_pod "$W" "$IMAGE" | indent
# The webhook learns namespaces from a watch; until the new one is in its
# cache it denies ("retry in a few seconds") rather than admit unsandboxed.
created=""
for i in $(seq 1 40); do
  if k create -n "$NS" -f "$W/pod.json" -o json >"$W/created.json" 2>"$W/create.err"; then created=1; break; fi
  grep -qi 'retry' "$W/create.err" || break
  sleep 0.5
done
[ -n "$created" ] || { cat "$W/create.err"; die "kubectl create was refused"; }
[ "$i" -gt 1 ] && say "(the webhook asked to retry $((i - 1)) time(s) until its namespace cache had $NS)"
POD="$(jget "$W/created.json" metadata.name)"
say "kubectl create -n $NS -f pod.json  ->  pod/$POD created"
k get pod -n "$NS" "$POD" -o json >"$W/stored.json" || die "kubectl get pod $POD failed"
say "the webhook's audit records for it (what was decided):"
grep -F "\"$NS\"" "$W/cl/webhook-audit.jsonl" | grep -F -e "\"$POD\"" -e '"demo-"' | indent
grep -F "\"$NS\"" "$W/cl/webhook-audit.jsonl" | grep -q . || die "no audit record from the webhook for $NS"
say "the STORED pod (kubectl get pod -n $NS $POD -o json), what the webhook changed:"
python3 - "$W/stored.json" <<'PY' | indent
import json, sys
p = json.load(open(sys.argv[1]))
print("uid:", p["metadata"]["uid"])
print("spec.runtimeClassName:", p["spec"].get("runtimeClassName"))
print("spec.nodeSelector (merged from the RuntimeClass):", json.dumps(p["spec"].get("nodeSelector")))
for k, v in sorted(p["metadata"].get("annotations", {}).items()):
    print("annotation %s: %s" % (k, v if len(v) < 90 else v[:60] + "..." + v[-20:]))
PY
RC="$(jget "$W/stored.json" spec.runtimeClassName 2>/dev/null || true)"
[ "$RC" = nono-runc ] || die "the stored pod's runtimeClassName is '$RC', not nono-runc"
TOKEN="$(python3 "$KF_PY" annotation "$W/stored.json" nono.sh/decision 2>/dev/null)" || die "the stored pod has no nono.sh/decision"

bold "4. the signed decision, verified as the node will"
mkdir -p "$W/node-keys"
k get configmap -n kubefence-system kubefence-decision-keys -o jsonpath='{.data.decision-public\.pem}' >"$W/node-keys/decision-public.pem"
[ -s "$W/node-keys/decision-public.pem" ] || die "no decision-public.pem in ConfigMap kubefence-system/kubefence-decision-keys"
say "the node's trusted key: ConfigMap kubefence-system/kubefence-decision-keys -> $W/node-keys/decision-public.pem"
HANDLER="$(k get runtimeclass "$RC" -o jsonpath='{.handler}')"
[ -n "$HANDLER" ] || die "RuntimeClass $RC has no handler"
say "RuntimeClass $RC -> handler $HANDLER (kubectl get runtimeclass $RC, as the kubelet looks it up)"
say "kubefence-webhook verify --public-keys <that> --namespace $NS --pod $POD --handler $HANDLER <nono.sh/decision>:"
"$KF_WEBHOOK" verify --public-keys "$W/node-keys/decision-public.pem" --namespace "$NS" --pod "$POD" \
  --handler "$HANDLER" "$TOKEN" >"$W/verify.json" 2>&1 || { indent <"$W/verify.json"; die "the stored decision does not verify"; }
indent <"$W/verify.json"
grep -q '"verified": true' "$W/verify.json" || die "verify did not say verified"
if RUST_BACKTRACE=0 "$KF_WEBHOOK" verify --public-keys "$W/node-keys/decision-public.pem" --namespace "$NS" --pod "other-pod" \
     --handler "$HANDLER" "$TOKEN" >"$W/verify-other.txt" 2>&1; then die "the decision verified for another pod name"; fi
say "the same decision for pod other-pod is refused: $(grep -m1 . "$W/verify-other.txt" | cut -c1-200)"

bold "5. the node: containerd $CONTAINERD with NRI, and the kubefence plugin"
t=$SECONDS
kf_node_up "$CONTAINERD" >"$W/node-up.log" 2>&1 || { tail -20 "$W/node-up.log"; die "the node did not come up"; }
dirs+=("$KUBEFENCE_NODE_DIR"); started_pids+=("$CONTAINERD_PID")
say "containerd $(containerd --version | awk '{print $3}') up in $((SECONDS - t))s, runtime handlers runc and nono-runc, NRI socket $NRI_SOCKET"
KF_WH_DEV="$W/node-keys" kf_plugin_start || { tail -20 "$KF_PLUGIN_LOG"; die "the plugin did not register"; }
started_pids+=("$KF_PLUGIN_PID")
say "kubefence-nri run --public-keys $W/node-keys/decision-public.pem: $(grep -m1 -o 'registered with the runtime.*' "$KF_PLUGIN_LOG" | cut -c1-100)"

bold "6. the stored pod on the node (crictl, as the kubelet would)"
SECRET="chain-fake-service-account-token"
mkdir -p "$W/sa" "$W/cri"; echo "$SECRET" >"$W/sa/token"
echo "{\"mounts\": [{\"container_path\": \"/var/run/secrets/kubernetes.io/serviceaccount/token\", \"host_path\": \"$W/sa/token\", \"readonly\": true}]}" >"$W/extra.json"
kf_py from-pod "$W/stored.json" "$HANDLER" "$W/cri" "$KUBEFENCE_POD_LOG_DIR" "$KUBEFENCE_CGROUP_PARENT" "$W/extra.json" >/dev/null \
  || die "kf.py from-pod could not translate the stored pod"
say "kf.py from-pod: stored pod -> CRI PodSandboxConfig + ContainerConfig (service-account token: a fake file mounted read-only):"
python3 - "$W/cri/sandbox.json" "$W/cri/container-app.json" <<'PY' | indent
import json, sys
s, c = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
m = s["metadata"]
print("sandbox metadata: namespace=%s name=%s uid=%s attempt=%d" % (m["namespace"], m["name"], m["uid"], m["attempt"]))
print("sandbox annotations: %s" % ", ".join(sorted(s["annotations"])))
print("namespace options: %s (network 2 = node: no CNI here; pid 1 = per container)" % json.dumps(s["linux"]["security_context"]["namespace_options"]))
print("container app: image %s, command %s <script>, mounts %s" % (c["image"]["image"], " ".join(c["command"][:2]),
      ", ".join(x["container_path"] for x in c.get("mounts", []))))
PY
LOGDIR="$(jget "$W/cri/sandbox.json" log_directory)"
mkdir -p "$LOGDIR/app"
POD_ID="$(crictl runp --runtime "$HANDLER" "$W/cri/sandbox.json" 2>"$W/last.err")" || { cat "$W/last.err"; die "RunPodSandbox failed"; }
say "crictl runp --runtime $HANDLER: sandbox ${POD_ID:0:13} for $NS/$POD"
CID="$(crictl create "$POD_ID" "$W/cri/container-app.json" "$W/cri/sandbox.json" 2>"$W/last.err")" || { cat "$W/last.err"; die "CreateContainer failed"; }
kf_spec "$CID" "$W/spec.json"
say "the plugin's audit record:"
kf_audit_find event=create-container "pod=$POD" | indent || die "no audit record from the plugin for $POD"
say "the container's args in its OCI config.json, rewritten by the plugin:"
python3 -c 'import json,sys; s=json.load(open(sys.argv[1]))
a=s["process"]["args"]; print(" ".join(repr(x) if (x == "" or " " in x) else x for x in a[:a.index("--")+3]) + " <script>")
for m in s["mounts"]:
    if m["destination"] == "/nono": print("mount /nono <- %s (%s)" % (m["source"], ",".join(m["options"])))' "$W/spec.json" | indent \
  || die "the OCI args have no -- (not wrapped)"
kf_py spec-wrapped "$W/spec.json" default "$KF_HOST_DIR" "$W/cri/container-app.json" || die "the container is not wrapped"
state="$(kf_start_wait "$CID" 30)"
say "the sandboxed program's output ($state):"
kf_logs "$CID" | tee "$W/out.log" | indent
grep -q '^PRETTY_NAME=' "$W/out.log" || die "the allowed read did not work"
grep -q 'serviceaccount/token: Permission denied' "$W/out.log" || die "the token read was not denied"
grep -q "$SECRET" "$W/out.log" && die "the token was read"
say "=> a pod created with kubectl, admitted by the webhook through the apiserver, runs in its nono sandbox:"
say "   the allowed read worked, the token read failed with Permission denied"
crictl stopp "$POD_ID" >/dev/null; crictl rmp "$POD_ID" >/dev/null
say "(whole chain in $((SECONDS - T0))s)"
