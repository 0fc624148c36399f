# shellcheck shell=bash
# postgresql.conf and pg_hba.conf in $CONF_DIR: written when missing, otherwise left exactly as
# the operator keeps them.  Primary and standby get the same files, so a promoted standby needs
# no change.  What the settings decide on every start (port, listen_addresses when set, the
# standby's primary_conninfo) goes on the server's command line instead; see server_args.

write_postgresql_conf() {
  local hba sockets
  conf_value hba "$HBA_CONF"
  conf_value sockets "$SOCKET_DIR"
  local keep="wal_keep_size = 512MB"
  if ((PG_MAJOR < 13)); then
    keep="wal_keep_segments = 32"
  fi
  write_private "$PG_CONF" "\
# postgresql.conf of memberlog-postgres (member ${CFG[SERVICE_MEMBER]}, written on its first start).
# Kept and used on every start: edit it freely (restart the container, or pg_ctl reload).
# Delete it to get a fresh one on the next start.
#
# Set on the server's command line from the container's settings, overriding this file:
#   port              LISTEN_PORT (default 5432)
#   listen_addresses  LISTEN_ADDRESSES, only when that is set
#   primary_conninfo  on a standby: PRIMARY_HOST, PRIMARY_PORT, REPLICATION_USER and the
#                     password file the entrypoint writes from REPLICATION_PASSWORD

hba_file = $hba
listen_addresses = '*'
unix_socket_directories = $sockets
max_connections = 100
shared_buffers = 128MB
dynamic_shared_memory_type = posix
password_encryption = scram-sha-256

# Replication.  The same on the primary and its standbys.  No replication slots: a standby that
# is down for long must not fill the primary's disk; instead the primary keeps 32 segments of
# WAL for standbys that fall behind.
wal_level = replica
max_wal_senders = 10
$keep
hot_standby = on

# Logging: to stderr, which the container's log driver ships (no logging collector).
logging_collector = off
log_destination = 'stderr'
log_line_prefix = '%m [%p] %q%u@%d '
log_timezone = 'UTC'
log_statement = 'none'

datestyle = 'iso, mdy'
timezone = 'UTC'
"
  log LOG "wrote $PG_CONF"
}

hba_line() {
  printf '%-7s %-13s %-15s %-13s %s\n' "$@"
}

write_pg_hba_conf() {
  local user=${CFG[REPLICATION_USER]}
  write_private "$HBA_CONF" "\
# pg_hba.conf of memberlog-postgres (written on the first start; kept and used on every start).
# Local (unix socket) connections: the OS user is the role (peer).  Over TCP a password is
# always required (SCRAM-SHA-256).  Replication connections: only $user, only over TCP
# (a connection that matches no line is refused).
#
$(hba_line '# TYPE' DATABASE USER ADDRESS METHOD)
$(hba_line local all all '' peer)
$(hba_line host replication "$user" 0.0.0.0/0 scram-sha-256)
$(hba_line host replication "$user" ::/0 scram-sha-256)
$(hba_line host replication all 0.0.0.0/0 reject)
$(hba_line host replication all ::/0 reject)
$(hba_line host all all 0.0.0.0/0 scram-sha-256)
$(hba_line host all all ::/0 scram-sha-256)
"
  log LOG "wrote $HBA_CONF"
}

ensure_config_files() {
  [[ -e $PG_CONF ]] || write_postgresql_conf
  [[ -e $HBA_CONF ]] || write_pg_hba_conf
}

# The replication password, for pg_basebackup and the standby's walreceiver (passfile=).
write_passfile() {
  local host port user pw
  pgpass_field host "${CFG[PRIMARY_HOST]}"
  pgpass_field port "${CFG[PRIMARY_PORT]}"
  pgpass_field user "${CFG[REPLICATION_USER]}"
  pgpass_field pw "${CFG[REPLICATION_PASSWORD]}"
  write_private "$PASSFILE" "$host:$port:*:$user:$pw"$'\n'
}

# The standby's connection to its primary: no password in it (it is in the passfile), so it
# can go on the command line.
primary_conninfo() {
  local -n _ci=$1
  local host port user passfile app
  conninfo_value host "${CFG[PRIMARY_HOST]}"
  conninfo_value port "${CFG[PRIMARY_PORT]}"
  conninfo_value user "${CFG[REPLICATION_USER]}"
  conninfo_value passfile "$PASSFILE"
  conninfo_value app "${CFG[SERVICE_MEMBER]}"
  _ci="host=$host port=$port user=$user passfile=$passfile application_name=$app"
}
