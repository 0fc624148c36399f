#!/usr/bin/env bash
# The demo: a local CloudWatch Logs endpoint, the memberlog driver as a Docker log plugin,
# containers of service mypg in cluster t1, then `memberlog logs` for one member.
# Re-runnable; stops what it started unless KEEP=1.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

PORT=${PORT:-4566}
export AWS_ENDPOINT_URL="http://127.0.0.1:$PORT" AWS_REGION=us-east-1
export AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo
work=$(mktemp -d /tmp/memberlog-demo.XXXXXX)
pids=()
cleanup() {
  if [ "${KEEP:-0}" = 1 ]; then
    echo "KEEP=1: endpoint ($AWS_ENDPOINT_URL) and driver left running; logs in $work"
    return
  fi
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

.venv/bin/python tests/cwlogs_server.py --port "$PORT" >"$work/cloudwatch.log" 2>&1 &
pids+=($!)
.venv/bin/memberlog-driver --socket /run/docker/plugins/memberlog.sock \
  --state-dir "$work/state" >"$work/driver.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  [ -S /run/docker/plugins/memberlog.sock ] && .venv/bin/python -c \
    "import urllib.request as u; u.urlopen('$AWS_ENDPOINT_URL/_strict/stats')" 2>/dev/null && break
  sleep 0.1
done
image=$(.venv/bin/python tests/dockerenv.py busybox | tail -1 | cut -d' ' -f1)
uuid=$(.venv/bin/python -c 'import uuid; print(uuid.uuid4())')
opts=(--log-driver memberlog --log-opt cluster=t1 --log-opt service=mypg --log-opt "service-uuid=$uuid")

echo "== mypg-0 (member from env), two containers one after the other"
docker run --rm "${opts[@]}" -e SERVICE_MEMBER=mypg-0 "$image" sh -c 'echo "first container of mypg-0"; seq 1 3' >/dev/null
docker run --rm "${opts[@]}" -e SERVICE_MEMBER=mypg-0 "$image" sh -c 'echo "second container of mypg-0"; seq 4 6' >/dev/null
echo "== mypg-1 (member from its startup line)"
docker run --rm "${opts[@]}" "$image" sh -c 'echo "SERVICE_MEMBER=mypg-1"; echo "standby says hello"' >/dev/null

echo "== memberlog services / members"
.venv/bin/memberlog services --cluster t1
.venv/bin/memberlog members --cluster t1 --service mypg --service-uuid "$uuid"
echo "== memberlog logs --cluster t1 --service mypg --member mypg-0"
.venv/bin/memberlog logs --cluster t1 --service mypg --service-uuid "$uuid" --member mypg-0
