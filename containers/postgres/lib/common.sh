# shellcheck shell=bash
# Shared by the entrypoint's steps: paths, logging, running things as the postgres user.
#
# Secrets never go into a command's arguments (visible to `ps`) nor into the output: they reach
# PostgreSQL's tools through 0600 files in RUN_DIR or on stdin, and every line a tool prints
# passes through redact() before it is logged.

PG_USER=postgres

# The data volume.  MEMBERLOG_PG_DATA_ROOT is for the tests that run this script on a host
# (several instances side by side); in the image the volume is always /data.
DATA_ROOT=${MEMBERLOG_PG_DATA_ROOT:-/data}
DB_DIR=$DATA_ROOT/db
CONF_DIR=$DATA_ROOT/conf
PG_CONF=$CONF_DIR/postgresql.conf
HBA_CONF=$CONF_DIR/pg_hba.conf
if [[ -n ${MEMBERLOG_PG_DATA_ROOT:-} ]]; then
  RUN_DIR=$DATA_ROOT/run # private to this instance: sockets, password files
  SOCKET_DIR=$RUN_DIR
else
  RUN_DIR=/run/memberlog-postgres
  SOCKET_DIR=/var/run/postgresql # libpq's default on Debian: `docker exec -u postgres ... psql`
fi
PASSFILE=$RUN_DIR/pgpass # the replication password, for a standby's walreceiver

SECRETS=() # every form of every password, for redact()

# log LEVEL MESSAGE...: one line in the same shape as PostgreSQL's own (timestamp, pid).
log() {
  local level=$1
  shift
  printf '%s [%d] entrypoint %s:  %s\n' "$(date -u '+%Y-%m-%d %H:%M:%S.%3N UTC')" "$$" \
    "$level" "$*"
}

fatal() {
  log FATAL "$@"
  exit 1
}

# redact VAR TEXT: VAR = TEXT with every known secret replaced by ********.
redact() {
  local -n _out=$1
  local text=$2 secret
  for secret in "${SECRETS[@]}"; do
    [[ -n $secret ]] && text=${text//"$secret"/********}
  done
  _out=$text
}

# log_lines TAG: log each line read from stdin, redacted, as "TAG: line".
log_lines() {
  local tag=$1 line clean
  while IFS= read -r line || [[ -n $line ]]; do
    redact clean "$line"
    log LOG "$tag: ${clean#"$tag: "}"
  done
}

# run_logged TAG COMMAND...: run COMMAND with its output logged line by line; its exit status.
# Not for anything that leaves a daemon holding the pipe (pg_ctl start).  stdin is the caller's.
run_logged() {
  local tag=$1 rc=0
  shift
  "$@" 2>&1 | log_lines "$tag" || rc=$?
  return "$rc"
}

# The newest PostgreSQL installed the Debian way (/usr/lib/postgresql/<major>/bin).
find_pg_bindir() {
  local dirs
  dirs=$(printf '%s\n' /usr/lib/postgresql/*/bin/postgres | sort -V | tail -n 1)
  [[ -x $dirs ]] || fatal "no PostgreSQL server found (/usr/lib/postgresql/*/bin/postgres)"
  PG_BINDIR=${dirs%/postgres}
  local version
  version=$("$PG_BINDIR/postgres" --version) # "postgres (PostgreSQL) 15.8 (Debian 15.8-0+deb12u1)"
  [[ $version =~ \)\ ([0-9]+) ]] || fatal "cannot tell the version of $PG_BINDIR/postgres"
  PG_MAJOR=${BASH_REMATCH[1]}
  PG_HOME=$(getent passwd "$PG_USER" | cut -d: -f6)
  PG_HOME=${PG_HOME:-/var/lib/postgresql}
  # The whole environment of everything run as postgres: no password variables, no root HOME.
  PG_ENV=(PATH="$PG_BINDIR:/usr/sbin:/usr/bin:/sbin:/bin" HOME="$PG_HOME" LANG=C.UTF-8)
  if [[ -n ${TZ:-} ]]; then
    PG_ENV+=(TZ="$TZ")
  fi
}

# as_pg [NAME=VALUE...] COMMAND...: run COMMAND as the postgres user with a clean environment
# (no password variables, no root HOME).  NAME=VALUE pairs are added to that environment.
as_pg() {
  if ((EUID == 0)); then
    setpriv --reuid="$PG_USER" --regid="$PG_USER" --init-groups -- env -i "${PG_ENV[@]}" "$@"
  else
    env -i "${PG_ENV[@]}" "$@"
  fi
}

# write_private FILE CONTENT: FILE (0600, the postgres user's) holds exactly CONTENT, atomically.
write_private() {
  local file=$1 content=$2 tmp
  tmp=$(mktemp "$file.XXXXXX") # 0600 under the entrypoint's umask
  printf '%s' "$content" >"$tmp"
  ((EUID == 0)) && chown "$PG_USER:$PG_USER" "$tmp"
  chmod 0600 "$tmp"
  mv -f "$tmp" "$file"
}

# private_dir DIR: DIR exists, belongs to the postgres user, mode 0700.
private_dir() {
  local dir=$1
  mkdir -p "$dir"
  if ((EUID == 0)); then
    chown "$PG_USER:$PG_USER" "$dir"
  fi
  chmod 0700 "$dir"
}

# sql_literal VAR TEXT: VAR = TEXT as an SQL string literal (standard_conforming_strings).
sql_literal() {
  local -n _lit=$1
  local q="'" qq="''"
  _lit="'${2//$q/$qq}'"
}

# conninfo_value VAR TEXT: VAR = TEXT quoted for a libpq connection string.
conninfo_value() {
  local -n _cv=$1
  local v=$2
  v=${v//\\/\\\\}
  v=${v//\'/\\\'}
  _cv="'$v'"
}

# pgpass_field VAR TEXT: VAR = TEXT escaped for one field of a .pgpass line.
pgpass_field() {
  local -n _pf=$1
  local v=$2
  v=${v//\\/\\\\}
  v=${v//:/\\:}
  _pf=$v
}

# conf_value VAR TEXT: VAR = TEXT as a postgresql.conf string value.
conf_value() {
  local -n _cf=$1
  local q="'" qq="''"
  _cf="'${2//$q/$qq}'"
}

# put_in_place DIR: DIR becomes $DB_DIR (an empty $DB_DIR, such as a mount point's stand-in, is
# replaced; anything else there is not touched).
put_in_place() {
  local dir=$1
  if [[ -d $DB_DIR ]]; then
    rmdir "$DB_DIR" 2>/dev/null || fatal "$DB_DIR exists, is not empty and has no PG_VERSION: not replacing it"
  fi
  mv "$dir" "$DB_DIR"
  sync -f "$DB_DIR" 2>/dev/null || true
}
