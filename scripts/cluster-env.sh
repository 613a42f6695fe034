#!/usr/bin/env bash
# A throw-away control plane (etcd + kube-apiserver, nothing else) on loopback
# for the kubefence cluster e2e tests.
#
#   scripts/cluster-env.sh up [VERSION]   provision (scripts/provision-apiserver.sh,
#                                         default v1.33.13), generate PKI, start
#                                         etcd and kube-apiserver under a fresh
#                                         temp dir, wait for /readyz; prints
#                                         `export ...` lines (eval them) and
#                                         writes DIR/env
#   scripts/cluster-env.sh env [DIR]      print the env of a running cluster
#   scripts/cluster-env.sh down [DIR]     stop both, remove DIR
#
# DIR defaults to $KUBEFENCE_CLUSTER_DIR. Or source this file and call
# kf_cluster_up [VERSION] / kf_cluster_down: they set the variables in your shell.
#
# What runs: etcd on 127.0.0.1 (client and peer ports picked free), and
# kube-apiserver with --bind-address 127.0.0.1 on a free --secure-port,
# authorization Node,RBAC, client-certificate authentication against a
# private CA, and service-account tokens signed with DIR/pki/sa.key.
# No kubelet, no controller-manager, no scheduler: pods are stored, never run.
# Because no controller creates the `default` ServiceAccount of a namespace,
# the ServiceAccount admission plugin (which refuses pods whose service
# account does not exist) is disabled; MutatingAdmissionWebhook,
# ValidatingAdmissionWebhook and RuntimeClass are on by default in 1.3x and
# are named in --enable-admission-plugins anyway so the intent is visible.
#
# PKI under DIR/pki (openssl, EC P-256 unless noted):
#   ca.crt/ca.key            cluster CA (client-ca-file, kubeconfig CA)
#   apiserver.crt/.key       serving cert: 127.0.0.1, ::1, localhost, kubernetes[.default[.svc]], first service IP
#   sa.key/sa.pub            service-account signing key pair (RSA 2048)
#   admin.crt/.key           CN=kubefence-admin, O=system:masters
#   alice.crt/.key           CN=alice, O=kubefence:e2e-users (no rights until RBAC grants some)
#   kubelet-client.crt/.key  CN=kube-apiserver-kubelet-client, O=system:masters
#                            (what the apiserver presents to a "kubelet")
# DIR/kubeconfig has contexts `admin` (current) and `alice`.
#
# Tunables (environment, read by `up`):
#   KUBEFENCE_APISERVER_ARGS        extra kube-apiserver flags (word-split)
#   KUBEFENCE_APISERVER_V           klog verbosity (default 1)
#   KUBEFENCE_SERVICE_CIDR          --service-cluster-ip-range (default 10.96.0.0/16;
#                                   only allocated from, never routed to)
#   ETCD_VERSION                    passed to provision-apiserver.sh

_kf_cluster_here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../e2e/lib/common.sh
. "$_kf_cluster_here/../e2e/lib/common.sh"

# A free TCP port on 127.0.0.1 (bound and released: racy, but only loopback).
kf_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# _kf_cert DIR NAME SUBJ EXT [CA]: EC key + cert signed by DIR/ca (or self-signed CA)
_kf_cert() {
  local d="$1" n="$2" subj="$3" ext="$4"
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$d/$n.key" -out "$d/$n.csr" -subj "$subj" >/dev/null 2>&1 || return 1
  printf '%b\n' "$ext" >"$d/$n.ext"
  openssl x509 -req -in "$d/$n.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial \
    -out "$d/$n.crt" -days 2 -extfile "$d/$n.ext" >/dev/null 2>&1 || return 1
  rm -f "$d/$n.csr" "$d/$n.ext"
}

# kf_cluster_pki DIR/pki [FIRST_SERVICE_IP]
kf_cluster_pki() {
  local p="$1" svc_ip="${2:-10.96.0.1}"
  mkdir -p "$p"
  ( umask 077
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
      -keyout "$p/ca.key" -out "$p/ca.crt" -days 2 -subj "/CN=kubefence-e2e-cluster-ca" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
      >/dev/null 2>&1 || exit 1
    _kf_cert "$p" apiserver "/CN=kube-apiserver" \
      "subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:$svc_ip\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature,keyEncipherment" || exit 1
    _kf_cert "$p" admin "/O=system:masters/CN=kubefence-admin" \
      "extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature,keyEncipherment" || exit 1
    _kf_cert "$p" alice "/O=kubefence:e2e-users/CN=alice" \
      "extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature,keyEncipherment" || exit 1
    _kf_cert "$p" kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" \
      "extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature,keyEncipherment" || exit 1
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$p/sa.key" >/dev/null 2>&1 || exit 1
    openssl pkey -in "$p/sa.key" -pubout -out "$p/sa.pub" >/dev/null 2>&1 || exit 1
  )
}

# _kf_kubeconfig DIR URL
_kf_kubeconfig() ( # subshell: umask and the helper stay local
  local d="$1" url="$2"
  b64() { base64 -w0 <"$1"; }
  umask 077
  cat >"$d/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: kubefence-e2e
  cluster:
    server: $url
    certificate-authority-data: $(b64 "$d/pki/ca.crt")
users:
- name: admin
  user:
    client-certificate-data: $(b64 "$d/pki/admin.crt")
    client-key-data: $(b64 "$d/pki/admin.key")
- name: alice
  user:
    client-certificate-data: $(b64 "$d/pki/alice.crt")
    client-key-data: $(b64 "$d/pki/alice.key")
contexts:
- name: admin
  context: {cluster: kubefence-e2e, user: admin}
- name: alice
  context: {cluster: kubefence-e2e, user: alice}
current-context: admin
EOF
)

_kf_cluster_envfile() { # DIR -> prints the export lines
  local d="$1"
  cat <<EOF
export KUBEFENCE_CLUSTER_DIR='$d'
export KUBE_VERSION='$(cat "$d/version")'
export KUBE_BIN='$(cat "$d/bindir")'
export KUBECONFIG='$d/kubeconfig'
export KUBE_APISERVER_URL='https://127.0.0.1:$(cat "$d/apiserver.port")'
export KUBE_APISERVER_PID='$(cat "$d/apiserver.pid")'
export KUBE_APISERVER_LOG='$d/apiserver.log'
export ETCD_PID='$(cat "$d/etcd.pid")'
export ETCD_LOG='$d/etcd.log'
export KUBEFENCE_CLUSTER_PKI='$d/pki'
EOF
}

# kf_cluster_up [VERSION]: provisions what is missing, starts etcd and the
# apiserver, waits for /readyz, and exports the env into the calling shell.
kf_cluster_up() {
  local ver="${1:-${KUBE_VERSION:-v1.33.13}}" bindir d _ ok="" etcd_port peer_port api_port cidr svc_ip
  case "$ver" in v*) ;; *) ver="v$ver" ;; esac
  bindir="$("$_kf_cluster_here/provision-apiserver.sh" "$ver")" || return 1
  command -v openssl >/dev/null || kf_apt_install openssl
  command -v python3 >/dev/null || kf_apt_install python3

  d="$(mktemp -d "${KUBEFENCE_TMPDIR:-/tmp}/kubefence-cluster.XXXXXX")"
  chmod 0700 "$d"
  mkdir -p "$d/etcd"
  echo "$ver" >"$d/version"; echo "$bindir" >"$d/bindir"
  cidr="${KUBEFENCE_SERVICE_CIDR:-10.96.0.0/16}"
  svc_ip="$(python3 -c "import ipaddress,sys; print(ipaddress.ip_network(sys.argv[1])[1])" "$cidr")"
  kf_cluster_pki "$d/pki" "$svc_ip" || { kf_log "PKI generation failed"; rm -rf "$d"; return 1; }

  etcd_port="$(kf_free_port)"; peer_port="$(kf_free_port)"; api_port="$(kf_free_port)"
  echo "$etcd_port" >"$d/etcd.port"; echo "$api_port" >"$d/apiserver.port"

  # Each pid is recorded, so `down` stops exactly these processes.
  "$bindir/etcd" --name kubefence-e2e --data-dir "$d/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-cluster "kubefence-e2e=http://127.0.0.1:$peer_port" --initial-cluster-state new \
    --log-level warn \
    </dev/null >"$d/etcd.log" 2>&1 &
  echo $! >"$d/etcd.pid"
  for _ in $(seq 1 100); do
    if ! kill -0 "$(cat "$d/etcd.pid")" 2>/dev/null; then
      kf_log "etcd exited during start-up; log:"; tail -30 "$d/etcd.log" >&2
      echo 0 >"$d/apiserver.pid"; kf_cluster_down "$d"; return 1
    fi
    if curl -fsS "http://127.0.0.1:$etcd_port/health" 2>/dev/null | grep -q '"health":"true"'; then ok=1; break; fi
    sleep 0.2
  done
  [ -n "$ok" ] || { kf_log "etcd not healthy in 20s"; tail -30 "$d/etcd.log" >&2; echo 0 >"$d/apiserver.pid"; kf_cluster_down "$d"; return 1; }

  # shellcheck disable=SC2086
  "$bindir/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" \
    --tls-cert-file "$d/pki/apiserver.crt" --tls-private-key-file "$d/pki/apiserver.key" \
    --client-ca-file "$d/pki/ca.crt" \
    --authorization-mode Node,RBAC \
    --enable-admission-plugins NamespaceLifecycle,MutatingAdmissionWebhook,ValidatingAdmissionWebhook,RuntimeClass \
    --disable-admission-plugins ServiceAccount \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$d/pki/sa.pub" \
    --service-account-signing-key-file "$d/pki/sa.key" \
    --service-cluster-ip-range "$cidr" \
    --endpoint-reconciler-type none \
    --kubelet-client-certificate "$d/pki/kubelet-client.crt" --kubelet-client-key "$d/pki/kubelet-client.key" \
    --profiling=false \
    --v "${KUBEFENCE_APISERVER_V:-1}" \
    ${KUBEFENCE_APISERVER_ARGS:-} \
    </dev/null >"$d/apiserver.log" 2>&1 &
  echo $! >"$d/apiserver.pid"
  _kf_kubeconfig "$d" "https://127.0.0.1:$api_port"
  _kf_cluster_envfile "$d" >"$d/env"

  ok=""
  for _ in $(seq 1 300); do
    if ! kill -0 "$(cat "$d/apiserver.pid")" 2>/dev/null; then
      kf_log "kube-apiserver exited during start-up; log:"; tail -40 "$d/apiserver.log" >&2
      kf_cluster_down "$d"; return 1
    fi
    if curl -fsS --cacert "$d/pki/ca.crt" --cert "$d/pki/admin.crt" --key "$d/pki/admin.key" \
         "https://127.0.0.1:$api_port/readyz" 2>/dev/null | grep -qx ok; then ok=1; break; fi
    sleep 0.2
  done
  [ -n "$ok" ] || { kf_log "kube-apiserver not ready in 60s"; tail -40 "$d/apiserver.log" >&2; kf_cluster_down "$d"; return 1; }
  # shellcheck disable=SC1091
  . "$d/env"
  kf_log "kube-apiserver $ver up: $d (https://127.0.0.1:$api_port, log $d/apiserver.log)"
}

# Kill one pid (a process this cluster started) and wait for it.
_kf_cluster_kill_wait() {
  local pid="$1" _
  [ -n "$pid" ] && [ "$pid" != 0 ] || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 75); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.2; done
  kill -KILL "$pid" 2>/dev/null || true
  for _ in $(seq 1 25); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.2; done
}

# kf_cluster_down [DIR]: stops the apiserver, then etcd, removes DIR.
kf_cluster_down() {
  local d="${1:-${KUBEFENCE_CLUSTER_DIR:-}}"
  [ -n "$d" ] && [ -d "$d" ] || { kf_log "down: no cluster dir (${d:-unset})"; return 0; }
  case "$d" in */kubefence-cluster.*) ;; *) kf_log "down: refusing to remove $d"; return 1 ;; esac
  _kf_cluster_kill_wait "$(cat "$d/apiserver.pid" 2>/dev/null || true)"
  _kf_cluster_kill_wait "$(cat "$d/etcd.pid" 2>/dev/null || true)"
  rm -rf "$d" 2>/dev/null || { sleep 1; rm -rf "$d"; }
  if [ "${KUBEFENCE_CLUSTER_DIR:-}" = "$d" ]; then
    unset KUBEFENCE_CLUSTER_DIR KUBECONFIG KUBE_APISERVER_URL KUBE_APISERVER_PID KUBE_APISERVER_LOG \
      ETCD_PID ETCD_LOG KUBEFENCE_CLUSTER_PKI
  fi
  kf_log "cluster $d down"
}

_kf_cluster_main() {
  set -euo pipefail
  local cmd="${1:-}"; shift || true
  case "$cmd" in
    up)
      kf_cluster_up "$@"
      cat "$KUBEFENCE_CLUSTER_DIR/env"
      ;;
    env)
      local d="${1:-${KUBEFENCE_CLUSTER_DIR:-}}"
      [ -f "$d/env" ] || kf_die "no cluster env at ${d:-\$KUBEFENCE_CLUSTER_DIR}"
      cat "$d/env"
      ;;
    down) kf_cluster_down "$@" ;;
    *) echo "usage: $0 up [VERSION] | env [DIR] | down [DIR]" >&2; exit 2 ;;
  esac
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  _kf_cluster_main "$@"
fi
