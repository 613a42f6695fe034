#!/bin/bash
# Usage: ctr.sh [KEY=VAL ...] -- command args...
# Runs the command as PID 1 of a fresh PID+mount namespace, chrooted into a
# container-like rootfs (/tmp/kfroot) whose /var/run/secrets holds a fake
# projected service-account token. Everything is torn down when it exits.
set -euo pipefail
R=/tmp/kfroot
NONO_BIN=${NONO_BIN:-/var/cache/kubefence/nono-0.81.0/bin/nono}
PROFILES=${PROFILES:-$(cd "$(dirname "$0")/../../profiles" && pwd)}
APPDIR=${APPDIR:-$(cd "$(dirname "$0")" && pwd)/app}
envs=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do envs+=("$1"); shift; done
shift
mkdir -p $R
exec unshare --mount --propagation private --pid --fork /bin/bash -c '
set -euo pipefail
R='"$R"'
mount -t tmpfs -o mode=755 kfroot $R
mkdir -p $R/{usr,etc,proc,dev,sys,tmp,var/tmp,run,root,home/user,app,nono/profiles,srv}
ln -s usr/bin $R/bin; ln -s usr/sbin $R/sbin; ln -s usr/lib $R/lib; ln -s usr/lib64 $R/lib64
ln -s ../run $R/var/run
mount --bind -o ro /usr $R/usr
mount -t tmpfs etc $R/etc; cp -a /etc/. $R/etc/
mount --rbind /dev $R/dev
mount --rbind /sys $R/sys
mount -t tmpfs -o mode=1777 tmp $R/tmp
mount -t tmpfs -o mode=1777 vartmp $R/var/tmp
# fake projected SA token volume, laid out like the kubelet does
sa=$R/run/secrets/kubernetes.io/serviceaccount
mkdir -p $sa/..2026_01_01_00_00_00.000000001
echo -n "FAKE-SA-TOKEN" > $sa/..2026_01_01_00_00_00.000000001/token
echo -n "default" > $sa/..2026_01_01_00_00_00.000000001/namespace
ln -s ..2026_01_01_00_00_00.000000001 $sa/..data
ln -s ..data/token $sa/token; ln -s ..data/namespace $sa/namespace
echo "root-secret" > $R/root/secret; echo "home-secret" > $R/home/user/secret
echo "print(\"app ok\")" > $R/app/main.py
cp '"$NONO_BIN"' $R/nono/nono
cp '"$PROFILES"'/*.json $R/nono/profiles/
cp -a '"$APPDIR"'/. $R/app/ 2>/dev/null || true
mount -t proc proc $R/proc
cd $R
exec chroot $R /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOSTNAME=kf-test "$@"
' ctr "${envs[@]}" "$@"
