#!/usr/bin/env bash
# memberlog-postgres entrypoint.  As root: read the settings, print the startup line
# SERVICE_MEMBER=<member>, check the settings, prepare /data, initialise the cluster on the first
# start (primary: initdb; standby: pg_basebackup from the primary), then exec PostgreSQL in the
# foreground as the postgres user, logging to stderr.  See README.md for settings and layout.
#
#   docker-entrypoint.sh [postgres] [-c name=value ...]   extra arguments go to the server
#   docker-entrypoint.sh COMMAND...                      anything else is exec'd as is
set -Eeuo pipefail
umask 0077

# One stream for everything: Docker copies stdout and stderr separately, so only one stream
# keeps the startup line first and every line in the order it was written.
exec 2>&1

if [[ $# -eq 0 || ${1:0:1} == - ]]; then
  set -- postgres "$@"
fi
if [[ $1 != postgres ]]; then
  exec "$@"
fi
shift
SERVER_ARGS=("$@")

HERE=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")
# shellcheck source=lib/common.sh
. "$HERE/lib/common.sh"
# shellcheck source=lib/settings.sh
. "$HERE/lib/settings.sh"
# shellcheck source=lib/config.sh
. "$HERE/lib/config.sh"
# shellcheck source=lib/primary.sh
. "$HERE/lib/primary.sh"
# shellcheck source=lib/standby.sh
. "$HERE/lib/standby.sh"

# A temporary server still running when the script ends (an error, a signal) is stopped.
on_exit() {
  local rc=$?
  if [[ -f $INIT_DIR/postmaster.pid ]]; then
    as_pg pg_ctl -D "$INIT_DIR" -m immediate -w -s stop </dev/null >/dev/null 2>&1 || true
  fi
  exit "$rc"
}
on_error() {
  log FATAL "unexpected failure (line ${BASH_LINENO[0]} in ${FUNCNAME[1]:-main}); stopping"
}
on_signal() {
  log FATAL "interrupted by a signal during start-up"
  exit 1
}

# prepare_dirs: /data and /data/conf private to the postgres user; $RUN_DIR fresh.
prepare_dirs() {
  [[ $DATA_ROOT == /* ]] || fatal "the data root $DATA_ROOT must be an absolute path"
  [[ -d $DATA_ROOT ]] || fatal "$DATA_ROOT does not exist: mount the data volume there"
  private_dir "$DATA_ROOT"
  private_dir "$CONF_DIR"
  private_dir "$RUN_DIR"
  rm -f "$RUN_DIR"/*.pw
  if ((EUID == 0)) && [[ $SOCKET_DIR != "$RUN_DIR" ]]; then
    mkdir -p "$SOCKET_DIR"
    chown "$PG_USER:$PG_USER" "$SOCKET_DIR"
    chmod 2775 "$SOCKET_DIR"
  fi
  # Leftovers of an interrupted first start.
  rm -rf "$INIT_DIR" "$BACKUP_DIR"
  if [[ -d $DB_DIR ]]; then
    if ((EUID == 0)) && [[ $(stat -c %U "$DB_DIR") != "$PG_USER" ]]; then
      log LOG "$DB_DIR is not owned by $PG_USER (a volume from another image?): fixing ownership"
      chown -R "$PG_USER:$PG_USER" "$DB_DIR"
    fi
    chmod 0700 "$DB_DIR"
  fi
}

# The server's command line: the settings that apply on every start (they override
# postgresql.conf), then the container's own arguments.
server_args() {
  local -n _args=$1
  _args=(-D "$DB_DIR" -c "config_file=$PG_CONF" -c "port=${CFG[LISTEN_PORT]}")
  if [[ -n ${CFG[LISTEN_ADDRESSES]:-} ]]; then
    _args+=(-c "listen_addresses=${CFG[LISTEN_ADDRESSES]}")
  fi
  if [[ ${CFG[CONTAINER_ROLE]} == standby ]]; then
    local conninfo
    primary_conninfo conninfo
    _args+=(-c "primary_conninfo=$conninfo")
  fi
  _args+=("${SERVER_ARGS[@]}")
}

main() {
  read_settings
  # The startup line comes first, before any other output, so that the log driver can name
  # the member; then the warnings and errors about the settings.
  if valid_member; then
    printf 'SERVICE_MEMBER=%s\n' "${CFG[SERVICE_MEMBER]}"
  fi
  local message
  for message in "${SETTING_WARNINGS[@]}"; do
    log WARNING "$message"
  done
  validate_settings
  if ((${#SETTING_ERRORS[@]})); then
    for message in "${SETTING_ERRORS[@]}"; do
      log FATAL "$message"
    done
    log FATAL "settings are read from $CONF_DIR/member.conf, $CONF_DIR/service.conf (KEY=VALUE lines) and the environment; nothing was initialised"
    exit 1
  fi
  trap on_exit EXIT
  trap on_error ERR
  trap on_signal INT TERM

  find_pg_bindir
  local role=${CFG[CONTAINER_ROLE]}
  log LOG "member ${CFG[SERVICE_MEMBER]}, role $role, port ${CFG[LISTEN_PORT]}, PostgreSQL $PG_MAJOR ($PG_BINDIR)"

  prepare_dirs
  ensure_config_files
  if [[ $role == standby ]]; then
    write_passfile
  fi

  if [[ -f $DB_DIR/PG_VERSION ]]; then
    local data_major
    data_major=$(<"$DB_DIR/PG_VERSION")
    [[ $data_major == "$PG_MAJOR" ]] ||
      fatal "$DB_DIR holds a PostgreSQL $data_major cluster but this is PostgreSQL $PG_MAJOR (pg_upgrade it first)"
    if [[ -f $DB_DIR/standby.signal ]]; then
      [[ $role == standby ]] ||
        log WARNING "role is primary but $DB_DIR is a standby (standby.signal): it starts as a standby; promote it with pg_ctl promote"
      log LOG "existing standby cluster in $DB_DIR: resuming streaming from ${CFG[PRIMARY_HOST]:-?}:${CFG[PRIMARY_PORT]}"
    else
      [[ $role == primary ]] ||
        log WARNING "role is standby but $DB_DIR is not a standby (no standby.signal, promoted?): it starts as a primary"
      log LOG "existing cluster in $DB_DIR: starting it"
    fi
  else
    if [[ -d $DB_DIR && -n $(ls -A "$DB_DIR") ]]; then
      fatal "$DB_DIR is not empty but holds no cluster (no PG_VERSION): not touching it"
    fi
    "init_$role"
  fi

  local args
  server_args args
  trap - EXIT ERR INT TERM
  SECRETS=()
  CFG[POSTGRES_PASSWORD]='' CFG[REPLICATION_PASSWORD]=''
  log LOG "starting PostgreSQL"
  # exec, so that PostgreSQL is the container's process 1 and gets `docker stop`'s signal.
  if ((EUID == 0)); then
    exec setpriv --reuid="$PG_USER" --regid="$PG_USER" --init-groups -- \
      env -i "${PG_ENV[@]}" postgres "${args[@]}"
  fi
  exec env -i "${PG_ENV[@]}" postgres "${args[@]}"
}

main
