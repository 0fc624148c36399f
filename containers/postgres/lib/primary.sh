# shellcheck shell=bash
# A primary's first start: a new cluster in $DB_DIR with the superuser's password set and the
# replication role created.  Built in $DB_DIR.init and renamed into place only when complete, so
# an interrupted first start is simply done again.

INIT_DIR=$DATA_ROOT/db.init

# Options of the temporary server that runs while the cluster is set up: no TCP at all, its
# socket in the private RUN_DIR, and no statement ever logged (a password is in one).
temp_server_opts() {
  printf "%s " \
    "-c config_file='$PG_CONF'" \
    "-c listen_addresses=''" \
    "-c unix_socket_directories='$RUN_DIR'" \
    "-c port=${CFG[LISTEN_PORT]}" \
    "-c log_statement=none" \
    "-c log_min_error_statement=panic" \
    "-c log_min_duration_statement=-1"
}

# psql_setup: run the SQL on stdin as postgres over the temporary server's socket; its output
# is logged redacted.
psql_setup() {
  run_logged psql as_pg psql -X -q -v ON_ERROR_STOP=1 \
    -h "$RUN_DIR" -p "${CFG[LISTEN_PORT]}" -U "$PG_USER" -d postgres
}

init_primary() {
  log LOG "first start of primary ${CFG[SERVICE_MEMBER]}: creating the cluster in $DB_DIR"
  rm -rf "$INIT_DIR"
  private_dir "$INIT_DIR"

  local pwfile=$RUN_DIR/initdb.pw
  write_private "$pwfile" "${CFG[POSTGRES_PASSWORD]}"$'\n'
  local initdb_opts=(-D "$INIT_DIR" --username="$PG_USER" --pwfile="$pwfile"
    --auth-local=peer --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8
    --data-checksums)
  ((PG_MAJOR >= 14)) && initdb_opts+=(--no-instructions)
  if ! run_logged initdb as_pg initdb "${initdb_opts[@]}" </dev/null; then
    rm -f "$pwfile"
    fatal "initdb failed"
  fi
  rm -f "$pwfile"
  # Its configuration is in $CONF_DIR; initdb's copies would only mislead.
  rm -f "$INIT_DIR/postgresql.conf" "$INIT_DIR/pg_hba.conf"

  log LOG "starting a temporary server (unix socket only) to create the replication role"
  as_pg pg_ctl -D "$INIT_DIR" -w -t 120 -s -o "$(temp_server_opts)" start </dev/null ||
    fatal "the temporary server did not start"

  local user=${CFG[REPLICATION_USER]} password
  sql_literal password "${CFG[REPLICATION_PASSWORD]}"
  # The password reaches psql on a pipe (printf is a shell builtin: not in any process's
  # arguments); the session never logs its statements, not even when one fails.
  if ! printf '%s\n' \
    "SET log_statement = 'none';" \
    "SET log_min_error_statement = 'panic';" \
    "SET log_min_duration_statement = -1;" \
    "CREATE ROLE \"$user\" WITH LOGIN REPLICATION PASSWORD $password;" |
    psql_setup; then
    as_pg pg_ctl -D "$INIT_DIR" -m immediate -w -s stop </dev/null || true
    fatal "could not create the replication role $user"
  fi
  log LOG "created the replication role $user (no replication slot)"

  as_pg pg_ctl -D "$INIT_DIR" -m fast -w -t 120 -s stop </dev/null ||
    fatal "the temporary server did not stop"
  put_in_place "$INIT_DIR"
  log LOG "primary cluster ready"
}
