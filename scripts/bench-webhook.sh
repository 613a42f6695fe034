#!/usr/bin/env bash
# Load benchmark of the webhook against a floor on the same HTTPS stack.
#
#   scripts/bench-webhook.sh [SECONDS_PER_RUN] [RATES...]   (default 10; 500 1000 2000)
#
# Builds kubefence-webhook and the floor example (webhook/examples/floor.rs)
# in release, starts `kubefence-webhook serve --dev` and the floor on
# loopback, and drives both with oha (installed from crates.io if missing):
# fixed offered rates, then saturation, each run bounded. POSTs a realistic
# Deployment pod CREATE AdmissionReview over HTTPS with keep-alive. Prints
# one table row per run (latency p50/p99/p99.9 in ms, achieved req/s) and
# the webhook's and floor's peak RSS (VmHWM). Loopback only.
#
# The load generator shares the machine's cores with the servers: numbers
# are for comparison with the floor, not absolute capacity. BENCH_PIN=1
# pins the servers to CPU 0 and oha to CPU 1 (taskset), so the generator
# does not preempt the server it measures.
set -euo pipefail

secs=${1:-10}
shift || true
rates=("$@")
[ ${#rates[@]} -gt 0 ] || rates=(500 1000 2000)
conns=${BENCH_CONNECTIONS:-16}
sat_conns=${BENCH_SATURATION_CONNECTIONS:-64}
wh_port=${BENCH_WEBHOOK_PORT:-18443}
floor_port=${BENCH_FLOOR_PORT:-18444}
root=$(cd "$(dirname "$0")/.." && pwd)
export PATH="$HOME/.cargo/bin:$PATH"

command -v oha >/dev/null || cargo install oha --version 1.16.0 --locked
command -v python3 >/dev/null || { echo "bench-webhook: needs python3 (to read oha's JSON)" >&2; exit 1; }

pin_server=() pin_load=()
if [ "${BENCH_PIN:-}" = 1 ]; then pin_server=(taskset -c 0) pin_load=(taskset -c 1); fi

cd "$root"
cargo build --release -p kubefence-webhook --bin kubefence-webhook --example floor
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
webhook_bin="$target_dir/release/kubefence-webhook"
floor_bin="$target_dir/release/examples/floor"

tmp=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT

# The AdmissionReview kube-apiserver sends for a pod of Deployment `web` in
# team-a (enforce mode in webhook/examples/dev.toml): mutated, signed.
cat >"$tmp/review.json" <<'JSON'
{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"705ab4f5-6393-11e8-b7cc-42010a800002","kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},"requestKind":{"group":"","version":"v1","kind":"Pod"},"requestResource":{"group":"","version":"v1","resource":"pods"},"namespace":"team-a","operation":"CREATE","userInfo":{"username":"system:serviceaccount:kube-system:replicaset-controller","uid":"0f2b6c2e-6d0b-4a52-8f3c-6a1f3c0e9b11","groups":["system:serviceaccounts","system:serviceaccounts:kube-system","system:authenticated"]},"object":{"kind":"Pod","apiVersion":"v1","metadata":{"generateName":"web-7f9c4-","namespace":"team-a","creationTimestamp":null,"labels":{"app":"web","pod-template-hash":"7f9c4"},"ownerReferences":[{"apiVersion":"apps/v1","kind":"ReplicaSet","name":"web-7f9c4","uid":"5b1e7f7c-2f6e-4d6b-9a47-0d3c9c1f2a10","controller":true,"blockOwnerDeletion":true}]},"spec":{"volumes":[{"name":"kube-api-access-abcde","projected":{"sources":[{"serviceAccountToken":{"expirationSeconds":3607,"path":"token"}}],"defaultMode":420}}],"initContainers":[{"name":"migrate","image":"registry.example/web-migrate:1.4","command":["/migrate","up"],"resources":{},"terminationMessagePath":"/dev/termination-log","terminationMessagePolicy":"File","imagePullPolicy":"IfNotPresent"}],"containers":[{"name":"web","image":"registry.example/web:1.4","ports":[{"containerPort":8080,"protocol":"TCP"}],"resources":{"limits":{"memory":"256Mi"},"requests":{"cpu":"100m","memory":"128Mi"}},"volumeMounts":[{"name":"kube-api-access-abcde","readOnly":true,"mountPath":"/var/run/secrets/kubernetes.io/serviceaccount"}],"terminationMessagePath":"/dev/termination-log","terminationMessagePolicy":"File","imagePullPolicy":"IfNotPresent","securityContext":{"allowPrivilegeEscalation":false,"runAsNonRoot":true}}],"restartPolicy":"Always","terminationGracePeriodSeconds":30,"dnsPolicy":"ClusterFirst","serviceAccountName":"default","serviceAccount":"default","securityContext":{},"schedulerName":"default-scheduler","tolerations":[{"key":"node.kubernetes.io/not-ready","operator":"Exists","effect":"NoExecute","tolerationSeconds":300}],"priority":0,"enableServiceLinks":true,"preemptionPolicy":"PreemptLowerPriority"},"status":{}},"oldObject":null,"dryRun":false,"options":{"kind":"CreateOptions","apiVersion":"meta.k8s.io/v1"}}}
JSON

# Audit records (one line per request) go to a file, as to a log pipe.
RUST_LOG=warn "${pin_server[@]}" "$webhook_bin" serve --dev --dev-dir "$tmp/dev" --listen "127.0.0.1:$wh_port" \
    >"$tmp/webhook.audit" 2>"$tmp/webhook.err" &
wh_pid=$!
pids+=("$wh_pid")
"${pin_server[@]}" "$floor_bin" "127.0.0.1:$floor_port" "$tmp/floor" 2>"$tmp/floor.err" &
floor_pid=$!
pids+=("$floor_pid")

wait_up() {
    for _ in $(seq 100); do
        if oha -n 1 --no-tui --insecure -m POST -H 'content-type: application/json' \
            -D "$tmp/review.json" "$1" >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.1
    done
    echo "bench-webhook: $1 did not come up" >&2
    cat "$tmp/webhook.err" "$tmp/floor.err" >&2
    exit 1
}
wh_url="https://127.0.0.1:$wh_port/mutate"
floor_url="https://127.0.0.1:$floor_port/mutate"
wait_up "$wh_url"
wait_up "$floor_url"
# Sanity: the webhook mutates this review.
curl_check=$(oha -n 1 --no-tui --insecure -m POST -H 'content-type: application/json' \
    -D "$tmp/review.json" "$wh_url" --output-format json 2>/dev/null | python3 -c \
    'import json,sys; d=json.load(sys.stdin); print(d.get("statusCodeDistribution"))')
echo "webhook status codes of a probe: $curl_check"

# run NAME URL RATE|sat -> appends a JSON line to $tmp/results
run() {
    local name=$1 url=$2 rate=$3 args=()
    if [ "$rate" = sat ]; then
        args=(-c "$sat_conns")
    else
        args=(-c "$conns" -q "$rate" --latency-correction)
    fi
    "${pin_load[@]}" oha -z "${secs}s" "${args[@]}" --no-tui --insecure --output-format json \
        -m POST -H 'content-type: application/json' -D "$tmp/review.json" "$url" \
        >"$tmp/out.json" 2>"$tmp/oha.err" || { cat "$tmp/oha.err" >&2; exit 1; }
    python3 - "$name" "$rate" "$tmp/out.json" >>"$tmp/results" <<'PY'
import json, sys
name, rate, path = sys.argv[1:]
d = json.load(open(path))
s, p = d["summary"], d["latencyPercentiles"]
codes = d.get("statusCodeDistribution", {})
print(json.dumps({"name": name, "rate": rate, "rps": s["requestsPerSec"],
    "p50": p["p50"] * 1e3, "p99": p["p99"] * 1e3, "p999": p["p99.9"] * 1e3,
    "ok": codes.get("200", 0), "total": sum(codes.values()),
    "errors": d.get("errorDistribution", {})}))
PY
    tail -n 1 "$tmp/results"
}

for rate in "${rates[@]}" sat; do
    run floor "$floor_url" "$rate"
    run webhook "$wh_url" "$rate"
done

hwm() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }
wh_rss=$(hwm "$wh_pid")
floor_rss=$(hwm "$floor_pid")
audits=$(grep -c '"outcome":"mutate"' "$tmp/webhook.audit" || true)

python3 - "$tmp/results" "$wh_rss" "$floor_rss" "$audits" "$secs" "$conns" "$sat_conns" <<'PY'
import json, sys
path, wh_rss, floor_rss, audits, secs, conns, sat = sys.argv[1:]
rows = [json.loads(l) for l in open(path)]
by = {(r["name"], r["rate"]): r for r in rows}
print()
print(f"{secs}s per run; fixed rates with {conns} connections, saturation with {sat}")
print("| offered | server | achieved req/s | p50 ms | p99 ms | p99.9 ms | 200s / total | vs floor (rps, p99) |")
print("|---|---|---|---|---|---|---|---|")
for (name, rate), r in by.items():
    f = by.get(("floor", rate))
    ratio = ""
    if name == "webhook" and f:
        ratio = f"{r['rps'] / f['rps']:.2f}x, {r['p99'] / f['p99']:.2f}x"
    offered = "saturation" if rate == "sat" else f"{rate}/s"
    print(f"| {offered} | {name} | {r['rps']:.0f} | {r['p50']:.3f} | {r['p99']:.3f} | {r['p999']:.3f} | {r['ok']} / {r['total']} | {ratio} |")
print()
print(f"peak RSS (VmHWM): webhook {int(wh_rss)/1024:.1f} MiB, floor {int(floor_rss)/1024:.1f} MiB")
print(f"webhook audit records with outcome mutate: {audits}")
w, f = by.get(("webhook", "1000")), by.get(("floor", "sat"))
ws = by.get(("webhook", "sat"))
if w:
    print(f"target p99 < 1 ms at 1000 req/s: {'met' if w['p99'] < 1 else 'MISSED'} ({w['p99']:.3f} ms)")
if ws and f:
    print(f"target >= 50% of floor saturated throughput: {'met' if ws['rps'] >= 0.5 * f['rps'] else 'MISSED'} ({ws['rps'] / f['rps']:.0%})")
PY
