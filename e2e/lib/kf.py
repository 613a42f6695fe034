#!/usr/bin/env python3
"""JSON helpers for the kubefence node e2e and demo (stdlib only).

  kf.py review POD.json NAMESPACE                 -> AdmissionReview (CREATE) on stdout
  kf.py apply POD.json RESPONSE.json              -> the admitted pod on stdout (patch applied);
                                                     exit 3 if the webhook did not allow it
  kf.py name POD.json                             -> metadata.name, or generateName + 5
                                                     characters of the apiserver alphabet
  kf.py sandbox POD.json NAME NS UID LOGDIR CGROUP -> crictl pod sandbox config
  kf.py container POD.json CTRNAME [EXTRA.json]   -> crictl container config for that container
                                                     (init, regular or ephemeral)
                                                     (EXTRA: {"mounts": [...], "envs": [...]})
  kf.py from-pod POD.json HANDLER OUTDIR LOGROOT CGROUP [EXTRA.json]
                                                  -> the stored pod translated as the kubelet does:
                                                     OUTDIR/sandbox.json, container-<name>.json
                                                     (see cmd_from_pod)
  kf.py handler POD.json CLASSMAP                 -> runtime handler ("nono=nono-runc,...";
                                                     no runtimeClassName -> runc)
  kf.py annotation POD.json KEY                  -> one annotation's value
  kf.py get FILE.json PATH                        -> the value at a dotted path (JSON for
                                                     objects, raw for strings)
  kf.py spec-wrapped SPEC PROFILE HOSTDIR CTRCFG   -> problems (exit 1) unless the OCI spec runs
                                                     CTRCFG's command under the nono wrapper with
                                                     /nono read-only from HOSTDIR and no NONO_* env
  kf.py spec-plain SPEC CTRCFG                    -> problems (exit 1) unless args are exactly the
                                                     config's, every config env is there, no /nono
  kf.py spec-same A B                             -> differences in process.args/env and mounts
  kf.py resign TOKEN SIGNING.pem                  -> the token's header and claims, signed with
                                                     another Ed25519 key (openssl), same kid
  kf.py token-tamper TOKEN MODE                   -> a modified decision token:
                                                     sig-zero | sig-flip | payload-byte | kid
"""
import base64
import copy
import json
import random
import sys

ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def load(path):
    with open(path) as f:
        return json.load(f)


def out(obj):
    json.dump(obj, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


def review(pod, namespace):
    meta = pod.get("metadata", {})
    req = {
        "uid": "e2e-%016x" % random.getrandbits(64),
        "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
        "requestResource": {"group": "", "version": "v1", "resource": "pods"},
        "namespace": namespace,
        "operation": "CREATE",
        "userInfo": {
            "username": "system:serviceaccount:kube-system:replicaset-controller",
            "uid": "0f2b6c2e-6d0b-4a52-8f3c-6a1f3c0e9b11",
            "groups": ["system:serviceaccounts", "system:serviceaccounts:kube-system",
                       "system:authenticated"],
        },
        "object": pod,
        "oldObject": None,
        "dryRun": False,
        "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"},
    }
    if meta.get("name"):
        req["name"] = meta["name"]
    return {"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1", "request": req}


def _unescape(tok):
    return tok.replace("~1", "/").replace("~0", "~")


def _walk(doc, path):
    parts = [_unescape(p) for p in path.split("/")[1:]]
    cur = doc
    for p in parts[:-1]:
        cur = cur[int(p)] if isinstance(cur, list) else cur[p]
    return cur, parts[-1] if parts else None


def apply_patch(doc, patch):
    """RFC 6902 (add, remove, replace, test, copy, move)."""
    doc = copy.deepcopy(doc)
    for op in patch:
        kind, path = op["op"], op["path"]
        if path == "":
            if kind in ("add", "replace"):
                doc = copy.deepcopy(op["value"])
                continue
        parent, key = _walk(doc, path)
        if kind in ("add", "replace", "copy", "move"):
            if kind == "copy":
                sp, sk = _walk(doc, op["from"])
                value = copy.deepcopy(sp[int(sk)] if isinstance(sp, list) else sp[sk])
            elif kind == "move":
                sp, sk = _walk(doc, op["from"])
                value = sp.pop(int(sk)) if isinstance(sp, list) else sp.pop(sk)
                parent, key = _walk(doc, path)
            else:
                value = copy.deepcopy(op["value"])
            if isinstance(parent, list):
                if key == "-":
                    parent.append(value)
                elif kind == "replace":
                    parent[int(key)] = value
                else:
                    parent.insert(int(key), value)
            else:
                if kind == "replace" and key not in parent:
                    raise SystemExit("patch: replace of missing %s" % path)
                parent[key] = value
        elif kind == "remove":
            if isinstance(parent, list):
                parent.pop(int(key))
            else:
                del parent[key]
        elif kind == "test":
            have = parent[int(key)] if isinstance(parent, list) else parent.get(key)
            if have != op["value"]:
                raise SystemExit("patch: test failed at %s" % path)
        else:
            raise SystemExit("patch: unknown op %s" % kind)
    return doc


def cmd_apply(pod_path, resp_path):
    pod = load(pod_path)
    resp = load(resp_path)
    r = resp.get("response") or {}
    if not r.get("allowed"):
        sys.stderr.write("webhook did not allow the pod: %s\n" % json.dumps(r.get("status")))
        sys.exit(3)
    if r.get("patch"):
        if r.get("patchType") not in (None, "JSONPatch"):
            raise SystemExit("unexpected patchType %r" % r.get("patchType"))
        patch = json.loads(base64.b64decode(r["patch"]))
        pod = apply_patch(pod, patch)
    out(pod)


def final_name(pod):
    meta = pod.get("metadata", {})
    if meta.get("name"):
        return meta["name"]
    prefix = meta["generateName"][:58]
    rnd = random.SystemRandom()
    return prefix + "".join(rnd.choice(ALPHABET) for _ in range(5))


def cmd_sandbox(pod_path, name, ns, uid, logdir, cgroup):
    out(sandbox_config(load(pod_path), name, ns, uid, logdir, cgroup))


def sandbox_config(pod, name, ns, uid, logdir, cgroup):
    ann = pod.get("metadata", {}).get("annotations") or {}
    return {
        "metadata": {"name": name, "namespace": ns, "uid": uid, "attempt": 1},
        "annotations": ann,
        "labels": pod.get("metadata", {}).get("labels") or {},
        "log_directory": logdir,
        "linux": {
            "cgroup_parent": cgroup,
            # like the kubelet: node network (no CNI here), own PID namespace
            "security_context": {"namespace_options": {"network": 2, "pid": 1}},
        },
    }


def cmd_container(pod_path, cname, extra_path=None):
    out(container_config(load(pod_path), cname, load(extra_path) if extra_path else None))


def container_config(pod, cname, extra=None):
    spec = pod["spec"]
    ctr = None
    # ephemeralContainers: kubectl debug's, which the kubelet creates in the
    # running sandbox like any other container
    for c in spec.get("initContainers", []) + spec.get("containers", []) + spec.get("ephemeralContainers", []):
        if c["name"] == cname:
            ctr = c
    if ctr is None:
        raise SystemExit("no container %s in the pod" % cname)
    cfg = {
        "metadata": {"name": cname, "attempt": 0},
        "image": {"image": ctr["image"]},
        "log_path": "%s.log" % cname,
        "annotations": {},
        # like the kubelet: the container's own PID namespace (so PID 1 is the
        # workload), node network
        "linux": {"security_context": {"namespace_options": {"network": 2, "pid": 1}}},
    }
    if ctr.get("command"):
        cfg["command"] = ctr["command"]
    if ctr.get("args"):
        cfg["args"] = ctr["args"]
    envs = [{"key": e["name"], "value": e.get("value", "")} for e in ctr.get("env", [])]
    if extra:
        envs += extra.get("envs", [])
        if "mounts" in extra:
            cfg["mounts"] = extra["mounts"]
        if "attempt" in extra:
            cfg["metadata"]["attempt"] = extra["attempt"]
    if envs:
        cfg["envs"] = envs
    return cfg


def cmd_from_pod(pod_path, handler, outdir, logroot, cgroup, extra_path=None):
    """The STORED pod (kubectl get -o json) as the kubelet turns it into CRI
    requests (pkg/kubelet/kuberuntime: generatePodSandboxConfig,
    generateContainerConfig): sandbox metadata from the object's namespace,
    name and uid (attempt 0), its labels plus the io.kubernetes.pod.* labels,
    its annotations as they are, log directory
    <ns>_<name>_<uid>, the pod-level PID namespace mode from the spec
    (hostPID -> NODE, shareProcessNamespace -> POD, else CONTAINER), node
    network (there is no CNI here); per container: image, command, args,
    workingDir, literal env, log path <name>/0.log, the EXTRA mounts (the fake
    service-account token). HANDLER is the RuntimeClass's handler, which the
    kubelet looks up from the RuntimeClass object. Writes OUTDIR/sandbox.json,
    OUTDIR/container-<name>.json and OUTDIR/runtime-handler; prints one line
    per file."""
    import os
    pod = load(pod_path)
    meta, spec = pod["metadata"], pod["spec"]
    for f in ("namespace", "name", "uid"):
        if not meta.get(f):
            raise SystemExit("from-pod: the pod has no metadata.%s: give the stored object (kubectl get -o json)" % f)
    ns, name, uid = meta["namespace"], meta["name"], meta["uid"]
    extra = load(extra_path) if extra_path else None
    pid = 2 if spec.get("hostPID") else (0 if spec.get("shareProcessNamespace") else 1)
    nsopts = {"network": 2, "pid": pid}
    kube_labels = {"io.kubernetes.pod.name": name, "io.kubernetes.pod.namespace": ns,
                   "io.kubernetes.pod.uid": uid}
    sb = sandbox_config(pod, name, ns, uid, os.path.join(logroot, "%s_%s_%s" % (ns, name, uid)), cgroup)
    sb["metadata"]["attempt"] = 0
    # no sb["hostname"]: the kubelet sets it only for pods with their own
    # network (and so UTS) namespace; here every pod is on the node network
    sb["labels"] = dict(sb["labels"], **kube_labels)
    sb["linux"]["security_context"]["namespace_options"] = nsopts
    files = []
    def write(fname, obj):
        path = os.path.join(outdir, fname)
        with open(path, "w") as f:
            json.dump(obj, f, indent=1, sort_keys=True)
            f.write("\n")
        files.append(path)
    write("sandbox.json", sb)
    for c in spec.get("containers", []):
        for e in c.get("env", []):
            if "valueFrom" in e:
                raise SystemExit("from-pod: env %s of %s uses valueFrom (not translated)" % (e["name"], c["name"]))
        cfg = container_config(pod, c["name"], extra)
        cfg["log_path"] = "%s/0.log" % c["name"]
        if c.get("workingDir"):
            cfg["working_dir"] = c["workingDir"]
        cfg["labels"] = dict(kube_labels, **{"io.kubernetes.container.name": c["name"]})
        cfg["annotations"] = {"io.kubernetes.container.restartCount": "0"}
        cfg["linux"]["security_context"]["namespace_options"] = nsopts
        write("container-%s.json" % c["name"], cfg)
    with open(os.path.join(outdir, "runtime-handler"), "w") as f:
        f.write(handler + "\n")
    for p in files:
        print(p)


def cmd_handler(pod_path, classmap):
    pod = load(pod_path)
    rc = pod.get("spec", {}).get("runtimeClassName")
    if not rc:
        print("runc")
        return
    m = dict(kv.split("=", 1) for kv in classmap.split(",") if kv)
    if rc not in m:
        raise SystemExit("runtime class %s has no handler in %s" % (rc, classmap))
    print(m[rc])


def cmd_get(path, dotted):
    cur = load(path)
    for p in dotted.split("."):
        if p == "":
            continue
        if isinstance(cur, list):
            cur = cur[int(p)]
        else:
            cur = cur[p]
    if isinstance(cur, str):
        print(cur)
    else:
        print(json.dumps(cur, sort_keys=True))


def b64d(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def b64e(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def cmd_token_tamper(token, mode):
    h, c, s = token.split(".")
    if mode == "sig-zero":
        # a valid-looking (64-byte, canonical base64url) signature that is not the right one
        s = b64e(bytes(64))
    elif mode == "sig-flip":
        sig = bytearray(b64d(s))
        sig[0] ^= 0x01
        s = b64e(bytes(sig))
    elif mode == "payload-byte":
        # change one byte of the claims JSON (the iat's last digit), re-encode canonically
        claims = bytearray(b64d(c))
        i = claims.rfind(b'"iat":') + len(b'"iat":')
        while chr(claims[i]).isdigit():
            i += 1
        j = i - 1
        claims[j] = ord("0") + (claims[j] - ord("0") + 1) % 10
        c = b64e(bytes(claims))
    elif mode == "kid":
        hdr = json.loads(b64d(h))
        hdr["kid"] = b64e(bytes(32))
        # keep the member order of the original header
        raw = b64d(h).decode()
        raw = raw.replace(json.loads(raw)["kid"], hdr["kid"])
        h = b64e(raw.encode())
    else:
        raise SystemExit("unknown tamper mode %s" % mode)
    print("%s.%s.%s" % (h, c, s))


WRAP = ["/nono/nono", "wrap", "--silent", "--profile", None, "--allow", "/nono/.kubefence-absent",
        "--env-credential", "", "--log-file", "/dev/null", "--"]


def ctr_args(cfg):
    return list(cfg.get("command", [])) + list(cfg.get("args", []))


def cmd_spec_wrapped(spec_path, profile, hostdir, cfg_path):
    spec, cfg = load(spec_path), load(cfg_path)
    probs = []
    want = [a if a is not None else "/nono/profiles/%s.json" % profile for a in WRAP] + ctr_args(cfg)
    have = spec["process"]["args"]
    if have != want:
        probs.append("process.args %s, want %s" % (json.dumps(have)[:400], json.dumps(want)[:400]))
    m = [x for x in spec.get("mounts", []) if x["destination"] == "/nono"]
    if len(m) != 1:
        probs.append("%d mounts at /nono" % len(m))
    else:
        m = m[0]
        if m.get("source") != hostdir or m.get("type") != "bind" or "ro" not in m.get("options", []):
            probs.append("/nono mount is %s (want a read-only bind of %s)" % (json.dumps(m), hostdir))
    env = [e for e in spec["process"].get("env", []) if e.startswith("NONO_")]
    if env:
        probs.append("NONO_* in the OCI env: %s" % env)
    if probs:
        print("; ".join(probs))
        sys.exit(1)


def cmd_spec_plain(spec_path, cfg_path):
    spec, cfg = load(spec_path), load(cfg_path)
    probs = []
    if spec["process"]["args"] != ctr_args(cfg):
        probs.append("process.args %s, want %s" % (spec["process"]["args"], ctr_args(cfg)))
    env = spec["process"].get("env", [])
    for e in cfg.get("envs", []):
        kv = "%s=%s" % (e["key"], e["value"])
        if kv not in env:
            probs.append("env %s missing" % kv)
    if any(x["destination"] == "/nono" for x in spec.get("mounts", [])):
        probs.append("a /nono mount")
    if probs:
        print("; ".join(probs))
        sys.exit(1)


def cmd_spec_same(a_path, b_path):
    a, b = load(a_path), load(b_path)
    probs = []
    for what, fa, fb in (("process.args", a["process"]["args"], b["process"]["args"]),
                         ("process.env", a["process"].get("env"), b["process"].get("env")),
                         ("mounts", a.get("mounts"), b.get("mounts"))):
        if fa != fb:
            probs.append("%s differ: %s vs %s" % (what, json.dumps(fa)[:600], json.dumps(fb)[:600]))
    if probs:
        print("; ".join(probs))
        sys.exit(1)


def cmd_resign(token, pem_path):
    """Signs header.claims with another key (kubefence-webhook keygen's PKCS#8):
    a real Ed25519 signature, by a key the node does not trust, under the
    trusted kid."""
    import os
    import subprocess
    import tempfile
    pem = open(pem_path).read()
    der = base64.b64decode("".join(l for l in pem.splitlines() if not l.startswith("-----")))
    i = der.find(bytes.fromhex("04220420"))
    if i < 0:
        raise SystemExit("no Ed25519 seed in %s" % pem_path)
    seed = der[i + 4:i + 36]
    # PKCS#8 v1 (RFC 8410), which openssl 3.0 reads
    v1 = bytes.fromhex("302e020100300506032b657004220420") + seed
    h, c, _ = token.split(".")
    with tempfile.TemporaryDirectory() as d:
        key, msg = os.path.join(d, "k.pem"), os.path.join(d, "m")
        with open(key, "w") as f:
            f.write("-----BEGIN PRIVATE KEY-----\n%s\n-----END PRIVATE KEY-----\n"
                    % base64.b64encode(v1).decode())
        with open(msg, "w") as f:
            f.write("%s.%s" % (h, c))
        sig = subprocess.run(["openssl", "pkeyutl", "-sign", "-inkey", key, "-rawin", "-in", msg],
                             check=True, capture_output=True).stdout
    if len(sig) != 64:
        raise SystemExit("openssl gave a %d-byte signature" % len(sig))
    print("%s.%s.%s" % (h, c, b64e(sig)))


def main(argv):
    if len(argv) < 2:
        sys.stderr.write(__doc__)
        sys.exit(2)
    cmd, args = argv[1], argv[2:]
    if cmd == "review":
        out(review(load(args[0]), args[1]))
    elif cmd == "apply":
        cmd_apply(*args)
    elif cmd == "name":
        print(final_name(load(args[0])))
    elif cmd == "sandbox":
        cmd_sandbox(*args)
    elif cmd == "container":
        cmd_container(*args)
    elif cmd == "from-pod":
        cmd_from_pod(*args)
    elif cmd == "handler":
        cmd_handler(*args)
    elif cmd == "annotation":
        print(load(args[0])["metadata"].get("annotations", {})[args[1]])
    elif cmd == "get":
        cmd_get(*args)
    elif cmd == "spec-wrapped":
        cmd_spec_wrapped(*args)
    elif cmd == "spec-plain":
        cmd_spec_plain(*args)
    elif cmd == "spec-same":
        cmd_spec_same(*args)
    elif cmd == "resign":
        cmd_resign(*args)
    elif cmd == "token-tamper":
        cmd_token_tamper(*args)
    else:
        sys.stderr.write(__doc__)
        sys.exit(2)


if __name__ == "__main__":
    main(sys.argv)
