#!/usr/bin/env bash
# kubefence demo: one command, on a fresh machine of this project's kind.
#
#   scripts/demo.sh         the whole chain through a real kube-apiserver:
#                           runs scripts/chain.sh (see there)
#   scripts/demo.sh --dev   the earlier flow, without an apiserver (below)
#
# --dev: provisions what is missing (containerd v2.4.2, crictl + runc, the test
# images, nono: cached under /var/cache/kubefence), builds the webhook and
# the NRI plugin, then, under temp dirs it removes at the end:
#   1. starts the webhook in dev mode (self-signed TLS, generated signing key),
#   2. starts a containerd node and the kubefence NRI plugin against it,
#   3. admits a sample pod through the webhook (an AdmissionReview as the
#      apiserver sends it) and shows what was decided and the signed decision,
#   4. runs the admitted pod with crictl: shows the args the plugin rewrote
#      and the sandboxed program's output: an allowed read works, the
#      service-account token read fails with "Permission denied",
#   5. tears everything down (no process, mount or file left).
# Exits non-zero if any step does not show what it should.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
case "${1:-}" in
  --dev) shift ;;
  "") exec "$here/chain.sh" ;;
  *) echo "usage: $0 [--dev]" >&2; exit 2 ;;
esac
# shellcheck source=node-env.sh
. "$here/node-env.sh"
# shellcheck source=../e2e/lib/kubefence.sh
. "$here/../e2e/lib/kubefence.sh"

CONTAINERD="${KUBEFENCE_DEMO_CONTAINERD:-v2.4.2}"
IMAGE=kubefence.test/debian:1
bold() { if [ -t 1 ]; then printf '\n\033[1m== %s\033[0m\n' "$*"; else printf '\n== %s\n' "$*"; fi; }
say() { echo "   $*"; }
indent() { sed 's/^/   | /'; }
die() { echo; echo "DEMO FAILED: $*"; exit 1; }

cleanup() {
  local rc=$?
  set +e
  bold "tear down"
  kf_stop_all
  [ -n "${KUBEFENCE_NODE_DIR:-}" ] && kf_node_down "$KUBEFENCE_NODE_DIR" >/dev/null 2>&1 && say "node stopped and removed"
  [ -n "${KF_WORK:-}" ] && rm -rf "$KF_WORK" && say "removed $KF_WORK"
  [ "$rc" = 0 ] && echo && echo "demo: OK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

kf_work_init kubefence-demo
W="$KF_WORK"

bold "0. provision and build (cached after the first run)"
t=$SECONDS
kf_build || die "cargo build failed"
say "built $KF_WEBHOOK and $KF_NRI"
kf_host_dir_install || die "installing nono and the profiles failed"
say "nono + profiles/ installed into the node's host dir $KF_HOST_DIR (kubefence-nri install):"
sed 's/^/     /' "$W/install.log"
say "($((SECONDS - t))s)"

bold "1. the admission webhook (dev mode: namespace team-a is nono.sh/mode=enforce)"
kf_webhook_start webhook || die "the webhook did not start"
say "kubefence-webhook serve --dev --catalog profiles on https://127.0.0.1:$KF_WH_PORT"
say "signing key id: $(python3 -c 'import json,sys
for l in open(sys.argv[1]):
    try: r = json.loads(l)
    except ValueError: continue
    if r.get("fields", {}).get("message") == "dev mode": print(r["fields"]["kid"]); break' "$W/webhook.log")"
say "the node trusts only its public key: $KF_WH_DEV/decision-public.pem"

bold "2. the node: containerd $CONTAINERD with NRI, and the kubefence plugin"
t=$SECONDS
kf_node_up "$CONTAINERD" >"$W/node-up.log" 2>&1 || { tail -20 "$W/node-up.log"; die "the node did not come up"; }
say "containerd $(containerd --version | awk '{print $3}') up in $((SECONDS - t))s, runtime handlers runc and nono-runc, NRI socket $NRI_SOCKET"
kf_plugin_start || { tail -20 "$KF_PLUGIN_LOG"; die "the plugin did not register"; }
say "kubefence-nri run: $(grep -m1 -o 'registered with the runtime.*' "$KF_PLUGIN_LOG" | cut -c1-100)"

bold "3. admit a pod (namespace team-a) through the webhook"
say "the pod as a user wrote it (no runtime class, no annotations):"
kf_demo_pod "$W" "$IMAGE" | indent
kf_admit "$W/pod.json" team-a "$W/admitted.json" || die "the webhook did not admit the pod"
say "the webhook's audit record (what was decided):"
tail -1 "$W/webhook.audit.jsonl" | indent
say "after applying the webhook's JSON patch:"
python3 -c 'import json,sys; p=json.load(open(sys.argv[1])); print("runtimeClassName:", p["spec"].get("runtimeClassName"))
for k, v in sorted(p["metadata"].get("annotations", {}).items()): print("annotation %s: %s" % (k, v if len(v) < 90 else v[:60] + "..." + v[-20:]))' "$W/admitted.json" | indent
say "the signed decision, decoded (kubefence-webhook decode; the node verifies the signature):"
"$KF_WEBHOOK" decode "$(kf_decision "$W/admitted.json")" | indent

bold "4. run it on the node (crictl, as the kubelet would)"
SECRET="demo-fake-service-account-token"
mkdir -p "$W/sa"; echo "$SECRET" >"$W/sa/token"
echo "{\"mounts\": [{\"container_path\": \"/var/run/secrets/kubernetes.io/serviceaccount/token\", \"host_path\": \"$W/sa/token\", \"readonly\": true}]}" >"$W/extra.json"
kf_runp "$W/admitted.json" team-a || { cat "$W/last.err"; die "RunPodSandbox failed"; }
say "pod sandbox team-a/$KF_POD_NAME on runtime handler $KF_POD_HANDLER (the apiserver would have named it like this)"
kf_ctr_config "$W/admitted.json" app "$W/ctr.json" "$W/extra.json"
kf_create "$KF_POD_ID" "$KF_POD_CFG" "$W/ctr.json" || { cat "$W/last.err"; die "CreateContainer failed"; }
kf_spec "$KF_CID" "$W/spec.json"
say "the plugin's audit record:"
kf_audit_find event=create-container "pod=$KF_POD_NAME" | indent || die "no audit record from the plugin"
say "the container's args in its OCI config.json, rewritten by the plugin:"
python3 -c 'import json,sys; s=json.load(open(sys.argv[1]))
a=s["process"]["args"]; print(" ".join(repr(x) if (x == "" or " " in x) else x for x in a[:a.index("--")+3]) + " <script>")
for m in s["mounts"]:
    if m["destination"] == "/nono": print("mount /nono <- %s (%s)" % (m["source"], ",".join(m["options"])))' "$W/spec.json" | indent
kf_py spec-wrapped "$W/spec.json" default "$KF_HOST_DIR" "$W/ctr.json" || die "the container is not wrapped"
state="$(kf_start_wait "$KF_CID" 30)"
say "the sandboxed program's output ($state):"
kf_logs "$KF_CID" | tee "$W/out.log" | indent
grep -q '^PRETTY_NAME=' "$W/out.log" || die "the allowed read did not work"
grep -q 'serviceaccount/token: Permission denied' "$W/out.log" || die "the token read was not denied"
grep -q "$SECRET" "$W/out.log" && die "the token was read"
say "=> the allowed read worked, the token read failed with Permission denied: the workload is in its nono sandbox"
crictl stopp "$KF_POD_ID" >/dev/null; crictl rmp "$KF_POD_ID" >/dev/null
