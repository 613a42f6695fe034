#!/usr/bin/env python3
"""Load-and-fault helpers for e2e/fault-webhook.sh (stdlib only; decisions are
checked with e2e/cluster/verify-decision.py). Everything talks to
https://127.0.0.1:PORT and verifies the server against CA (name 127.0.0.1).

  load.py review NS UID [ANNOTATIONS]      -> an AdmissionReview on stdout: a Deployment's
                                              pod CREATE in NS (with ANNOTATIONS filler
                                              annotations)
  load.py oha RESULT.json                  -> one JSON line: total, ok (200s), codes, errors
                                              of an `oha --output-format json` result
  load.py serial PORT CA                   -> serial (hex) of the certificate served, after
                                              a verified handshake; exit 1 if none
  load.py admit PORT CA NS PUBKEY UID      -> one POST /mutate on a fresh connection; exit 0
                                              if the answer is a sandboxing mutation (see
                                              check_mutation), else exit 1; says which
  load.py metrics PORT CA                  -> /metrics as one JSON object {series: value}
  load.py handshakes PORT CA NS RATE THREADS STOP OUT
                                           -> valid reviews, each on a new connection with a
                                              full verified handshake, until STOP exists
  load.py slow PORT CA NS N READY GO OUT   -> N slow in-flight requests (see cmd_slow)
  load.py refused PORT SECONDS             -> exit 0 once a TCP connect is refused (tried
                                              every 50 ms), exit 1 if still accepted after
                                              SECONDS
  load.py hostile PORT CA NS PLAIN_NS PUBKEY MAXBODY OUT
                                           -> thousands of hostile requests (see cmd_hostile);
                                              one line per class on stdout, details in OUT;
                                              exit 1 if any class got an unexpected answer
  load.py stall PORT CA NS N MAXBODY BUDGET TIMEOUT
                                           -> N clients of each stalling kind at once (see
                                              cmd_stall); one line per kind; exit 1 if any
                                              was not cut off as it should be
  load.py delta BEFORE AFTER               -> the counters that changed between two `metrics`
Judging commands (print what was found; exit 1 with the reasons if it is wrong):
  load.py all-ok RESULT.json               -> every request of an oha run a 200, no error
  load.py rotation-metrics BEFORE AFTER ROTATIONS EXTRA SLACK RESULT.json...
  load.py memory RESULT.json[,...] BOUND_KB WARM SAMPLE_KB...
  load.py hostile-metrics BEFORE AFTER HOSTILE_OUT
  load.py slow-results OUT N
  load.py shutdown-load RESULT.json AUDIT.jsonl UID
  load.py handshake-results OUT SERIAL...
"""
import base64
import concurrent.futures
import json
import os
import random
import socket
import ssl
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
VERIFIER = os.path.join(HERE, "..", "cluster", "verify-decision.py")
HOST = "127.0.0.1"
TIMEOUT = 30  # seconds for any single socket operation: a hang is a failure, not a wait


# ----------------------------------------------------------------- requests

def review(ns, uid, annotations=0):
    """The AdmissionReview kube-apiserver sends for a pod of Deployment `web`
    (created by the ReplicaSet controller), as in scripts/bench-webhook.sh."""
    meta = {
        "generateName": "web-7f9c4-",
        "namespace": ns,
        "creationTimestamp": None,
        "labels": {"app": "web", "pod-template-hash": "7f9c4"},
        "ownerReferences": [{
            "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7f9c4",
            "uid": "5b1e7f7c-2f6e-4d6b-9a47-0d3c9c1f2a10", "controller": True,
            "blockOwnerDeletion": True}],
    }
    if annotations:
        meta["annotations"] = {
            "example.com/filler-%05d" % i: "value %05d of a pod with many annotations" % i
            for i in range(annotations)
        }
    container = {
        "name": "web", "image": "registry.example/web:1.4",
        "ports": [{"containerPort": 8080, "protocol": "TCP"}],
        "resources": {"limits": {"memory": "256Mi"}, "requests": {"cpu": "100m", "memory": "128Mi"}},
        "volumeMounts": [{"name": "kube-api-access-abcde", "readOnly": True,
                          "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}],
        "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
        "imagePullPolicy": "IfNotPresent",
        "securityContext": {"allowPrivilegeEscalation": False, "runAsNonRoot": True},
    }
    init = {
        "name": "migrate", "image": "registry.example/web-migrate:1.4", "command": ["/migrate", "up"],
        "resources": {}, "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File", "imagePullPolicy": "IfNotPresent",
    }
    pod = {
        "kind": "Pod", "apiVersion": "v1", "metadata": meta,
        "spec": {
            "volumes": [{"name": "kube-api-access-abcde", "projected": {
                "sources": [{"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}}],
                "defaultMode": 420}}],
            "initContainers": [init], "containers": [container],
            "restartPolicy": "Always", "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "default", "serviceAccount": "default", "securityContext": {},
            "schedulerName": "default-scheduler",
            "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists",
                             "effect": "NoExecute", "tolerationSeconds": 300}],
            "priority": 0, "enableServiceLinks": True, "preemptionPolicy": "PreemptLowerPriority",
        },
        "status": {},
    }
    gvk = {"group": "", "version": "v1", "kind": "Pod"}
    gvr = {"group": "", "version": "v1", "resource": "pods"}
    return {
        "kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1",
        "request": {
            "uid": uid, "kind": gvk, "resource": gvr, "requestKind": gvk, "requestResource": gvr,
            "namespace": ns, "operation": "CREATE",
            "userInfo": {
                "username": "system:serviceaccount:kube-system:replicaset-controller",
                "uid": "0f2b6c2e-6d0b-4a52-8f3c-6a1f3c0e9b11",
                "groups": ["system:serviceaccounts", "system:serviceaccounts:kube-system",
                           "system:authenticated"]},
            "object": pod, "oldObject": None, "dryRun": False,
            "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"},
        },
    }


def review_bytes(ns, uid, annotations=0):
    return json.dumps(review(ns, uid, annotations), separators=(",", ":")).encode()


def head(path, length=None, ctype="application/json", extra=()):
    lines = ["POST %s HTTP/1.1" % path, "Host: %s" % HOST]
    if ctype is not None:
        lines.append("Content-Type: " + ctype)
    if length is not None:
        lines.append("Content-Length: %d" % length)
    lines.extend(extra)
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


# ----------------------------------------------------------------- transport

def context(ca):
    ctx = ssl.create_default_context(cafile=ca)
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def connect(port, ctx):
    raw = socket.create_connection((HOST, port), timeout=TIMEOUT)
    try:
        return ctx.wrap_socket(raw, server_hostname=HOST)
    except BaseException:
        raw.close()
        raise


class Response:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def text(self):
        return self.body.decode("utf-8", "replace")


def read_head(sock, buf):
    """(status, headers, rest) of the next response head; None on EOF first."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            if buf:
                raise EOFError("connection closed inside a response head: %r" % buf[:200])
            return None
        buf += chunk
    raw, _, rest = buf.partition(b"\r\n\r\n")
    lines = raw.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/"):
        raise ValueError("not an HTTP status line: %r" % lines[0])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return int(parts[1]), headers, rest


def read_response(sock, buf=b""):
    """The next final (non-1xx) response; None if the server closed first."""
    while True:
        got = read_head(sock, buf)
        if got is None:
            return None
        status, headers, buf = got
        if status >= 200:
            break
    if "content-length" in headers:
        n = int(headers["content-length"])
        while len(buf) < n:
            chunk = sock.recv(65536)
            if not chunk:
                raise EOFError("body cut at %d of %d bytes" % (len(buf), n))
            buf += chunk
        return Response(status, headers, buf[:n])
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while True:
            while b"\r\n" not in buf:
                chunk = sock.recv(65536)
                if not chunk:
                    raise EOFError("chunked body cut")
                buf += chunk
            size_line, _, buf = buf.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            while len(buf) < size + 2:
                chunk = sock.recv(65536)
                if not chunk:
                    raise EOFError("chunked body cut")
                buf += chunk
            body, buf = body + buf[:size], buf[size + 2:]
            if size == 0:
                return Response(status, headers, body)
    while True:  # to EOF
        chunk = sock.recv(65536)
        if not chunk:
            return Response(status, headers, buf)
        buf += chunk


def request(port, ctx, data, ctype="application/json"):
    """POST /mutate DATA on a new connection: the Response, or None."""
    s = connect(port, ctx)
    try:
        s.sendall(head("/mutate", len(data), ctype) + data)
        return read_response(s)
    finally:
        s.close()


def get(port, ctx, path):
    s = connect(port, ctx)
    try:
        s.sendall(("GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % (path, HOST)).encode())
        return read_response(s)
    finally:
        s.close()


def half_close(sock):
    """TCP FIN without TLS close_notify, keeping the TLS session readable
    (ssl.SSLSocket.shutdown would drop it): shutdown(2) acts on the socket,
    so a duplicate descriptor does it."""
    dup = socket.socket(fileno=os.dup(sock.fileno()))
    try:
        dup.shutdown(socket.SHUT_WR)
    finally:
        dup.close()


# ----------------------------------------------------------------- checks

def verify_decision(pubkey, token):
    """The independent verifier's claims, or raises with its reason."""
    r = subprocess.run([sys.executable, VERIFIER, pubkey, token], capture_output=True, text=True)
    if r.returncode:
        raise ValueError("decision does not verify: " + (r.stderr or r.stdout).strip())
    return json.loads(r.stdout)


OUR_PATHS = {
    "/spec/runtimeClassName",
    "/metadata/annotations/nono.sh~1decision",
    "/metadata/annotations/nono.sh~1profile",
    "/metadata/annotations/required-plugins.noderesource.dev",
}


def check_mutation(resp, uid, ns, pubkey=None):
    """'' if resp is the sandboxing answer for review(ns, uid): 200 JSON,
    same uid, allowed, a JSONPatch that only adds kubefence's own fields
    (runtime class nono-runc, a decision for NS); else the reason. With
    pubkey, the decision's signature is verified too."""
    if resp is None:
        return "no response (connection closed)"
    if resp.status != 200:
        return "HTTP %d: %s" % (resp.status, resp.text()[:200])
    try:
        r = json.loads(resp.body)["response"]
    except (ValueError, KeyError, TypeError) as e:
        return "not an AdmissionReview answer (%s): %s" % (e, resp.text()[:200])
    if r.get("uid") != uid:
        return "uid %r, want %r" % (r.get("uid"), uid)
    if r.get("allowed") is not True or r.get("patchType") != "JSONPatch" or not r.get("patch"):
        return "not an allowed JSONPatch answer: %s" % json.dumps(r)[:300]
    ops = []
    for o in json.loads(base64.b64decode(r["patch"])):
        if o.get("op") == "add" and o.get("path") == "/metadata/annotations" and isinstance(o.get("value"), dict):
            # the pod had no annotations: the map is created whole
            ops += [{"op": "add", "path": "/metadata/annotations/" + k.replace("~", "~0").replace("/", "~1"),
                     "value": v} for k, v in o["value"].items()]
        else:
            ops.append(o)
    bad = [o for o in ops if o.get("op") != "add" or o.get("path") not in OUR_PATHS]
    if bad:
        return "patch touches more than kubefence's own fields: %s" % json.dumps(bad)[:300]
    by = {o["path"]: o.get("value") for o in ops}
    if by.get("/spec/runtimeClassName") != "nono-runc":
        return "runtimeClassName %r" % by.get("/spec/runtimeClassName")
    token = by.get("/metadata/annotations/nono.sh~1decision")
    if not token:
        return "no decision in the patch"
    try:
        if pubkey:
            claims = verify_decision(pubkey, token)
        else:
            payload = token.split(".")[1]
            claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except ValueError as e:
        return str(e)
    if (claims.get("namespace"), claims.get("handler"), claims.get("pod")) != (ns, "nono-runc", {"generateName": "web-7f9c4-"}):
        return "decision claims %s" % json.dumps(claims)
    return ""


def readable(text):
    """A human-readable error: non-empty, printable text."""
    t = text.strip()
    return bool(t) and all(c.isprintable() or c in "\n\t" for c in t)


# ----------------------------------------------------------------- commands

def oha_summary(path):
    """total, ok (200s), codes, errors, rps of an oha JSON result."""
    d = json.load(open(path))
    codes = {str(k): v for k, v in (d.get("statusCodeDistribution") or {}).items()}
    errors = d.get("errorDistribution") or {}
    total = sum(codes.values()) + sum(errors.values())
    return {"total": total, "ok": codes.get("200", 0), "codes": codes, "errors": errors,
            "rps": round(d["summary"].get("requestsPerSec") or 0, 1)}


def cmd_oha(path):
    print(json.dumps(oha_summary(path), sort_keys=True))


def verdict(ok_text, errs):
    """The judging commands: the reasons and exit 1, or ok_text and exit 0."""
    if errs:
        print("; ".join(errs))
        sys.exit(1)
    print(ok_text)


def cmd_all_ok(path):
    d = oha_summary(path)
    errs = []
    if d["total"] < 100:
        errs.append("only %d requests" % d["total"])
    elif d["ok"] != d["total"] or d["errors"]:
        errs.append("%d of %d not 200: codes %s, errors %s" % (d["total"] - d["ok"], d["total"], d["codes"], d["errors"]))
    verdict("%d requests, all 200, no errors (%.0f req/s)" % (d["total"], d["rps"]), errs)


def metrics_delta(before, after):
    """after - before of the decision and reload counters that changed."""
    a, b = (json.loads(open(p).read() or "{}") for p in (before, after))
    return {k: b.get(k, 0) - a.get(k, 0) for k in sorted(set(a) | set(b))
            if ("decisions_total" in k or "cert_reloads_total" in k) and b.get(k, 0) != a.get(k, 0)}


def cmd_delta(before, after):
    print(json.dumps(metrics_delta(before, after)))


DECISIONS = 'kubefence_webhook_decisions_total{endpoint="mutate",outcome="%s",reason="%s"}'
RELOADS = 'kubefence_webhook_cert_reloads_total{result="%s"}'


def cmd_rotation_metrics(before, after, rotations, extra, slack, *results):
    """Over the rotation phase: exactly ROTATIONS successful reloads, at most
    one rejected read per rotation, and a mutation for every request made
    (the oha RESULTS and EXTRA more; up to SLACK more: oha stops counting at
    SIGINT, with up to one request per connection or stream still on its
    way), no other decision."""
    delta, rotations, slack = metrics_delta(before, after), int(rotations), int(slack)
    total = sum(oha_summary(r)["total"] for r in results) + int(extra)
    errs = []
    ok, bad = delta.pop(RELOADS % "ok", 0), delta.pop(RELOADS % "error", 0)
    if ok != rotations:
        errs.append("cert_reloads_total{result=ok} +%d, want +%d" % (ok, rotations))
    # A poll can read tls.crt before the swap and tls.key after it (from the
    # dir just removed): that read is rejected, the old pair kept, and the
    # next poll loads the new one. At most one such read per rotation.
    if bad > rotations:
        errs.append("cert_reloads_total{result=error} +%d, more than one per rotation" % bad)
    n = delta.pop(DECISIONS % ("mutate", "sandboxed"), 0)
    # A request oha abandons at SIGINT may be answered anyway, or (its
    # connection gone before the body was read) counted as a bad request.
    # Each such request was never counted by oha, so every one that failed
    # for a client is in the oha results, which must be all 200.
    aborted = delta.pop(DECISIONS % ("error", "bad-request"), 0)
    if not total <= n or n + aborted > total + slack:
        errs.append("%d mutations and %d bad requests counted for %d requests (slack %d)" % (n, aborted, total, slack))
    if delta:
        errs.append("other decisions during the load: %s" % delta)
    verdict("decisions_total{mutate,sandboxed} +%d for %d requests (bad-request +%d, abandoned at SIGINT), "
            "nothing else; cert_reloads_total ok +%d, error +%d (a read mid-swap: old pair kept)"
            % (n, total, aborted, ok, bad), errs)


def cmd_memory(results, bound_kb, warm, *samples):
    """RESULTS (comma-separated oha results): every request 200. SAMPLES
    (VmRSS kB, one a second): growth from sample WARM to the last at most
    BOUND_KB."""
    runs = [oha_summary(r) for r in results.split(",")]
    bound, warm, s = int(bound_kb), int(warm), [int(x) for x in samples if x]
    n = sum(d["total"] for d in runs)
    errs = ["%d of %d not 200: %s %s" % (d["total"] - d["ok"], d["total"], d["codes"], d["errors"])
            for d in runs if d["ok"] != d["total"] or d["errors"]]
    if len(s) <= warm + 5:
        errs.append("only %d samples" % len(s))
        verdict("", errs)
    after = int(n * (len(s) - 1 - warm) / (len(s) - 1))  # requests after the warm-up, about
    growth = s[-1] - s[warm]
    if growth > bound:
        errs.append("VmRSS grew %d kB (> %d kB) after warm-up" % (growth, bound))
    verdict("%d requests, all 200; VmRSS %+d kB from sample %d (%d kB) to the last (%d kB) over ~%d requests "
            "(%+.1f bytes/request), max %d kB; bound +%d kB"
            % (n, growth, warm, s[warm], s[-1], after, growth * 1024 / max(after, 1), max(s), bound), errs)


def cmd_hostile_metrics(before, after, hostile_out):
    """The server's decision counters rose by exactly what the hostile
    clients saw, and by nothing else (no internal-error: a caught panic)."""
    delta = metrics_delta(before, after)
    seen = {d["class"]: d["seen"] for d in (json.loads(line) for line in open(hostile_out) if line.startswith("{"))}

    def n(cls, key):
        return seen.get(cls, {}).get(key, 0)

    errs, parts = [], []

    def want(outcome, reason, lo, hi=None):
        got = delta.pop(DECISIONS % (outcome, reason), 0)
        hi = lo if hi is None else hi
        parts.append("%s/%s +%d" % (outcome, reason, got))
        if not lo <= got <= hi:
            errs.append("%s/%s +%d, want %s" % (outcome, reason, got, lo if lo == hi else "%d..%d" % (lo, hi)))

    want("error", "too-large", n("oversize-declared", "413") + n("oversize-chunked", "413"))
    plain400 = sum(n(c, "400") for c in ("deep-array", "deep-object", "deep-in-review", "truncated",
                                          "non-utf8", "content-type-garbage", "short-body-half-close"))
    # A client that closes right after sending may be gone before the server
    # has read the request head: then there is no request to count.
    want("error", "bad-request", plain400, plain400 + n("short-body-close", "closed:by the client"))
    want("mutate", "sandboxed", n("many-annotations", "200") + n("content-type", "200"))
    want("admit", "not-opted-in", n("not-opted-in", "200"))
    want("deny", "namespace-unknown", n("unknown-namespace", "200"))
    if delta:
        errs.append("unexpected decisions: %s" % delta)
    verdict("decisions_total " + ", ".join(parts) + ", as the clients saw; nothing else (no internal-error)", errs)


def cmd_slow_results(out, n):
    try:
        rs = [json.loads(line) for line in open(out)]
    except OSError as e:
        verdict("", ["no results: %s" % e])
    errs = ["%s: %s" % (r["uid"], r["why"]) for r in rs if r["why"]]
    if len(rs) != int(n):
        errs.insert(0, "%d results for %s clients" % (len(rs), n))
    verdict("%d slow requests (server read the head: 100 Continue; half the body before SIGTERM, the rest "
            "after the server logged shutting down) each got HTTP/1.1 200, its own uid, a sandboxing patch"
            % len(rs), errs)


def cmd_shutdown_load(result, audit, uid):
    """A load run across SIGTERM: some 200s, no other HTTP status, and every
    request the webhook answered (one audit record each, request uid UID)
    reached the client as a 200: none processed and then lost."""
    d = oha_summary(result)
    needle = '"request_uid":"%s"' % uid
    audited = sum(1 for line in open(audit, errors="replace") if needle in line)
    errs = []
    if d["ok"] == 0:
        errs.append("no request succeeded")
    if set(d["codes"]) - {"200"}:
        errs.append("HTTP statuses other than 200: %s" % d["codes"])
    if audited != d["ok"]:
        errs.append("%d requests audited by the webhook, %d answers received" % (audited, d["ok"]))
    verdict("%d answered 200 = %d audited; other HTTP statuses: none; connection errors (reported only): %s"
            % (d["ok"], audited, d["errors"] or "none"), errs)


def peer_serial(sock):
    return sock.getpeercert()["serialNumber"].upper().lstrip("0") or "0"


def cmd_serial(port, ca):
    s = connect(int(port), context(ca))
    try:
        print(peer_serial(s))
    finally:
        s.close()


def cmd_handshakes(port, ca, ns, rate, threads, stop, out):
    """Valid reviews at RATE req/s from THREADS threads, each on a new
    connection with a full, verified TLS handshake (Python's ssl resumes a
    session only when asked to; oha --disable-keepalive resumes them, and a
    resumed handshake never shows the server's current certificate). Until
    the file STOP exists (at most 300 s). OUT: one JSON line per request:
    thread, served serial, '' or why the answer is not the mutation."""
    port, rate, threads, ctx = int(port), float(rate), int(threads), context(ca)
    interval, deadline, lock = threads / rate, time.time() + 300, threading.Lock()
    f = open(out, "w")

    def worker(t):
        i, next_at = 0, time.time() + t * interval / threads
        while not os.path.exists(stop) and time.time() < deadline:
            time.sleep(max(0.0, next_at - time.time()))
            next_at += interval
            uid, serial = "hs-%d-%d" % (t, i), None
            try:
                s = connect(port, ctx)
                try:
                    serial = peer_serial(s)
                    body = review_bytes(ns, uid)
                    s.sendall(head("/mutate", len(body)) + body)
                    why = check_mutation(read_response(s), uid, ns)
                finally:
                    s.close()
            except Exception as e:  # noqa: BLE001 - any failure is the result
                why = "%s: %s" % (type(e).__name__, e)
            with lock:
                f.write(json.dumps({"t": t, "serial": serial, "why": why}) + "\n")
            i += 1

    ts = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    f.close()


def cmd_handshake_results(out, *serials):
    """Every request of `handshakes` answered with the mutation, each of
    SERIALS (the initial certificate, then each rotation's) served to some
    full handshake, and in each thread the serials only moving forward."""
    order = {s: i for i, s in enumerate(serials)}
    rs = [json.loads(line) for line in open(out)]
    errs = []
    bad = [r for r in rs if r["why"]]
    if bad:
        errs.append("%d of %d requests failed, e.g. %s" % (len(bad), len(rs), bad[0]["why"][:200]))
    unknown = {r["serial"] for r in rs if r["serial"] and r["serial"] not in order}
    if unknown:
        errs.append("served serials not of these certificates: %s" % sorted(unknown))
    counts = {s: sum(1 for r in rs if r["serial"] == s) for s in serials}
    missing = [s for s, c in counts.items() if not c]
    if missing:
        errs.append("no full handshake saw serial(s) %s" % missing)
    last = {}
    for r in rs:
        k = order.get(r["serial"], -1)
        if k < last.get(r["t"], -1):
            errs.append("thread %d saw serial %s after a newer one" % (r["t"], r["serial"]))
            break
        last[r["t"]] = k
    verdict("%d requests, each a new connection and full verified handshake, all answered with the mutation; "
            "handshakes per certificate, initial first: %s; never back to an older one"
            % (len(rs), ", ".join(str(counts[s]) for s in serials)), errs)


def cmd_admit(port, ca, ns, pubkey, uid):
    why = check_mutation(request(int(port), context(ca), review_bytes(ns, uid)), uid, ns, pubkey)
    verdict("200, allowed, a JSONPatch adding only runtimeClassName nono-runc and kubefence's annotations, "
            "the decision verifying with %s" % os.path.basename(pubkey), [why] if why else [])


def cmd_metrics(port, ca):
    r = get(int(port), context(ca), "/metrics")
    if r is None or r.status != 200:
        sys.exit("GET /metrics: %s" % (r and r.status))
    series = {}
    for line in r.text().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            series[name] = float(value)
    print(json.dumps(series, sort_keys=True))


def cmd_slow(port, ca, ns, n, ready, go, out):
    """N connections, each: a POST /mutate head with `Expect: 100-continue`
    and the full Content-Length, wait for the server's `100 Continue` (so the
    request is known to be parsed and its handler reading the body: in
    flight, not just connected), then half of the body. Then READY is
    written and the clients wait for the file GO (written once SIGTERM has
    reached the server), send the other half and read the answer. OUT gets
    one JSON line per client: uid, status, and '' or why the answer is wrong."""
    port, n, ctx = int(port), int(n), context(ca)
    socks = []
    for i in range(n):
        uid = "slow-%02d" % i
        body = review_bytes(ns, uid)
        s = connect(port, ctx)
        s.sendall(head("/mutate", len(body), extra=["Expect: 100-continue"]))
        got = read_head(s, b"")
        if got is None or got[0] != 100:
            sys.exit("%s: wanted 100 Continue, got %r" % (uid, got and got[0]))
        s.sendall(body[:len(body) // 2])
        socks.append((uid, s, body, got[2]))
    open(ready, "w").write("%d\n" % n)
    deadline = time.time() + 120
    while not os.path.exists(go):
        if time.time() > deadline:
            sys.exit("no %s after 120 s" % go)
        time.sleep(0.02)

    results = [None] * n

    def finish(i):
        uid, s, body, buf = socks[i]
        try:
            s.sendall(body[len(body) // 2:])
            r = read_response(s, buf)
            results[i] = {"uid": uid, "status": r and r.status, "why": check_mutation(r, uid, ns)}
        except Exception as e:  # noqa: BLE001 - any failure is the result
            results[i] = {"uid": uid, "status": None, "why": "%s: %s" % (type(e).__name__, e)}
        finally:
            s.close()

    threads = [threading.Thread(target=finish, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with open(out, "w") as f:
        for r in results:
            f.write(json.dumps(r) + "\n")


def cmd_refused(port, seconds):
    start = time.time()
    deadline = start + float(seconds)
    while True:
        try:
            socket.create_connection((HOST, int(port)), timeout=2).close()
        except ConnectionRefusedError:
            print("connect to %s:%s refused (ECONNREFUSED) %.1f s after the first try" % (HOST, port, time.time() - start))
            return
        except OSError:
            pass
        if time.time() > deadline:
            sys.exit("127.0.0.1:%s still accepts connections after %s s" % (port, seconds))
        time.sleep(0.05)


# Hostile classes (HOSTILE below): a function(port, ctx, i, env) per class,
# returning an outcome: {"status": HTTP status or None, "text": body text,
# "closed": how the connection ended without an HTTP answer, "why": '' or
# what is wrong with the answer}.

def _send(port, ctx, data, ctype="application/json"):
    r = request(port, ctx, data, ctype)
    return {"status": r and r.status, "text": r.text() if r else "", "body": r.body if r else b""}


def h_oversize_declared(port, ctx, i, env):
    # Content-Length over the limit and no body: refused from the header alone.
    s = connect(port, ctx)
    try:
        s.sendall(head("/mutate", env["max"] + 1 + i))
        r = read_response(s)
    finally:
        s.close()
    return {"status": r and r.status, "text": r.text() if r else ""}


ONE_BIG_BODY = threading.Lock()


def h_oversize_chunked(port, ctx, i, env):
    # No Content-Length: the limit must stop a streamed body. Exactly
    # max+1 bytes are sent (so the server has read all of them when it
    # answers and its close is a clean FIN), then the answer is read. One
    # at a time, so the peak RSS bound can count one buffered body.
    with ONE_BIG_BODY:
        return _oversize_chunked(port, ctx, env)


def _oversize_chunked(port, ctx, env):
    s = connect(port, ctx)
    try:
        s.sendall(b"POST /mutate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n")
        left, piece = env["max"] + 1, b"[" + b" " * (256 * 1024 - 1)
        while left > 0:
            chunk = piece[:min(left, len(piece))]
            s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            left -= len(chunk)
        r = read_response(s)
    finally:
        s.close()
    return {"status": r and r.status, "text": r.text() if r else ""}


def h_deep_array(port, ctx, i, env):
    return _send(port, ctx, b"[" * (100000 + i))


def h_deep_object(port, ctx, i, env):
    return _send(port, ctx, b'{"a":' * (50000 + i))


def h_deep_in_review(port, ctx, i, env):
    # A well-formed start (apiVersion, kind, uid) with 100,000 [ as the object.
    body = review_bytes(env["ns"], "deep-%d" % i)
    cut = body.index(b'"object":') + len(b'"object":')
    return _send(port, ctx, body[:cut] + b"[" * 100000)


def h_truncated(port, ctx, i, env):
    body = review_bytes(env["ns"], "trunc-%d" % i)
    cut = 1 + (i * 7919) % (len(body) - 1)  # spread over the whole body, never whole
    return _send(port, ctx, body[:cut])


NON_UTF8 = [b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xfe\xff", b"\x80", b"\xf8\x88\x80\x80\x80"]


def h_non_utf8(port, ctx, i, env):
    # A valid review but for invalid UTF-8 inside a label value (or a BOM-like
    # prefix): must not be admitted, whatever the rest says.
    body = review_bytes(env["ns"], "utf8-%d" % i)
    bad = NON_UTF8[i % len(NON_UTF8)]
    if i % 4 == 3:
        body = bad + body
    else:
        at = body.index(b'"app":"web"') + len(b'"app":"w')
        body = body[:at] + bad + body[at:]
    return _send(port, ctx, body)


def h_annotations(port, ctx, i, env):
    # Within the body limit: the normal answer, the patch touching none of
    # the pod's own annotations (the first three decisions also verified).
    uid = "many-ann-%d" % i
    body = env["annotated"].replace(b'"uid":"many-ann"', b'"uid":"%s"' % uid.encode(), 1)
    r = request(port, ctx, body)
    return {"status": r and r.status, "text": r.text() if r else "",
            "why": check_mutation(r, uid, env["ns"], env["pubkey"] if i < 3 else None)}


def _short_body(port, ctx, i, env, close):
    # Content-Length claims 1000 bytes more than are sent; then the client
    # half-closes (FIN, no TLS close_notify, still reading) or closes.
    body = review_bytes(env["ns"], "short-%d" % i)
    s = connect(port, ctx)
    try:
        s.sendall(head("/mutate", len(body) + 1000) + body)
        if close:
            return {"status": None, "text": "", "closed": "by the client"}
        half_close(s)
        try:
            r = read_response(s)
        except (ssl.SSLError, OSError, EOFError) as e:
            return {"status": None, "text": "", "closed": "%s: %s" % (type(e).__name__, e)}
    finally:
        s.close()
    if r is None:
        return {"status": None, "text": "", "closed": "EOF"}
    return {"status": r.status, "text": r.text()}


def h_short_body_half_close(port, ctx, i, env):
    return _short_body(port, ctx, i, env, close=False)


def h_short_body_close(port, ctx, i, env):
    return _short_body(port, ctx, i, env, close=True)


CTYPES = ["text/plain", "application/x-www-form-urlencoded", "application/yaml",
          "multipart/form-data; boundary=x", None, "application/json; charset=iso-8859-1"]


def h_content_type(port, ctx, i, env):
    # A valid review under another content type (or none): the webhook does
    # not look at Content-Type, so the answer must be the normal mutation.
    uid = "ctype-%d" % i
    r = _send(port, ctx, review_bytes(env["ns"], uid), ctype=CTYPES[i % len(CTYPES)])
    resp = Response(r["status"], {}, r["body"]) if r["status"] else None
    r["why"] = check_mutation(resp, uid, env["ns"]) if r["status"] == 200 else ""
    return r


def h_content_type_garbage(port, ctx, i, env):
    return _send(port, ctx, b"uid=x&allowed=true&patch=W10=", ctype=CTYPES[i % 2])


def _raw(port, data):
    """Raw bytes to the TLS port; what came back before the close."""
    s = socket.create_connection((HOST, port), timeout=TIMEOUT)
    got = b""
    try:
        s.sendall(data)
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
    except ConnectionResetError:
        pass
    finally:
        s.close()
    return got


def _tls_refusal(got):
    # The handshake fails: at most a TLS alert record (content type 21),
    # never an HTTP answer, and the connection is closed (not left hanging).
    if got and got[0] != 21:
        return {"status": None, "text": "", "closed": "sent %r" % got[:64], "why": "not a TLS alert"}
    return {"status": None, "text": "", "closed": "alert" if got else "EOF"}


def h_garbage_tls(port, ctx, i, env):
    rnd = random.Random(i)
    data = bytes(rnd.getrandbits(8) for _ in range(16 + i % 2000))
    if i % 3 == 0:  # a TLS handshake record header with a body of junk
        data = b"\x16\x03\x01" + len(data).to_bytes(2, "big") + data
    return _tls_refusal(_raw(port, data))


def h_plain_http(port, ctx, i, env):
    body = review_bytes(env["ns"], "plain-%d" % i)
    return _tls_refusal(_raw(port, head("/mutate", len(body)) + body))


def _in_band(port, ctx, ns, uid, want_allowed, want_code):
    """A review for NS: the answer must be in-band (200, same uid) with
    allowed == want_allowed, the refusal's status code want_code, and no
    patch at all."""
    r = _send(port, ctx, review_bytes(ns, uid))
    o = {"status": r["status"], "text": r["text"][:300], "why": ""}
    if r["status"] != 200:
        return o
    try:
        a = json.loads(r["body"])["response"]
    except (ValueError, KeyError, TypeError) as e:
        o["why"] = "not an AdmissionReview answer: %s" % e
        return o
    code = (a.get("status") or {}).get("code")
    msg = (a.get("status") or {}).get("message", "")
    if a.get("uid") != uid or a.get("allowed") is not want_allowed or "patch" in a or "patchType" in a:
        o["why"] = "want uid %s, allowed %s, no patch: %s" % (uid, want_allowed, json.dumps(a)[:300])
    elif code != want_code or (want_code and not readable(msg)):
        o["why"] = "want status code %s with a message: %s" % (want_code, json.dumps(a)[:300])
    return o


def h_not_opted_in(port, ctx, i, env):
    return _in_band(port, ctx, env["plain_ns"], "plain-ns-%d" % i, True, None)


def h_unknown_namespace(port, ctx, i, env):
    return _in_band(port, ctx, "kf-no-such-namespace-%d" % i, "no-ns-%d" % i, False, 403)


HOSTILE = {
    # class: (count, function, expected HTTP status or None for "no HTTP
    # answer", word the error text must contain, what it is)
    "oversize-declared": (400, h_oversize_declared, 413, "max_body_bytes",
                          "Content-Length max_body_bytes+1.., no body sent"),
    "oversize-chunked": (8, h_oversize_chunked, 413, "max_body_bytes",
                         "chunked, max_body_bytes+1 bytes streamed, one at a time"),
    "deep-array": (300, h_deep_array, 400, "recursion limit", "100,000+ ["),
    "deep-object": (200, h_deep_object, 400, "recursion limit", '50,000+ {"a":'),
    "deep-in-review": (100, h_deep_in_review, 400, "recursion limit",
                       "a review whose object is 100,000 ["),
    "truncated": (400, h_truncated, 400, "not UTF-8 JSON", "a review cut short at 400 places"),
    "non-utf8": (300, h_non_utf8, 400, "not UTF-8", "a review with invalid UTF-8 in a label or before it"),
    "many-annotations": (150, h_annotations, 200, None,
                         "4,000 annotations (~300 KB): the normal mutation, only kubefence fields patched"),
    "short-body-half-close": (200, h_short_body_half_close, 400, "reading request body",
                              "Content-Length 1000 more than sent, then FIN"),
    "short-body-close": (200, h_short_body_close, None, None,
                         "Content-Length 1000 more than sent, then close"),
    "content-type": (300, h_content_type, 200, None,
                     "a valid review as text/plain, form, yaml, multipart, none: the body decides"),
    "content-type-garbage": (100, h_content_type_garbage, 400, "not UTF-8 JSON",
                             "a form body under text/plain or form content types"),
    "not-opted-in": (100, h_not_opted_in, 200, None, "a namespace without the label: allowed, no patch"),
    "unknown-namespace": (100, h_unknown_namespace, 200, None,
                          "a namespace the apiserver does not have: denied 403 in-band, no patch"),
    "garbage-tls": (300, h_garbage_tls, None, None, "random bytes, some in a TLS record: closed, alert at most"),
    "plain-http": (200, h_plain_http, None, None, "plain HTTP to the TLS port: closed, alert at most"),
}


def judge(name, o):
    """'' if outcome o is what class name must get, else why not."""
    _, _, want, word, _ = HOSTILE[name]
    if o.get("why"):
        return o["why"]
    if o["status"] != want:
        return "HTTP %s, want %s%s" % (o["status"], want, (": " + o["text"][:160]) if o["text"] else "")
    if want not in (None, 200):
        if not readable(o["text"]):
            return "HTTP %d with no readable error text: %r" % (want, o["text"][:100])
        if word and word not in o["text"]:
            return "HTTP %d without %r: %s" % (want, word, o["text"][:160])
    if o["status"] and o["status"] != 200 and '"allowed":true' in o["text"].replace(" ", ""):
        return "allowed=true in a refusal"
    return ""


def cmd_hostile(port, ca, ns, plain_ns, pubkey, max_body, out):
    """Every HOSTILE class COUNT times, the classes shuffled together, 16
    requests at a time, each on its own connection. Each outcome is judged
    against the class's expectation; any 200 with allowed and a patch is
    checked to be exactly the sandboxing mutation (classes whose body is a
    valid review) or is a failure (any other class)."""
    port, ctx = int(port), context(ca)
    annotated = review_bytes(ns, "many-ann", annotations=4000)
    assert len(annotated) < int(max_body), len(annotated)
    env = {"ns": ns, "plain_ns": plain_ns, "pubkey": pubkey, "max": int(max_body),
           "annotated": annotated}
    jobs = [(name, i) for name, (count, *_) in HOSTILE.items() for i in range(count)]
    random.Random(1).shuffle(jobs)  # the classes interleaved, reproducibly

    def run(job):
        name, i = job
        try:
            o = HOSTILE[name][1](port, ctx, i, env)
        except Exception as e:  # noqa: BLE001 - any failure is the outcome
            o = {"status": None, "text": "", "why": "client: %s: %s" % (type(e).__name__, e)}
        o.pop("body", None)
        o["why"] = judge(name, o)
        return name, i, o

    started = time.time()
    stats = {name: {"n": 0, "bad": 0, "seen": {}} for name in HOSTILE}
    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool, open(out, "w") as f:
        for name, i, o in pool.map(run, jobs):
            st = stats[name]
            st["n"] += 1
            if o["status"]:
                key = str(o["status"])
            elif "closed" in o:
                key = "closed:" + o["closed"].split(":")[0]
            else:
                key = "client error"
            st["seen"][key] = st["seen"].get(key, 0) + 1
            if o["why"]:
                st["bad"] += 1
            if o["why"] or i < 2:
                f.write(json.dumps({"class": name, "i": i, **o}) + "\n")
    failed = 0
    for name, st in stats.items():
        want = HOSTILE[name][2]
        print(json.dumps({"class": name, "requests": st["n"], "unexpected": st["bad"],
                          "expected": want if want else "no HTTP answer", "seen": st["seen"],
                          "hint": HOSTILE[name][4]}))
        failed += st["bad"] > 0
    print("%d hostile requests in %.1f s, 16 at a time, each on a new connection" % (len(jobs), time.time() - started))
    sys.exit(1 if failed else 0)


def _stall_one(port, ctx, kind, maxbody, timeout):
    """One client that stops sending: 'idle' (nothing after the handshake),
    'half-head' (part of a request head), 'half-body' (a head declaring
    MAXBODY bytes, then half of them). Returns what the server did and when."""
    started = time.time()
    s = connect(port, ctx)
    s.settimeout(timeout + 15)
    try:
        if kind == "half-head":
            s.sendall(b"POST /mutate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Ty")
        elif kind == "half-body":
            s.sendall(head("/mutate", maxbody))
            try:
                s.sendall(b" " * (maxbody // 2))
            except OSError:
                pass  # answered (503) and closed while we were still sending
        try:
            r = read_response(s)
        except (EOFError, ValueError, OSError) as e:
            r, err = None, str(e)
        else:
            err = ""
        return {"kind": kind, "status": r and r.status, "text": r.text()[:200] if r else "",
                "err": err[:200], "secs": round(time.time() - started, 2)}
    except socket.timeout:
        return {"kind": kind, "status": None, "text": "", "err": "still open", "secs": round(time.time() - started, 2)}
    finally:
        s.close()


def cmd_stall(port, ca, ns, n, maxbody, budget, timeout):
    """N idle, N half-head and N half-body clients at once. Each must be cut
    off by the server within TIMEOUT (request_timeout_secs) + 5 s: idle and
    half-head connections closed without an answer; half bodies answered
    408, or 503 when the bodies already held fill BUDGET
    (max_buffered_body_bytes) -- and then at least N - BUDGET/(MAXBODY/2) of
    them must be 503, or the budget is not enforced."""
    port, n, maxbody, budget, timeout = int(port), int(n), int(maxbody), int(budget), int(timeout)
    ctx = context(ca)
    kinds = ["idle", "half-head", "half-body"]
    with concurrent.futures.ThreadPoolExecutor(max_workers=3 * n) as pool:
        futs = [pool.submit(_stall_one, port, ctx, k, maxbody, timeout) for k in kinds for _ in range(n)]
        results = [f.result() for f in futs]
    failed = False
    limit = timeout + 5
    for k in kinds:
        rs = [r for r in results if r["kind"] == k]
        late = [r for r in rs if r["err"] == "still open" or r["secs"] > limit]
        if k == "half-body":
            bad = [r for r in rs if r["status"] not in (408, 503) or not readable(r["text"])]
            busy = sum(r["status"] == 503 for r in rs)
            need = max(0, n - budget // (maxbody // 2))
            ok = not late and not bad and busy >= need
            why = "%d answered 408 (timed out), %d 503 (budget full; at least %d needed)" % (
                sum(r["status"] == 408 for r in rs), busy, need)
        else:
            bad = [r for r in rs if r["status"] is not None]
            ok = not late and not bad
            why = "all closed without an answer"
        print(json.dumps({"kind": k, "clients": len(rs), "ok": ok, "summary": why,
                          "slowest_secs": max(r["secs"] for r in rs), "limit_secs": limit,
                          "late": len(late), "bad": (bad + late)[:2]}))
        failed |= not ok
    sys.exit(1 if failed else 0)


COMMANDS = {
    "review": lambda ns, uid, n="0": sys.stdout.write(json.dumps(review(ns, uid, int(n))) + "\n"),
    "oha": cmd_oha, "serial": cmd_serial, "admit": cmd_admit, "metrics": cmd_metrics,
    "slow": cmd_slow, "refused": cmd_refused, "hostile": cmd_hostile,
    "all-ok": cmd_all_ok, "delta": cmd_delta, "rotation-metrics": cmd_rotation_metrics,
    "memory": cmd_memory, "hostile-metrics": cmd_hostile_metrics, "slow-results": cmd_slow_results,
    "shutdown-load": cmd_shutdown_load, "handshakes": cmd_handshakes,
    "handshake-results": cmd_handshake_results, "stall": cmd_stall,
}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        sys.exit(__doc__)
    COMMANDS[sys.argv[1]](*sys.argv[2:])
