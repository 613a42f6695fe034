#!/usr/bin/env bash
# Self-signed bootstrap for manifests/overlays/self-signed: a private CA, a
# serving certificate for the webhook Service, the CA bundle patch for both
# webhook configurations, and (once) the decision signing key pair.
#
#   scripts/bootstrap-webhook-certs.sh [OUT_DIR] [SERVICE] [NAMESPACE]
#
# Re-running renews the serving certificate and keeps the signing key
# (rotate that with `kubefence-webhook keygen` and a second public key).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$here/manifests/overlays/self-signed/generated}"
svc="${2:-kubefence-webhook}"
ns="${3:-kubefence-system}"
days="${CERT_DAYS:-365}"
mkdir -p "$out"
umask 077

if [ ! -s "$out/ca.key" ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$out/ca.key" -out "$out/ca.crt" -days 3650 \
    -subj "/CN=kubefence-webhook-ca" >/dev/null 2>&1
fi
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -keyout "$out/tls.key" -out "$out/tls.csr" -subj "/CN=$svc.$ns.svc" >/dev/null 2>&1
printf 'subjectAltName=DNS:%s.%s.svc,DNS:%s.%s.svc.cluster.local\nextendedKeyUsage=serverAuth\n' \
  "$svc" "$ns" "$svc" "$ns" > "$out/tls.ext"
openssl x509 -req -in "$out/tls.csr" -CA "$out/ca.crt" -CAkey "$out/ca.key" \
  -CAcreateserial -out "$out/tls.crt" -days "$days" -extfile "$out/tls.ext" >/dev/null 2>&1
rm -f "$out/tls.csr" "$out/tls.ext"

if [ ! -s "$out/decision-signing.pem" ]; then
  bin="${KUBEFENCE_WEBHOOK_BIN:-}"
  if [ -z "$bin" ]; then
    cargo build -q -p kubefence-webhook --manifest-path "$here/Cargo.toml"
    bin="${CARGO_TARGET_DIR:-$here/target}/debug/kubefence-webhook"
  fi
  "$bin" keygen --out "$out" >&2
fi

ca_b64="$(base64 -w0 < "$out/ca.crt")"
cat > "$out/cabundle-patch.yaml" <<YAML
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata:
  name: kubefence
webhooks:
  - name: pods.kubefence.nono.sh
    clientConfig:
      caBundle: $ca_b64
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata:
  name: kubefence
webhooks:
  - name: pods.kubefence.nono.sh
    clientConfig:
      caBundle: $ca_b64
YAML
echo "wrote $out (CA, serving certificate for $svc.$ns.svc, caBundle patch, decision keys)" >&2
