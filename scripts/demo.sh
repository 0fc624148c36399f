#!/usr/bin/env bash
# The demo, on a fresh Debian machine as root: a local CloudWatch Logs endpoint and a local
# registry; memberlog built as a managed Docker plugin and pushed to the registry by the
# machine's dockerd ("host A"), installed from the registry by a second dockerd standing in for
# "host B"; members of service mypg in cluster t1 - one of them moving from A to B - and finally
# `memberlog logs` for that member.
# Re-runnable; stops and removes what it started (but the registry) unless KEEP=1.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

PORT=${PORT:-4566}
REGISTRY=127.0.0.1:5000
export AWS_ENDPOINT_URL="http://127.0.0.1:$PORT" AWS_REGION=us-east-1
export AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo
DOCKER=/usr/bin/docker
py=.venv/bin/python
version=$("$py" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
PLUGIN=$REGISTRY/memberlog:$version  # the name build.sh --push gives it (the tag: the version)
work=$(mktemp -d /tmp/memberlog-demo.XXXXXX)
second() { "$py" -c "import sys; sys.path.insert(0, 'tests'); import dockerenv as d; $1"; }
endpoint_pid=
cleanup() {
  if [ "${KEEP:-0}" = 1 ]; then
    echo "KEEP=1: endpoint $AWS_ENDPOINT_URL, plugin $PLUGIN and host B left running ($work)"
    echo "        host B: DOCKER_HOST=$host_b"
    return
  fi
  echo "== cleaning up"
  for host in unix:///var/run/docker.sock $host_b; do
    DOCKER_HOST=$host $DOCKER plugin disable -f "$PLUGIN" >/dev/null 2>&1 || true
    DOCKER_HOST=$host $DOCKER plugin rm -f "$PLUGIN" >/dev/null 2>&1 || true
  done
  [ -z "$host_b" ] || second "d.start_second_dockerd('demo-b').stop()" || true
  [ -z "$endpoint_pid" ] || kill "$endpoint_pid" 2>/dev/null || true
  rm -rf "$work"
}
host_b=
trap cleanup EXIT

echo "== local CloudWatch Logs endpoint (moto, strict about PutLogEvents limits) on $AWS_ENDPOINT_URL"
"$py" tests/cwlogs_server.py --port "$PORT" >"$work/cloudwatch.log" 2>&1 &
endpoint_pid=$!

echo "== local registry on $REGISTRY (Debian's docker-registry)"
"$py" tests/dockerenv.py registry >/dev/null

echo "== host B: a second dockerd"
host_b=$(second "print(d.start_second_dockerd('demo-b').host)")
image=$("$py" tests/dockerenv.py busybox | tail -1 | cut -d' ' -f1)
second "d.copy_image('$image', '$host_b')"

settings=("AWS_ENDPOINT_URL=$AWS_ENDPOINT_URL" "AWS_REGION=$AWS_REGION"
  "AWS_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID" "AWS_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY")
echo "== host A: plugin/build.sh --push $REGISTRY/memberlog (builds, enables, pushes $PLUGIN)"
if ! DOCKER=$DOCKER bash plugin/build.sh --push --reset-settings "$REGISTRY/memberlog" \
  "${settings[@]}" state.source=/var/lib/memberlog >"$work/build.log" 2>&1; then
  tail -40 "$work/build.log"  # build.sh's whole output if it fails, its step lines if not
  exit 1
fi
grep '^==>' "$work/build.log"
echo "== host B: docker plugin install --grant-all-permissions $PLUGIN AWS_...=... state.source=/var/lib/memberlog-b"
install -d -m 0700 /var/lib/memberlog-b  # the state mount's source must exist
DOCKER_HOST=$host_b $DOCKER plugin install --grant-all-permissions "$PLUGIN" "${settings[@]}" \
  state.source=/var/lib/memberlog-b | tail -1

uuid=$("$py" -c 'import uuid; print(uuid.uuid4())')
opts=(--log-driver "$PLUGIN" --log-opt cluster=t1 --log-opt service=mypg --log-opt "service-uuid=$uuid")
run() {  # run HOST NAME SCRIPT [docker run args...]: a container to its end
  local host=$1 script=$3; shift 3
  DOCKER_HOST=$host $DOCKER run --rm "${opts[@]}" "$@" "$image" sh -c "$script" >/dev/null
}
A=unix:///var/run/docker.sock
echo "== mypg-0 on host A (member from its environment)"
run $A mypg-0 'echo "mypg-0: primary starting on host A"; seq 1 3' -e SERVICE_MEMBER=mypg-0
echo "== mypg-1 on host A, then rescheduled to host B (member from its startup line)"
run $A mypg-1 'echo SERVICE_MEMBER=mypg-1; echo "mypg-1: standby on host A"; echo "mypg-1: host A going away"'
run "$host_b" mypg-1 'echo SERVICE_MEMBER=mypg-1; echo "mypg-1: standby now on host B"; echo "mypg-1: caught up"'

# StopLogging may answer once the lines are safe on the driver's side, before they are in
# CloudWatch: wait until each member's stream has them all.
wait_lines() {  # wait_lines MEMBER COUNT
  local deadline=$((SECONDS + 60)) got
  while :; do
    got=$(.venv/bin/memberlog logs --cluster t1 --service mypg --service-uuid "$uuid" \
      --member "$1" 2>/dev/null | wc -l || true)
    [ "$got" -lt "$2" ] || return 0
    if [ $SECONDS -ge $deadline ]; then
      echo "demo: only $got of $1's $2 lines reached CloudWatch within 60 s" >&2
      exit 1
    fi
    sleep 0.5
  done
}
wait_lines mypg-0 4
wait_lines mypg-1 6

echo "== memberlog services"
.venv/bin/memberlog services --cluster t1
echo "== memberlog members --cluster t1 --service mypg"
.venv/bin/memberlog members --cluster t1 --service mypg --service-uuid "$uuid"
echo "== memberlog logs --cluster t1 --service mypg --member mypg-1   (one stream, two hosts)"
.venv/bin/memberlog logs --cluster t1 --service mypg --service-uuid "$uuid" --member mypg-1
