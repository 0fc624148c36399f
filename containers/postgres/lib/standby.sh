# shellcheck shell=bash
# A standby's first start: wait for the primary, copy it with pg_basebackup over a replication
# connection (as REPLICATION_USER, no replication slot), mark the copy a standby.  Built in
# $DB_DIR.basebackup and renamed into place only when complete.

BACKUP_DIR=$DATA_ROOT/db.basebackup

# wait_for_primary DEADLINE: until the primary accepts connections, or fail at DEADLINE
# ($SECONDS), logging every 10 s.
wait_for_primary() {
  local deadline=$1 host=${CFG[PRIMARY_HOST]} port=${CFG[PRIMARY_PORT]} next_log=0
  until as_pg pg_isready -q -h "$host" -p "$port" -t 3 </dev/null; do
    if ((SECONDS >= deadline)); then
      fatal "the primary at $host:$port did not accept connections within ${CFG[PRIMARY_WAIT_SECONDS]} s"
    fi
    if ((SECONDS >= next_log)); then
      log LOG "waiting for the primary at $host:$port (up to $((deadline - SECONDS)) s more)"
      next_log=$((SECONDS + 10))
    fi
    sleep 1
  done
  log LOG "the primary at $host:$port accepts connections"
}

init_standby() {
  local host=${CFG[PRIMARY_HOST]} port=${CFG[PRIMARY_PORT]} user=${CFG[REPLICATION_USER]}
  local deadline=$((SECONDS + CFG[PRIMARY_WAIT_SECONDS]))
  log LOG "first start of standby ${CFG[SERVICE_MEMBER]}: copying the primary at $host:$port into $DB_DIR"
  wait_for_primary "$deadline"

  local attempt=1
  while :; do
    rm -rf "$BACKUP_DIR"
    private_dir "$BACKUP_DIR"
    log LOG "pg_basebackup from $host:$port as $user (attempt $attempt)"
    if run_logged pg_basebackup as_pg PGPASSFILE="$PASSFILE" PGAPPNAME="${CFG[SERVICE_MEMBER]}" \
      pg_basebackup -D "$BACKUP_DIR" -h "$host" -p "$port" -U "$user" -w \
      --wal-method=stream --no-slot --checkpoint=fast --verbose </dev/null; then
      break
    fi
    if ((SECONDS >= deadline)); then
      rm -rf "$BACKUP_DIR"
      fatal "pg_basebackup from $host:$port failed; giving up after ${CFG[PRIMARY_WAIT_SECONDS]} s"
    fi
    log WARNING "pg_basebackup failed; trying again in 3 s"
    sleep 3
    attempt=$((attempt + 1))
  done

  # The configuration is in $CONF_DIR; the primary's copies (if it has any) would only mislead.
  rm -f "$BACKUP_DIR/postgresql.conf" "$BACKUP_DIR/pg_hba.conf"
  as_pg touch "$BACKUP_DIR/standby.signal"
  put_in_place "$BACKUP_DIR"
  log LOG "standby cluster ready; it streams from $host:$port"
}
