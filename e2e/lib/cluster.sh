# shellcheck shell=bash
# Shared by e2e/cluster-e2e.sh and scripts/chain.sh: the shipped manifests
# applied to a scripts/cluster-env.sh apiserver, and `kubefence-webhook serve
# --config` (the shipped manifests/base/webhook-config.toml, paths rewritten)
# on loopback, authenticated as its ServiceAccount.
#
# Source scripts/cluster-env.sh first and bring the cluster up (KUBECONFIG
# set). Then:
#   kf_cl_manifests WORK PORT BIN   copy manifests/ to WORK/manifests, run
#                                   scripts/bootstrap-webhook-certs.sh into the
#                                   copy's self-signed overlay (KF_CL_GEN), sign a
#                                   127.0.0.1 serving cert with its CA (WORK/wh), add
#                                   overlays/e2e: both webhook configurations'
#                                   clientConfig -> url https://127.0.0.1:PORT/...
#   kf_cl_apply                     kustomize overlays/e2e -> WORK/all.yaml, apply it
#                                   server-side -> WORK/apply.out (errors in
#                                   WORK/kustomize.err / apply.out)
#   kf_cl_webhook_kubeconfig        WORK/webhook.kubeconfig: a TokenRequest token of
#                                   kubefence-system/kubefence-webhook (shipped RBAC)
#   kf_cl_webhook_config MODE OUT [BG_USERS_TOML [BG_GROUPS_TOML]]
#                                   the shipped config, paths moved to WORK, exec mode
#                                   MODE, break-glass users/groups (TOML lists, default [])
#                                   Optional, for both this and kf_cl_webhook_start:
#                                   KF_CL_TLS_DIR=D   [tls] cert/key = D/tls.crt, D/tls.key
#                                                     (default WORK/wh)
#                                   KF_CL_TLS_RELOAD_SECS=N  [tls] reload_interval_secs = N
#                                                     (default: as shipped)
#   kf_cl_webhook_start MODE [BG_USERS_TOML [BG_GROUPS_TOML]] [TAG]
#                                   WORK/webhook-MODE[-TAG].toml, then
#                                   serve --config on 127.0.0.1:PORT; audit records
#                                   appended to WORK/webhook-audit.jsonl, log to
#                                   WORK/webhook.log; waits for /readyz; sets
#                                   KF_CL_WEBHOOK_PID; returns 1 if it did not come up
#   kf_cl_webhook_stop              stops that pid
# (there is no Service network, so the apiserver calls the webhook on loopback.)

KF_CL_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
KF_CL_WEBHOOK_PID=""

_kf_cl_k() { kubectl --request-timeout=20s "$@"; }

kf_cl_manifests() {
  KF_CL_WORK="$1" KF_CL_PORT="$2" KF_CL_BIN="$3"
  local w="$1" port="$2"
  command -v kubectl >/dev/null || { kf_log "kubectl not found (this machine kind has it in /usr/bin)"; return 1; }
  python3 -c 'import yaml' 2>/dev/null || kf_apt_install python3-yaml
  cp -r "$KF_CL_REPO/manifests" "$w/manifests" || return 1
  KF_CL_GEN="$w/manifests/overlays/self-signed/generated"
  rm -rf "$KF_CL_GEN"
  KUBEFENCE_WEBHOOK_BIN="$KF_CL_BIN" "$KF_CL_REPO/scripts/bootstrap-webhook-certs.sh" "$KF_CL_GEN" >/dev/null 2>"$w/bootstrap.log" \
    || { cat "$w/bootstrap.log" >&2; kf_log "bootstrap-webhook-certs.sh failed"; return 1; }
  # The bootstrap cert names the Service's DNS names; the apiserver calls
  # 127.0.0.1 here, so sign one for that with the same CA (the caBundle the
  # bootstrap patch wrote stays right).
  mkdir -p "$w/wh"
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$w/wh/tls.key" \
    -out "$w/wh/tls.csr" -subj "/CN=127.0.0.1" >/dev/null 2>&1
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >"$w/wh/tls.ext"
  openssl x509 -req -in "$w/wh/tls.csr" -CA "$KF_CL_GEN/ca.crt" -CAkey "$KF_CL_GEN/ca.key" -CAcreateserial \
    -out "$w/wh/tls.crt" -days 1 -extfile "$w/wh/tls.ext" >/dev/null 2>&1 || { kf_log "webhook cert"; return 1; }

  mkdir -p "$w/manifests/overlays/e2e"
  cat >"$w/manifests/overlays/e2e/kustomization.yaml" <<EOF
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
# e2e only: no Service network, so the apiserver calls the webhook
# process on loopback. Nothing else differs from overlays/self-signed.
resources:
  - ../self-signed
patches:
  - target: {group: admissionregistration.k8s.io, kind: MutatingWebhookConfiguration, name: kubefence}
    patch: |-
      - op: remove
        path: /webhooks/0/clientConfig/service
      - op: add
        path: /webhooks/0/clientConfig/url
        value: https://127.0.0.1:$port/mutate
  - target: {group: admissionregistration.k8s.io, kind: ValidatingWebhookConfiguration, name: kubefence}
    patch: |-
      - op: remove
        path: /webhooks/0/clientConfig/service
      - op: add
        path: /webhooks/0/clientConfig/url
        value: https://127.0.0.1:$port/validate
EOF
}

kf_cl_apply() {
  local w="$KF_CL_WORK"
  _kf_cl_k kustomize "$w/manifests/overlays/e2e" >"$w/all.yaml" 2>"$w/kustomize.err" \
    && _kf_cl_k apply --server-side --field-manager=kubefence-e2e -f "$w/all.yaml" >"$w/apply.out" 2>&1
}

kf_cl_webhook_config() { # MODE OUT [BG_USERS_TOML [BG_GROUPS_TOML]]
  python3 - "$KF_CL_REPO/manifests/base/webhook-config.toml" "$2" "$KF_CL_PORT" "$KF_CL_REPO/profiles" \
    "${KF_CL_TLS_DIR:-$KF_CL_WORK/wh}" "$KF_CL_GEN" "$1" "${3:-[]}" "${4:-[]}" "${KF_CL_TLS_RELOAD_SECS:-}" <<'PY'
import re, sys, tomllib
src, out, port, profiles, wh, gen, mode, bg_users, bg_groups, reload_secs = sys.argv[1:]
s = open(src).read()
subs = [
    (r'^listen = .*$', 'listen = "127.0.0.1:%s"' % port),
    (r'^catalog_dir = .*$', 'catalog_dir = "%s"' % profiles),
    (r'^cert = .*$', 'cert = "%s/tls.crt"' % wh),
    (r'^key = .*$', 'key = "%s/tls.key"' % wh),
    (r'^signing_key = .*$', 'signing_key = "%s/decision-signing.pem"' % gen),
    (r'^public_keys = .*$', 'public_keys = ["%s/decision-public.pem"]' % gen),
    (r'^mode = .*$', 'mode = "%s"' % mode),
    (r'^break_glass_users = .*$', 'break_glass_users = %s' % bg_users),
    (r'^break_glass_groups = .*$', 'break_glass_groups = %s' % bg_groups),
]
for pat, rep in subs:
    s, n = re.subn(pat, rep, s, flags=re.M)
    assert n == 1, "%s matched %d times in %s" % (pat, n, src)
if reload_secs:
    line = 'reload_interval_secs = %d' % int(reload_secs)
    s, n = re.subn(r'^reload_interval_secs = .*$', line, s, flags=re.M)
    if n == 0:  # not in the shipped file: add it under [tls], after key
        s, n = re.subn(r'^(key = .*)$', r'\1\n' + line, s, flags=re.M)
    assert n == 1, "reload_interval_secs: %d places in %s" % (n, src)
c = tomllib.loads(s)
assert not reload_secs or c["tls"]["reload_interval_secs"] == int(reload_secs), c["tls"]
open(out, "w").write("# generated by e2e/lib/cluster.sh from manifests/base/webhook-config.toml\n" + s)
PY
}

# The webhook's identity: its ServiceAccount, through a TokenRequest (the
# apiserver signs it; no controller needed).
kf_cl_webhook_kubeconfig() {
  local w="$KF_CL_WORK" token
  token="$(_kf_cl_k create token kubefence-webhook -n kubefence-system --duration=2h 2>"$w/token.err")" \
    || { kf_log "TokenRequest for kubefence-webhook failed: $(cat "$w/token.err")"; return 1; }
  python3 - "$KUBECONFIG" "$w/webhook.kubeconfig" "$token" <<'PY' || return 1
import sys, yaml
src, out, token = sys.argv[1:]
c = yaml.safe_load(open(src))
c["users"] = [{"name": "kubefence-webhook", "user": {"token": token}}]
c["contexts"] = [{"name": "webhook", "context": {"cluster": "kubefence-e2e", "user": "kubefence-webhook"}}]
c["current-context"] = "webhook"
open(out, "w").write(yaml.safe_dump(c))
PY
  chmod 600 "$w/webhook.kubeconfig"
}

kf_cl_webhook_start() { # MODE [BG_USERS_TOML [BG_GROUPS_TOML]] [TAG]
  local w="$KF_CL_WORK" _ cfg="$KF_CL_WORK/webhook-$1${4:+-$4}.toml"
  kf_cl_webhook_config "$1" "$cfg" "${2:-[]}" "${3:-[]}" || { kf_log "could not generate the webhook config"; return 1; }
  KUBECONFIG="$w/webhook.kubeconfig" RUST_LOG="${RUST_LOG:-info}" \
    "$KF_CL_BIN" serve --config "$cfg" \
    </dev/null >>"$w/webhook-audit.jsonl" 2>>"$w/webhook.log" &
  KF_CL_WEBHOOK_PID=$!
  for _ in $(seq 1 150); do
    kill -0 "$KF_CL_WEBHOOK_PID" 2>/dev/null || { tail -20 "$w/webhook.log" >&2; kf_log "webhook exited"; KF_CL_WEBHOOK_PID=""; return 1; }
    if curl -fsS --cacert "$KF_CL_GEN/ca.crt" "https://127.0.0.1:$KF_CL_PORT/readyz" >/dev/null 2>&1; then
      kf_log "webhook up (exec mode $1, break-glass users ${2:-[]} groups ${3:-[]}, pid $KF_CL_WEBHOOK_PID, https://127.0.0.1:$KF_CL_PORT)"; return 0
    fi
    sleep 0.2
  done
  tail -20 "$w/webhook.log" >&2; kf_log "webhook not ready in 30s"; return 1
}

kf_cl_webhook_stop() {
  [ -n "$KF_CL_WEBHOOK_PID" ] || return 0
  _kf_cluster_kill_wait "$KF_CL_WEBHOOK_PID"; KF_CL_WEBHOOK_PID=""
}
