#!/usr/bin/env bash
# Upgrade the managed memberlog plugin NAME on this host to REMOTE while its containers keep
# logging; roll back with the same command and the old version.
#
#   plugin/upgrade.sh NAME REMOTE
#
#   NAME      the installed plugin, as `docker plugin ls` shows it (it keeps its name)
#   REMOTE    the version to run, REGISTRY/NAME:TAG as pushed by `plugin/build.sh --push`
#   env DOCKER            the docker CLI (default /usr/bin/docker, else docker)
#   env PYTHON            the host's python3 (>= 3.9) that runs plugin/handover.py,
#                         plugin_set.py and journal_format.py
#   env HANDOVER_TIMEOUT  seconds to wait for the new driver's handover socket (default 60)
#
# e.g.  plugin/upgrade.sh memberlog registry.example.com/memberlog:0.2.0   # upgrade
#       plugin/upgrade.sh memberlog registry.example.com/memberlog:0.1.0   # roll back
#
# Run as root on the daemon's host (DOCKER_HOST, if set, must be a unix socket): the FIFOs are
# taken from dockerd's /proc/<pid>/fd. Steps:
#  1. note the plugin's id, settings and state dir; pull REMOTE first, as a disabled plugin
#     under a temporary alias (removed at the end): a wrong REMOTE fails before anything stops,
#     and the plugin is down for the swap only, not for the download. Then a downgrade that
#     would strand journals is refused: if the state dir holds journals in a newer format than
#     REMOTE's driver reads (its MEMBERLOG_JOURNAL_VERSION; v1 without it), nothing changes
#     (exit 1): let the containers logging to them stop and their lines ship, or pick a REMOTE
#     that reads that format;
#  2. docker plugin disable -f NAME: the driver stops; containers' lines wait in their FIFOs
#     (blocking mode: a container's writes wait once its pipe is full) or in Docker's ring
#     buffer (mode=non-blocking: max-buffer-size, default 1 MB, then new lines are dropped);
#  3. plugin/handover.py opens a read end of each FIFO dockerd holds for the plugin and keeps
#     it, so nothing buffered is lost even if a container stops meanwhile;
#  4. docker plugin upgrade --skip-remote-check NAME REMOTE (a new rootfs: the FIFOs' paths are
#     deleted), every setting set again (see below; through plugin/plugin_set.py, so that no
#     value, e.g. AWS_SECRET_ACCESS_KEY, is ever on a command line), then enable;
#  5. the FIFOs go to the new driver over <state dir>/handover.sock (SCM_RIGHTS); it matches
#     them to its state records by name and resumes reading.
# Exit status: 0 done; 1 failed (says what to run); 3 upgraded, but some FIFOs found no reader.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }
case ${1:-} in -h | --help) usage; exit 0 ;; esac
if [ $# -ne 2 ] || [[ $1 == -* ]] || [[ $2 == -* ]]; then usage >&2; exit 2; fi
name=$1 remote=$2

if [ -n "${DOCKER:-}" ]; then :
elif [ -x /usr/bin/docker ]; then DOCKER=/usr/bin/docker
else DOCKER=docker
fi
PYTHON=${PYTHON:-python3}
timeout=${HANDOVER_TIMEOUT:-60}

t_start=$SECONDS
step() { printf '==> [%3ds] %s\n' $((SECONDS - t_start)) "$*"; }
die() { echo "upgrade.sh: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run me as root: dockerd's FIFOs are opened through /proc/<pid>/fd"
[[ ${DOCKER_HOST:-unix://} == unix://* ]] || die "DOCKER_HOST must be a daemon on this host"
"$PYTHON" -c 'import socket; socket.send_fds' 2>/dev/null \
  || die "$PYTHON has no socket.send_fds (Python >= 3.9 needed; set PYTHON=...)"

info=$("$DOCKER" plugin inspect -f '{{.Id}} {{.Enabled}} {{.PluginReference}}' "$name") \
  || die "no plugin $name on this daemon"
read -r id was_enabled old_ref <<<"$info"
state=$("$DOCKER" plugin inspect -f \
  '{{range .Settings.Mounts}}{{if eq .Name "state"}}{{.Source}}{{end}}{{end}}' "$name")
[ -n "$state" ] || die "$name has no 'state' mount: is it memberlog?"
plugin_dir=$("$DOCKER" info -f '{{.DockerRootDir}}')/plugins/$id
[ -d "$plugin_dir" ] || die "no $plugin_dir: is the daemon on this host?"

# Settings as `docker plugin set` takes them. Values may be secrets: only names are printed.
settings_of() {
  "$DOCKER" plugin inspect -f '{{range .Settings.Env}}{{println .}}{{end}}{{range .Settings.Mounts}}{{if .Name}}{{.Name}}.source={{.Source}}{{println}}{{end}}{{end}}' "$1"
}
mapfile -t before < <(settings_of "$name")

work=$(mktemp -d "${TMPDIR:-/tmp}/memberlog-upgrade.XXXXXX")
prefetch=memberlog-upgrade-prefetch-$$
held=0
# shellcheck disable=SC2317  # run by the EXIT trap
cleanup() {
  "$DOCKER" plugin rm -f "$prefetch" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
handover_hint() {
  if [ "$held" -gt 0 ]; then
    echo "upgrade.sh: $held FIFOs still wait for a reader; once $name is enabled, run:" >&2
    echo "  $PYTHON $here/handover.py --plugin-dir $plugin_dir --socket $state/handover.sock" >&2
  fi
}

step "$name ($was_enabled, ${old_ref:-built here}) -> $remote; pulling it first"
if ! "$DOCKER" plugin install --disable --grant-all-permissions --alias "$prefetch" "$remote" \
  >"$work/pull.log" 2>&1; then
  cat "$work/pull.log" >&2
  die "cannot pull $remote: $name is untouched"
fi
"$DOCKER" plugin inspect -f '{{.Config.Interface.Socket}}' "$prefetch" | grep -qx memberlog.sock \
  || die "$remote is not a memberlog plugin: $name is untouched"

# A driver leaves journals newer than it reads unread: refuse the downgrade that strands them.
reads=$("$DOCKER" plugin inspect -f \
  '{{range .Config.Env}}{{if eq .Name "MEMBERLOG_JOURNAL_VERSION"}}{{.Value}}{{end}}{{end}}' \
  "$prefetch")
reads=${reads:-1}  # plugins from before the entry read v1 only
[[ $reads =~ ^[0-9]+$ ]] || die "$remote advertises journal format '$reads': $name is untouched"
found=$("$PYTHON" "$here/journal_format.py" "$state") \
  || die "cannot read the journals' format in $state: $name is untouched"
read -r newest count live <<<"$found"
if [ "$newest" -gt "$reads" ]; then
  die "$count journal(s) in $state/journal ($live of running containers) in format" \
    "v$newest, and $remote reads journals up to v$reads: its driver would leave them unread," \
    "stranding their containers and unshipped lines. Pick a REMOTE that reads v$newest, or" \
    "let those containers stop and their lines ship, then remove those journals (what stays" \
    "is kept for docker logs only). $name is untouched"
fi

if [ "$was_enabled" = true ]; then
  step "docker plugin disable -f $name"
  "$DOCKER" plugin disable -f "$name" >/dev/null
fi

# The helper holds the FIFOs from now until the new driver takes them ("go" on its stdin).
coproc HANDOVER {
  exec "$PYTHON" "$here/handover.py" --plugin-dir "$plugin_dir" \
    --socket "$state/handover.sock" --timeout "$timeout" --wait-for-go 2>&1
}
ho_pid=$HANDOVER_PID
exec {ho_out}<&"${HANDOVER[0]}" {ho_in}>&"${HANDOVER[1]}"
IFS= read -r line <&"$ho_out" || die "plugin/handover.py did not start"
echo "    $line"
held=$(sed -n 's/^handover: holding \([0-9]*\) FIFOs.*/\1/p' <<<"$line")
held=${held:-0}

status=0
step "docker plugin upgrade $name $remote"
if ! "$DOCKER" plugin upgrade --grant-all-permissions --skip-remote-check "$name" "$remote" \
  >"$work/upgrade.log" 2>&1; then
  cat "$work/upgrade.log" >&2
  echo "upgrade.sh: the upgrade failed; $name stays at ${old_ref:-its old version}" >&2
  status=1
fi

# Set every setting again. Docker 20.10's `plugin inspect` shows them kept after an upgrade, but
# the new version starts with its config's mount sources (seen: state.source fell back to
# /var/lib/memberlog, with another state dir, so the new driver neither found the journals nor
# served the handover socket where this script looks); `plugin set` puts them in force again.
settable=" $("$DOCKER" plugin inspect -f '{{range .Config.Env}}{{if .Settable}}{{.Name}} {{end}}{{end}}{{range .Config.Mounts}}{{if .Settable}}{{.Name}}.source {{end}}{{end}}' "$name") "
again=() again_names=()
for kv in ${before[@]+"${before[@]}"}; do
  [ -n "$kv" ] || continue
  if [[ $settable == *" ${kv%%=*} "* ]]; then
    again+=("$kv") again_names+=("${kv%%=*}")
  else
    echo "upgrade.sh: $remote has no setting ${kv%%=*}: dropped" >&2
  fi
done
if [ ${#again[@]} -gt 0 ]; then
  step "setting again: ${again_names[*]}"
  # Through the API on a pipe: `docker plugin set NAME K=V...` shows the values to every local
  # user (/proc/PID/cmdline), AWS_SECRET_ACCESS_KEY among them.
  if ! printf '%s\n' "${again[@]}" | "$PYTHON" "$here/plugin_set.py" "$name"; then
    exec {ho_in}>&-  # no "go": the helper lets go of the FIFOs, dockerd keeps them
    wait "$ho_pid" || true
    handover_hint
    die "$name's settings were not set again, so it stays disabled: compare" \
      "docker plugin inspect $name with what it had, set what differs, then enable it"
  fi
fi

if [ "$was_enabled" = true ] || [ "$held" -gt 0 ]; then
  step "docker plugin enable $name"
  if ! "$DOCKER" plugin enable "$name" >"$work/enable.log" 2>&1; then
    cat "$work/enable.log" >&2
    exec {ho_in}>&-  # no "go": the helper lets go of the FIFOs, dockerd keeps them
    wait "$ho_pid" || true
    handover_hint
    die "$name did not start; fix it, then: docker plugin enable $name"
  fi
  enabled=$("$DOCKER" plugin inspect -f '{{.Enabled}}' "$name")
  [ "$enabled" = true ] || die "$name is not enabled after docker plugin enable"
fi

if [ "$held" -gt 0 ]; then
  step "handing $held FIFOs to the new driver ($state/handover.sock, up to ${timeout}s)"
fi
echo go >&"$ho_in"
exec {ho_in}>&-
while IFS= read -r line <&"$ho_out"; do echo "    $line"; done
ho_status=0
wait "$ho_pid" || ho_status=$?
if [ "$ho_status" != 0 ]; then
  [ "$ho_status" = 3 ] || handover_hint
  [ "$status" != 0 ] || status=3
fi

mapfile -t final < <(settings_of "$name")
if [ "${final[*]+"${final[*]}"}" != "${before[*]+"${before[*]}"}" ]; then
  echo "upgrade.sh: $name's settings differ from before the upgrade (see docker plugin inspect)" >&2
  [ "$status" != 0 ] || status=1
fi
info=$("$DOCKER" plugin inspect -f '{{.Enabled}} {{.PluginReference}}' "$name")
outcome="finished with status $status"
[ "$status" != 0 ] || outcome="done"
state_word=disabled
[ "${info%% *}" != true ] || state_word=enabled
step "$outcome: $name runs ${info#* } ($state_word), $held FIFOs held and offered to the driver"
exit "$status"
