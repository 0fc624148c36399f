#!/usr/bin/env bash
# The demo, on a fresh Debian machine as root: the project's PostgreSQL image runs a primary
# mypg-0 and a standby mypg-1 (service mypg of cluster t1) on the machine's dockerd ("host A"),
# both logging through memberlog as a managed plugin (pushed to a local registry by host A,
# installed from it by a second dockerd standing in for "host B"); rows written on the primary
# show up on the standby; mypg-1 is "rescheduled" to host B (new container, empty data dir: a
# new base backup) and streams again; then `memberlog logs --member mypg-1`: one stream with the
# standby's whole log from both hosts. All local: a moto CloudWatch Logs endpoint, no AWS.
#
#   bash scripts/demo.sh            KEEP=1 bash scripts/demo.sh   (leave it all running)
#
# Environment (defaults in brackets): PORT the endpoint's port [4566], or ENDPOINT the URL of
# one already running (then not started nor stopped here); PG_PORT the primary's port, the
# standby's is PG_PORT+1 [15432] (host network: the machine's ports); KEEP=1; and, so that a
# test can run the demo beside other work: NAME_PREFIX for container names [""], HOST_B the
# second dockerd's name [demo-b], PLUGIN_REPO [memberlog], PG_IMAGE_REPO [memberlog-postgres],
# BASE_IMAGE_TAG [memberlog-base-bookworm:1], DEMO_WORK a directory to work in, kept [a temp].
# Images are built once per content (the PostgreSQL image is tagged with its inputs' digest).
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$SECONDS
say() { printf '%s\n' "$*"; }
step() { printf '== [%3ds] %s\n' $((SECONDS - t0)) "$*"; }
die() { printf 'demo: %s\n' "$*" >&2; exit 1; }

if [ -n "${DEMO_WORK:-}" ]; then
  work=$DEMO_WORK
  mkdir -p "$work" && chmod 0700 "$work"
else
  work=$(mktemp -d /tmp/memberlog-demo.XXXXXX)
fi
PLUGIN_REPO=${PLUGIN_REPO:-memberlog} BASE_IMAGE_TAG=${BASE_IMAGE_TAG:-memberlog-base-bookworm:1}
base() {  # base PYTHON: the Debian base image of both images (debootstrap, once)
  "$1" -c "import sys; sys.path.insert(0, 'tests'); from support import dockerenv as d
d.debian_python_image('$BASE_IMAGE_TAG')" >"$work/base.log" 2>&1
}
base_pid=''
if command -v debootstrap >/dev/null && [ -x /usr/bin/docker ] && command -v python3 >/dev/null; then
  # Where the Debian packages are in already, the base (a minute or more the first time) needs
  # nothing of setup.sh's: debootstrap it while setup.sh makes the virtualenv.
  base python3 &
  base_pid=$!
fi
bash scripts/setup.sh >"$work/setup.log" 2>&1 || { tail -30 "$work/setup.log"; exit 1; }

PORT=${PORT:-4566}
PG_PORT=${PG_PORT:-15432}
STANDBY_PORT=$((PG_PORT + 1))
REGISTRY=127.0.0.1:5000
DOCKER=/usr/bin/docker
A=unix:///var/run/docker.sock
py=.venv/bin/python
memberlog=.venv/bin/memberlog
prefix=${NAME_PREFIX:-}
p0=${prefix}mypg-0 p1=${prefix}mypg-1  # container names; the members are mypg-0 and mypg-1
HOST_B=${HOST_B:-demo-b}
export AWS_ENDPOINT_URL=${ENDPOINT:-http://127.0.0.1:$PORT} AWS_REGION=us-east-1
export AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo
version=$("$py" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
PLUGIN=  # $REGISTRY/$PLUGIN_REPO:<version>-<digest of its inputs>, once known
state_a=/var/lib/$PLUGIN_REPO state_b=/var/lib/$PLUGIN_REPO-b
envpy() { "$py" -c "import sys; sys.path.insert(0, 'tests'); from support import dockerenv as d; $1"; }
dk() { local host=$1; shift; DOCKER_HOST=$host "$DOCKER" "$@"; }  # dk HOST docker-args...
listening() { (: <"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

endpoint_pid='' host_b=''
cleanup() {
  local rc=$?
  if [ "${KEEP:-0}" = 1 ]; then
    say "KEEP=1: everything is left running. To look around:"
    say "  export AWS_ENDPOINT_URL=$AWS_ENDPOINT_URL AWS_REGION=$AWS_REGION AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo"
    say "  $memberlog logs --cluster t1 --service mypg --service-uuid ${uuid:-?} --member mypg-1 -f"
    say "  docker exec -u postgres $p0 psql -p $PG_PORT     # host A; host B: DOCKER_HOST=$host_b docker ps -a"
    say "  work dir (data, settings, passwords): $work"
    say "Then clean up: docker rm -f $p0 $p1; docker plugin rm -f $PLUGIN; kill the endpoint" \
      "${endpoint_pid:+(pid $endpoint_pid)}; $py -c \"import sys; sys.path.insert(0, 'tests');" \
      "from support import dockerenv; dockerenv.second_daemon('$HOST_B').stop()\"; rm -rf $work"
    return
  fi
  step "cleaning up"
  # Background steps still running (their pids are cleared once waited for).
  for pid in ${base_pid:-} ${image_pid:-} ${install_pid:-} ${copy_pid:-}; do kill "$pid" 2>/dev/null || true; done
  # The standby first: with the primary gone first, it would log its lost connection.
  [ -z "$host_b" ] || dk "$host_b" rm -f "$p1" >/dev/null 2>&1 || true
  dk $A rm -f "$p1" "$p0" >/dev/null 2>&1 || true
  # Host B goes with all it has (its data root is removed); host A keeps only the plugin's state.
  local stop_b=''
  if [ -n "$host_b" ]; then
    envpy "d.second_daemon('$HOST_B').stop()" &
    stop_b=$!
  fi
  if [ -n "$PLUGIN" ]; then
    dk $A plugin disable -f "$PLUGIN" >/dev/null 2>&1 || true
    dk $A plugin rm -f "$PLUGIN" >/dev/null 2>&1 || true
  fi
  [ -z "$stop_b" ] || wait "$stop_b" || true
  [ -z "$endpoint_pid" ] || kill "$endpoint_pid" 2>/dev/null || true
  [ -n "${DEMO_WORK:-}" ] || rm -rf "$work"
  return "$rc"
}
trap cleanup EXIT

for name in "$p0" "$p1"; do
  if dk $A container inspect "$name" >/dev/null 2>&1; then
    die "a container $name exists on host A (left by KEEP=1?): docker rm -f $name"
  fi
done
for port in "$PG_PORT" "$STANDBY_PORT"; do
  ! listening "$port" || die "port $port is taken: run with PG_PORT=<another port>"
done

# --- the setting: endpoint, registry, host B, images, plugin -------------------------------
if [ -z "${ENDPOINT:-}" ]; then
  ! listening "$PORT" || die "port $PORT is taken: run with PORT=<another port>"
  "$py" tests/support/cwlogs_server.py --port "$PORT" >"$work/cloudwatch.log" 2>&1 &
  endpoint_pid=$!
fi
step "CloudWatch Logs endpoint $AWS_ENDPOINT_URL (moto); registry $REGISTRY; host A: this" \
  "machine's dockerd; host B: a second dockerd ($HOST_B)"
"$py" tests/support/dockerenv.py registry >/dev/null
host_b=$(envpy "print(d.start_second_dockerd('$HOST_B').host)")

t=$SECONDS
if [ -n "$base_pid" ]; then wait "$base_pid"; else base "$py"; fi || { cat "$work/base.log"; exit 1; }
base_pid=
step "host A: Debian base image $BASE_IMAGE_TAG ($((SECONDS - t)) s: debootstrapped once)"
# The PostgreSQL image builds in the background while host A gets the plugin.
(
  t=$SECONDS
  envpy "print(d.postgres_image('${PG_IMAGE_REPO:-memberlog-postgres}', '$BASE_IMAGE_TAG'))"
  echo $((SECONDS - t))
) >"$work/image" 2>"$work/image.log" &
image_pid=$!

# The plugin is tagged with its version and the digest of its inputs: when the registry has
# that tag, host A installs it from there like host B, instead of building it again.
tag=$version-$(envpy "print(d.plugin_digest('$BASE_IMAGE_TAG'))")
PLUGIN=$REGISTRY/$PLUGIN_REPO:$tag
# The plugin's settings go in a file only root reads, never on a command line (the secret key
# would be in /proc/PID/cmdline): build.sh --settings-file, and plugin_set.py for an install.
settings=$work/plugin-settings
(umask 077 && printf '%s\n' "AWS_ENDPOINT_URL=$AWS_ENDPOINT_URL" "AWS_REGION=$AWS_REGION" \
  "AWS_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID" "AWS_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY" >"$settings")
install_plugin() {  # install_plugin HOST STATE_DIR: from the registry, with this demo's settings
  install -d -m 0700 "$2"  # the state mount's source must exist
  dk "$1" plugin rm -f "$PLUGIN" >/dev/null 2>&1 || true  # a KEEP=1 run's
  dk "$1" plugin install --disable --grant-all-permissions "$PLUGIN" "state.source=$2"
  DOCKER_HOST=$1 "$py" plugin/plugin_set.py "$PLUGIN" <"$settings"
  dk "$1" plugin enable "$PLUGIN"
}
t=$SECONDS
if envpy "sys.exit(not d.registry_has('$PLUGIN_REPO', '$tag'))"; then
  install_plugin $A "$state_a" >"$work/install-a.log" 2>&1 || { cat "$work/install-a.log"; exit 1; }
  step "host A: docker plugin install $PLUGIN (in the registry already; $((SECONDS - t)) s)"
else
  if ! DOCKER=$DOCKER bash plugin/build.sh --push --reset-settings --base "$BASE_IMAGE_TAG" \
    --settings-file "$settings" "$PLUGIN" "state.source=$state_a" >"$work/build.log" 2>&1; then
    tail -40 "$work/build.log"
    exit 1
  fi
  step "host A: plugin/build.sh --push $PLUGIN: built, enabled, pushed ($((SECONDS - t)) s)"
  # build.sh keeps its rootfs image as the next build's cache: one is enough.
  for old in $(dk $A images "$PLUGIN_REPO-rootfs" --format '{{.Tag}}'); do
    [[ $old != "$version"-* || $old == "$tag" ]] || dk $A rmi "$PLUGIN_REPO-rootfs:$old" >/dev/null || true
  done
fi
# Host B installs it in the background, until mypg-1 moves there.
install_plugin "$host_b" "$state_b" >"$work/install-b.log" 2>&1 &
install_pid=$!

wait "$image_pid" || { cat "$work/image.log"; exit 1; }
image_pid=
{ read -r image && read -r took; } <"$work/image"
step "host A: PostgreSQL image $image (containers/postgres, $took s: built only when its files" \
  "change)"
# To host B by docker save | docker load, in the background too: a registry would keep every
# build's 450 MB of layers with nothing to collect them.
envpy "d.copy_image('$image', '$host_b')" >"$work/copy.log" 2>&1 &
copy_pid=$!

# --- members: settings in each data volume, passwords in files ------------------------------
# The passwords are made here (unless DEMO_WORK brings them, as the demo's test does), straight
# into 0600 files: never on a command line or on screen.
secrets=$work/secrets
(umask 077 && mkdir -p "$secrets" && "$py" -c 'import os, secrets, sys
for path in sys.argv[1:]:
    if not os.path.exists(path):
        open(path, "w").write(secrets.token_urlsafe(24) + "\n")' \
  "$secrets/postgres_password" "$secrets/replication_password")
volume() {  # volume DIR MEMBER ROLE PORT: a data volume with the member's settings files
  mkdir -p "$1/conf"
  # As a volume plugin would write them; the member comes from member.conf, so the container's
  # startup line names it (no SERVICE_MEMBER in its environment, no member log-opt).
  printf '%s\n' "PRIMARY_HOST=127.0.0.1" "PRIMARY_PORT=$PG_PORT" "REPLICATION_USER=replicator" \
    "LISTEN_ADDRESSES=127.0.0.1" "POSTGRES_PASSWORD_FILE=/run/secrets/postgres_password" \
    "REPLICATION_PASSWORD_FILE=/run/secrets/replication_password" >"$1/conf/service.conf"
  printf '%s\n' "SERVICE_MEMBER=$2" "CONTAINER_ROLE=$3" "LISTEN_PORT=$4" >"$1/conf/member.conf"
}
uuid=$("$py" -c 'import uuid; print(uuid.uuid4())')
opts=(--network host --log-driver "$PLUGIN" --log-opt cluster=t1 --log-opt service=mypg
  --log-opt "service-uuid=$uuid" -v "$secrets:/run/secrets:ro")
start() {  # start HOST NAME DATADIR: the container, detached
  dk "$1" run -d --name "$2" "${opts[@]}" -v "$3:/data" "$image" >/dev/null
}
psql_in() {  # psql_in HOST NAME PORT SQL: as postgres on the container's socket (peer: no password)
  dk "$1" exec -u postgres "$2" psql -X -At -q -v ON_ERROR_STOP=1 -p "$3" -d postgres -c "$4"
}
running() { [ "$(dk "$1" inspect -f '{{.State.Running}}' "$2")" = true ]; }
failed() {  # failed HOST NAME WHAT: the container's last lines, then stop
  dk "$1" logs "$2" 2>&1 | tail -30
  die "$2: $3 (its log above)"
}
wait_ready() {  # wait_ready HOST NAME SECONDS: until the server says so in its log
  # (not by connecting: each try while it starts would be a FATAL line in the log)
  local deadline=$((SECONDS + $3))
  until dk "$1" logs "$2" 2>&1 | grep -q 'database system is ready to accept'; do
    { running "$1" "$2" && [ $SECONDS -lt $deadline ]; } || failed "$1" "$2" "not ready in $3 s"
    sleep 0.3
  done
}
wait_for() {  # wait_for HOST NAME PORT SQL EXPECTED SECONDS: poll until SQL answers EXPECTED
  local deadline=$((SECONDS + $6)) got=
  while :; do
    got=$(psql_in "$1" "$2" "$3" "$4" 2>/dev/null) || true
    [ "$got" != "$5" ] || return 0
    { running "$1" "$2" && [ $SECONDS -lt $deadline ]; } ||
      failed "$1" "$2" "no '$5' from '$4' within $6 s"
    sleep 0.3
  done
}
show_rows() {  # show_rows HOST NAME PORT LABEL
  psql_in "$1" "$2" "$3" "SELECT id, body FROM notes ORDER BY id" | sed "s/^/   $4 reads: /"
}
insert() {
  psql_in $A "$p0" "$PG_PORT" "INSERT INTO notes (body) VALUES ('$1')"
  say "   mypg-0 (host A) writes: $1"
}
streaming="SELECT status FROM pg_stat_wal_receiver"

step "host A: mypg-0 (primary, port $PG_PORT) and mypg-1 (standby, port $STANDBY_PORT):" \
  "docker run --network host --log-driver $PLUGIN --log-opt cluster=t1 --log-opt service=mypg" \
  "--log-opt service-uuid=$uuid -v <data>:/data -v <secrets>:/run/secrets:ro $image"
say "   settings in <data>/conf: SERVICE_MEMBER, CONTAINER_ROLE, LISTEN_PORT, PRIMARY_HOST, ...," \
  "POSTGRES_PASSWORD_FILE, REPLICATION_PASSWORD_FILE (random passwords, 0600 files)"
volume "$work/host-a/mypg-0" mypg-0 primary "$PG_PORT"
volume "$work/host-a/mypg-1" mypg-1 standby "$STANDBY_PORT"
t=$SECONDS
start $A "$p0" "$work/host-a/mypg-0"
wait_ready $A "$p0" 120
start $A "$p1" "$work/host-a/mypg-1"
wait_ready $A "$p1" 120
wait_for $A "$p1" "$STANDBY_PORT" "$streaming" streaming 120
step "mypg-0 initialised and serving; mypg-1 copied it (pg_basebackup) and streams its WAL" \
  "($((SECONDS - t)) s)"

psql_in $A "$p0" "$PG_PORT" "CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL)"
insert "written while mypg-1 runs on host A"
wait_for $A "$p1" "$STANDBY_PORT" "SELECT count(*) FROM notes" 1 30
show_rows $A "$p1" "$STANDBY_PORT" "mypg-1 (host A)"

step "rescheduling mypg-1: docker stop on host A, docker run on host B (a new host: empty data" \
  "dir, so a new base backup)"
t=$SECONDS
dk $A stop -t 30 "$p1" >/dev/null
insert "written while mypg-1 moves"
wait "$install_pid" || { cat "$work/install-b.log"; exit 1; }
install_pid=
wait "$copy_pid" || { cat "$work/copy.log"; exit 1; }
copy_pid=
say "   host B has the plugin (docker plugin install from the registry) and the image (copied)"
volume "$work/host-b/mypg-1" mypg-1 standby "$STANDBY_PORT"
start "$host_b" "$p1" "$work/host-b/mypg-1"
wait_ready "$host_b" "$p1" 120
wait_for "$host_b" "$p1" "$STANDBY_PORT" "$streaming" streaming 120
say "   mypg-1 on host B copied mypg-0 and streams ($((SECONDS - t)) s)"
insert "written after the move"
wait_for "$host_b" "$p1" "$STANDBY_PORT" "SELECT count(*) FROM notes" 3 30
show_rows "$host_b" "$p1" "$STANDBY_PORT" "mypg-1 (host B)"

# --- the log -------------------------------------------------------------------------------
# The stream should be exactly host A's container's lines then host B's (what each engine's
# `docker logs` kept); wait until all of them reached CloudWatch.
logs=("$memberlog" logs --cluster t1 --service mypg --service-uuid "$uuid" --member mypg-1)
deadline=$((SECONDS + 60))
while :; do
  dk $A logs "$p1" >"$work/a.log" 2>&1
  dk "$host_b" logs "$p1" >"$work/b.log" 2>&1
  "${logs[@]}" >"$work/stream.log" 2>"$work/stream.err" || true
  ! cmp -s "$work/stream.log" <(cat "$work/a.log" "$work/b.log") || break
  if [ $SECONDS -ge $deadline ]; then
    diff "$work/stream.log" <(cat "$work/a.log" "$work/b.log") | head -20 || true
    cat "$work/stream.err"
    die "mypg-1's stream did not become its two containers' logs within 60 s"
  fi
  sleep 0.5
done
step "memberlog members --cluster t1 --service mypg --service-uuid $uuid"
"$memberlog" members --cluster t1 --service mypg --service-uuid "$uuid"
step "memberlog ${logs[*]:1}"
cat "$work/stream.log"
n_a=$(wc -l <"$work/a.log") n_b=$(wc -l <"$work/b.log")
id_a=$(dk $A inspect -f '{{.Id}}' "$p1") id_b=$(dk "$host_b" inspect -f '{{.Id}}' "$p1")
step "mypg-1's stream: $((n_a + n_b)) lines from 2 containers on 2 hosts: host A's" \
  "${id_a:0:12} ($n_a lines) then host B's ${id_b:0:12} ($n_b lines), the same as their" \
  "docker logs; $(grep -c '^SERVICE_MEMBER=mypg-1$' "$work/stream.log") startup lines," \
  "$(grep -c 'started streaming WAL' "$work/stream.log") 'started streaming WAL'"
