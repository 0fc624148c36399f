# shellcheck shell=bash
# The settings: from $CONF_DIR/member.conf, then $CONF_DIR/service.conf (KEY=VALUE lines, as a
# volume plugin writes them), then the environment.  For each key the first of those that sets
# it (non-empty) wins.  A password can be given as NAME or as NAME_FILE (a file holding it, the
# Docker secrets convention); the first source that has either decides, and one source giving
# both is an error.
#
# Everything ends up in the (non-exported) associative array CFG; the password variables are
# removed from the environment so that no child process inherits them.

declare -A CFG=()
declare -A FROM_MEMBER=() FROM_SERVICE=()
SETTING_ERRORS=()
SETTING_WARNINGS=()

PLAIN_KEYS=(CONTAINER_ROLE SERVICE_MEMBER PRIMARY_HOST LISTEN_PORT PRIMARY_PORT LISTEN_ADDRESSES
  PRIMARY_WAIT_SECONDS REPLICATION_USER)
SECRET_KEYS=(POSTGRES_PASSWORD REPLICATION_PASSWORD)

# parse_settings_file FILE ARRAY: the KEY=VALUE lines of FILE into the associative ARRAY.
# Blank lines and #-comments are skipped, "export " is allowed, one pair of quotes around the
# whole value is removed; nothing is expanded or executed.
parse_settings_file() {
  local file=$1 line key value n=0
  local -n _into=$2
  [[ -e $file ]] || return 0
  if [[ ! -r $file ]]; then
    SETTING_ERRORS+=("cannot read $file")
    return 0
  fi
  while IFS= read -r line || [[ -n $line ]]; do
    n=$((n + 1))
    line=${line%$'\r'}
    [[ $line =~ ^[[:space:]]*(#|$) ]] && continue
    if [[ $line =~ ^[[:space:]]*(export[[:space:]]+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$ ]]; then
      key=${BASH_REMATCH[2]}
      value=${BASH_REMATCH[3]}
      if [[ ${#value} -ge 2 && ($value == \"*\" || $value == \'*\') && ${value:0:1} == "${value: -1}" ]]; then
        value=${value:1:${#value}-2}
      fi
      _into["$key"]=$value
    else
      # Not the line itself: it might hold a password.
      SETTING_WARNINGS+=("$file line $n is not KEY=VALUE; ignored")
    fi
  done <"$file"
}

# read_secret_file NAME FILE: the password in FILE (trailing newlines removed) into CFG[NAME].
read_secret_file() {
  local name=$1 file=$2 value
  if [[ ! -f $file || ! -r $file ]]; then
    SETTING_ERRORS+=("${name}_FILE: cannot read $file")
    return 0
  fi
  value=$(<"$file")
  CFG[$name]=$value
}

read_settings() {
  parse_settings_file "$CONF_DIR/member.conf" FROM_MEMBER
  parse_settings_file "$CONF_DIR/service.conf" FROM_SERVICE

  local key
  for key in "${PLAIN_KEYS[@]}"; do
    if [[ -n ${FROM_MEMBER[$key]:-} ]]; then
      CFG[$key]=${FROM_MEMBER[$key]}
    elif [[ -n ${FROM_SERVICE[$key]:-} ]]; then
      CFG[$key]=${FROM_SERVICE[$key]}
    elif [[ -n ${!key:-} ]]; then
      CFG[$key]=${!key}
    fi
  done

  local source direct file_key
  for key in "${SECRET_KEYS[@]}"; do
    file_key=${key}_FILE
    for source in member service env; do
      case $source in
        member) direct=${FROM_MEMBER[$key]:-} file=${FROM_MEMBER[$file_key]:-} ;;
        service) direct=${FROM_SERVICE[$key]:-} file=${FROM_SERVICE[$file_key]:-} ;;
        env) direct=${!key:-} file=${!file_key:-} ;;
      esac
      if [[ -n $direct && -n $file ]]; then
        SETTING_ERRORS+=("$key and $file_key are both set (in the $source settings): set one")
        break
      elif [[ -n $direct ]]; then
        CFG[$key]=$direct
        break
      elif [[ -n $file ]]; then
        read_secret_file "$key" "$file"
        break
      fi
    done
  done
  unset POSTGRES_PASSWORD REPLICATION_PASSWORD POSTGRES_PASSWORD_FILE REPLICATION_PASSWORD_FILE

  CFG[LISTEN_PORT]=${CFG[LISTEN_PORT]:-5432}
  CFG[PRIMARY_PORT]=${CFG[PRIMARY_PORT]:-${CFG[LISTEN_PORT]}}
  CFG[PRIMARY_WAIT_SECONDS]=${CFG[PRIMARY_WAIT_SECONDS]:-300}

  local value literal
  for key in "${SECRET_KEYS[@]}"; do
    value=${CFG[$key]:-}
    if [[ -n $value ]]; then
      sql_literal literal "$value"
      SECRETS+=("$value" "${literal:1:${#literal}-2}")
    fi
  done
}

# The member, if it is usable as the startup line (and a CloudWatch Logs stream name).
valid_member() {
  local m=${CFG[SERVICE_MEMBER]:-}
  [[ ${#m} -le 255 && $m =~ ^[A-Za-z0-9][A-Za-z0-9._/#-]*$ ]]
}

# require KEY WHAT: an error unless CFG[KEY] is set.
require() {
  [[ -n ${CFG[$1]:-} ]] || SETTING_ERRORS+=("missing required setting $1 ($2)")
}

valid_port() {
  [[ $1 =~ ^[0-9]{1,5}$ ]] && (($1 >= 1 && $1 <= 65535))
}

validate_settings() {
  if [[ -z ${CFG[SERVICE_MEMBER]:-} ]]; then
    SETTING_ERRORS+=("missing required setting SERVICE_MEMBER (this member's name, e.g. mypg-0)")
  elif ! valid_member; then
    SETTING_ERRORS+=("SERVICE_MEMBER must be 1-255 of A-Z a-z 0-9 . _ / # - (not starting with . _ / # -)")
  fi
  local role=${CFG[CONTAINER_ROLE]:-}
  case $role in
    primary)
      require POSTGRES_PASSWORD "or POSTGRES_PASSWORD_FILE: the postgres superuser's password"
      ;;
    standby)
      require PRIMARY_HOST "the primary's host name or address"
      ;;
    '') SETTING_ERRORS+=("missing required setting CONTAINER_ROLE (primary or standby)") ;;
    *) SETTING_ERRORS+=("CONTAINER_ROLE must be primary or standby, not '$role'") ;;
  esac
  require REPLICATION_USER "the role standbys replicate as"
  require REPLICATION_PASSWORD "or REPLICATION_PASSWORD_FILE: the replication role's password"

  local user=${CFG[REPLICATION_USER]:-}
  if [[ -n $user ]]; then
    if [[ ! $user =~ ^[a-z_][a-z0-9_]{0,62}$ || $user == pg_* ]]; then
      SETTING_ERRORS+=("REPLICATION_USER must be a plain role name (a-z 0-9 _, not pg_...)")
    elif [[ $user == "$PG_USER" ]]; then
      SETTING_ERRORS+=("REPLICATION_USER must not be the superuser $PG_USER")
    fi
  fi
  local key
  for key in LISTEN_PORT PRIMARY_PORT; do
    valid_port "${CFG[$key]}" || SETTING_ERRORS+=("$key must be a port number (1-65535)")
  done
  [[ ${CFG[PRIMARY_WAIT_SECONDS]} =~ ^[0-9]{1,6}$ ]] ||
    SETTING_ERRORS+=("PRIMARY_WAIT_SECONDS must be a number of seconds")
  if [[ -n ${CFG[PRIMARY_HOST]:-} && ! ${CFG[PRIMARY_HOST]} =~ ^[A-Za-z0-9._:%-]+$ ]]; then
    SETTING_ERRORS+=("PRIMARY_HOST must be a host name or an IP address")
  fi
  if [[ -n ${CFG[LISTEN_ADDRESSES]:-} && ! ${CFG[LISTEN_ADDRESSES]} =~ ^[A-Za-z0-9._:%*,\ -]+$ ]]; then
    SETTING_ERRORS+=("LISTEN_ADDRESSES must be a comma-separated list of host names or addresses")
  fi
  for key in "${SECRET_KEYS[@]}"; do
    [[ ${CFG[$key]:-} == *$'\n'* ]] && SETTING_ERRORS+=("$key must be a single line")
  done
  return 0
}
