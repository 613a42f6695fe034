#!/bin/bash
# Reproduces every observation in docs/nono-inputs.md ("profiles verified").
# Needs root, unshare, chroot, busybox-static, python3 and the nono binary at
# $NONO_BIN (default /var/cache/kubefence/nono-0.81.0/bin/nono). Touches the
# host only through /tmp/kfroot (an empty mount point, removed at the end).
cd "$(dirname "$0")"
C=./ctr.sh; T=./t.sh
W=(/nono/nono wrap --silent)
REC=(/nono/nono wrap --silent --profile /nono/profiles/default.json --allow /nono/.kubefence-absent --env-credential '' --log-file /dev/null --)
h() { echo; echo "### $*"; }
python3 mkspec.py

h "1 default: busybox ordinary work + denials"
$T default HOME=/root -- /bin/busybox sh -c 'echo pid=$$; head -1 /etc/os-release; echo hi > /tmp/x && cat /tmp/x; echo hi > /var/tmp/y && cat /var/tmp/y; echo s > /dev/shm/s && cat /dev/shm/s; cat /app/main.py; cat /var/run/secrets/kubernetes.io/serviceaccount/token; cat /run/secrets/kubernetes.io/serviceaccount/..data/token; ls /root; cat /home/user/secret; echo x > /etc/z; echo x > /x; ls /nono' 2>&1
h "2 default: python3"
$T default HOME=/root -- /usr/bin/python3 /app/py1.py 2>&1
h "3 strict: busybox"
$T strict HOME=/root -- /bin/busybox sh -c 'head -1 /etc/os-release; echo hi > /tmp/x && cat /tmp/x; echo y > /var/tmp/y; cat /var/run/secrets/kubernetes.io/serviceaccount/token; ls /root; cat /app/main.py; ls /proc/1; busybox nc 127.0.0.1 80 </dev/null' 2>&1
h "4 strict: python3"
$T strict HOME=/root -- /usr/bin/python3 -c "$(cat app/py1.py)" 2>&1
h "5 uid 1000, HOME=/"
$C HOME=/ -- /usr/bin/setpriv --reuid 1000 --regid 1000 --clear-groups "${W[@]}" --profile /nono/profiles/default.json -- /usr/bin/python3 -c 'import os; print("uid", os.getuid()); open("/tmp/u","w").write("x"); print("tmp ok")' 2>&1; echo "[exit=$?]"

h "A NONO_ALLOW=/root,/etc (HOME=/home/user)"
$T default HOME=/home/user NONO_ALLOW=/root,/etc -- /bin/busybox sh -c 'cat /root/secret; echo pwn > /etc/pwned && echo etc-writable' 2>&1
h "A' NONO_ALLOW=/run/secrets  (tripwire deny)"
$T default HOME=/root NONO_ALLOW=/run/secrets -- /bin/busybox true 2>&1
h "D NONO_ENV_CREDENTIAL=file://<token>=TOK"
$T default HOME=/root NONO_ENV_CREDENTIAL=file:///var/run/secrets/kubernetes.io/serviceaccount/token=TOK -- /bin/busybox sh -c 'echo "TOK=$TOK"' 2>&1
h "E NONO_ENV_CREDENTIAL=op://... runs the image's 'op' before Landlock"
$T default HOME=/root PATH=/app/bin:/usr/bin:/bin NONO_ENV_CREDENTIAL=op://vault/item/field=X -- /bin/busybox sh -c 'echo "X=$X"; cat /tmp/op-proof /etc/op-proof; cat /root/secret' 2>&1
h "F NONO_TOOL_SANDBOX_LAUNCH_SPEC=/app/spec.json (argv ignored)"
$T default HOME=/root NONO_TOOL_SANDBOX_LAUNCH_SPEC=/app/spec.json -- /bin/busybox echo "the command kubefence asked for" 2>&1
h "G NONO_LOG_FILE=/etc/nono-log-proof"
$T default HOME=/root NONO_LOG_FILE=/etc/nono-log-proof RUST_LOG=debug -- /bin/busybox sh -c 'wc -l /etc/nono-log-proof' 2>&1
h "H NONO_PROFILE=/app/evil.json without / with --profile"
$C HOME=/home/user NONO_PROFILE=/app/evil.json -- "${W[@]}" -- /bin/busybox cat /root/secret 2>&1; echo "[exit=$?]"
$T default HOME=/home/user NONO_PROFILE=/app/evil.json -- /bin/busybox cat /root/secret 2>&1
h "I XDG_CONFIG_HOME=/app/cfg: bare name vs absolute path"
$C HOME=/home/user XDG_CONFIG_HOME=/app/cfg -- "${W[@]}" --profile default -- /bin/busybox cat /root/secret 2>&1; echo "[exit=$?]"
$T default HOME=/home/user XDG_CONFIG_HOME=/app/cfg -- /bin/busybox cat /root/secret 2>&1
h "J TMPDIR=/root: kubefence default vs same profile without groups.exclude"
$T default HOME=/home/user TMPDIR=/root -- /bin/busybox sh -c 'echo w > /root/p && echo root-writable' 2>&1
$C HOME=/home/user TMPDIR=/root -- "${W[@]}" --profile /app/implicit.json -- /bin/busybox sh -c 'echo w > /root/p && echo root-writable' 2>&1; echo "[exit=$?]"
h "K HOME=/home/user, ~/.local/bin -> /root: implicit user_tools vs kubefence default"
for p in /app/implicit.json /nono/profiles/default.json; do $C HOME=/home/user -- /bin/busybox sh -c "mkdir -p /home/user/.local && ln -s /root /home/user/.local/bin && exec /nono/nono wrap --silent --profile $p -- /bin/busybox cat /root/secret" 2>&1; echo "[exit=$?]"; done
h "N image symlinks redirect grants: /opt -> /root ; /srv -> SA dir ; /lib32 -> /"
$C HOME=/home/user -- /bin/busybox sh -c 'rm -rf /opt; ln -s /root /opt; exec /nono/nono wrap --silent --profile /nono/profiles/default.json -- /bin/busybox cat /root/secret' 2>&1; echo "[exit=$?]"
$C HOME=/home/user -- /bin/busybox sh -c 'rm -rf /srv; ln -s /var/run/secrets/kubernetes.io/serviceaccount /srv; exec /nono/nono wrap --silent --profile /nono/profiles/default.json -- /bin/busybox cat /srv/token' 2>&1; echo "[exit=$?]"
$C HOME=/ -- /bin/busybox sh -c 'ln -s / /lib32; exec /nono/nono wrap --silent --profile /nono/profiles/default.json -- /bin/busybox cat /root/secret' 2>&1; echo "[exit=$?]"
h "Q built-in command denylist (implicit dangerous_commands) vs kubefence default"
$C HOME=/root -- "${W[@]}" --profile /app/implicit.json -- /bin/rm -f /tmp/nothing 2>&1; echo "[exit=$?]"
$T default HOME=/root -- /bin/rm -f /tmp/nothing 2>&1

h "Z1 recommended argv, every NONO_* attack except LAUNCH_SPEC left in env"
ATT=(HOME=/home/user PATH=/app/bin:/usr/bin:/bin NONO_ALLOW=/root,/etc NONO_ENV_CREDENTIAL=file:///var/run/secrets/kubernetes.io/serviceaccount/token=TOK NONO_LOG_FILE=/etc/nono-log-proof RUST_LOG=debug NONO_PROFILE=/app/evil.json XDG_CONFIG_HOME=/app/cfg TMPDIR=/root NONO_DETACHED_CWD_PROMPT_RESPONSE=allow)
CMD=(/bin/busybox sh -c 'echo "TOK=$TOK"; cat /root/secret; echo w > /etc/w; ls /etc/nono-log-proof; cat /var/run/secrets/kubernetes.io/serviceaccount/token; echo "still sandboxed, pid=$$"')
$C "${ATT[@]}" -- "${REC[@]}" "${CMD[@]}" 2>&1; echo "[exit=$?]"
h "Z2 recommended argv + NONO_TOOL_SANDBOX_LAUNCH_SPEC left in env"
$C "${ATT[@]}" NONO_TOOL_SANDBOX_LAUNCH_SPEC=/app/spec.json -- "${REC[@]}" "${CMD[@]}" 2>&1 | grep -v 'DEBUG\|INFO'; echo "[exit=${PIPESTATUS[0]}]"
h "Z3 recommended argv, NONO_* stripped"
$C HOME=/home/user PATH=/app/bin:/usr/bin:/bin RUST_LOG=debug XDG_CONFIG_HOME=/app/cfg TMPDIR=/root -- "${REC[@]}" "${CMD[@]}" 2>&1; echo "[exit=$?]"

h "M HOME handling"
$C -- "${W[@]}" --profile /nono/profiles/default.json -- /bin/busybox true 2>&1; echo "[exit=$?]"
for hm in relative /tmp /app / /nonexistent; do echo "HOME=$hm:"; $T default HOME=$hm -- /bin/busybox true 2>&1; done
echo "XDG_STATE_HOME=/tmp/s:"; $T default HOME=/root XDG_STATE_HOME=/tmp/s -- /bin/busybox true 2>&1
h "O exit codes"
$T default HOME=/root -- /bin/busybox sh -c 'exit 7'
$T default HOME=/root -- /nonexistent/prog 2>&1
$T strict HOME=/root -- /app/bin/op 2>&1
$C HOME=/root -- "${W[@]}" --bogus -- /bin/true >/dev/null 2>&1; echo "[unknown flag exit=$?]"
$C HOME=/root -- "${W[@]}" --config /x --profile /nono/profiles/default.json -- /bin/true >/dev/null 2>&1; echo "[flag conflict exit=$?]"
$C HOME=/root -- "${W[@]}" --profile /nono/profiles/nope.json -- /bin/true 2>&1; echo "[exit=$?]"
$C HOME=/root "BAD=$(printf '\xff')" -- "${W[@]}" --profile /nono/profiles/default.json -- /bin/true 2>&1 | grep -m1 panicked; echo "[non-UTF-8 env exit=${PIPESTATUS[0]}]"
h "P environment the workload gets"
$T default HOME=/root LD_LIBRARY_PATH=/opt/lib PYTHONPATH=/app NODE_OPTIONS=--max-old-space-size=100 JAVA_TOOL_OPTIONS=-Xmx1g GEM_HOME=/usr/local/bundle GOFLAGS=-mod=vendor BASH_ENV=/x KEEP_ME=1 -- /bin/busybox sh -c 'env | sort'
$T default HOME=/root -- /bin/busybox grep -E 'NoNewPrivs|Seccomp:' /proc/self/status
h "R cwd and argv[0]"
for d in /app /home/user; do $C HOME=/root -- /bin/busybox sh -c "cd $d && exec /nono/nono wrap --silent --profile /nono/profiles/default.json -- /bin/busybox sh -c 'echo cwd=\$(pwd)'" 2>&1; done
$C HOME=/root -- /bin/busybox sh -c 'mkdir -p /app/bb && ln -s /bin/busybox /app/bb/sh && PATH=/app/bb:$PATH exec /nono/nono wrap --silent --profile /nono/profiles/default.json -- sh -c "echo argv0=\$0 pid=\$\$"' 2>&1
h "S files nono writes before exec (HOME=/)"
$C HOME=/ -- /bin/busybox sh -c '/nono/nono wrap --silent --profile /nono/profiles/default.json -- /bin/busybox true; find /.config /tmp' 2>&1
rm -f app/spec.json
rmdir /tmp/kfroot 2>/dev/null || true
