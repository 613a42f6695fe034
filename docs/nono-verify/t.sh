#!/bin/bash
# t.sh PROFILE [KEY=VAL ...] -- cmd...   : run cmd under nono wrap in the fake container
p=$1; shift
envs=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do envs+=("$1"); shift; done
shift
"$(dirname "$0")"/ctr.sh "${envs[@]}" -- /nono/nono wrap --silent --profile /nono/profiles/$p.json -- "$@"
echo "[exit=$?]"
