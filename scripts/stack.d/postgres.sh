# shellcheck shell=bash
# PostgreSQL for the local stack (sourced by scripts/stack.sh; defines functions only).
#
# Data normally lives in $STACK/postgres/data. PostgreSQL refuses to run as root, so when we are root
# the server runs as the `postgres` OS user. If that user cannot reach $STACK/postgres (the repo is
# cloned under /root, say), or the socket path would be too long, the data goes to
# /tmp/airconnect-pg-<hash of $STACK> instead and $STACK/postgres/data is a symlink to it.
# The server listens on 127.0.0.1:$AIRCONNECT_POSTGRES_PORT; its Unix socket is in the data folder.
# Role airconnect/airconnect (superuser) and databases `ec` (EC sales) and `autoorder` (the auto-order
# system) are created on start (idempotent).

pg_bindir() {
  local d
  if [ -n "${AIRCONNECT_PG_BIN:-}" ]; then
    [ -x "$AIRCONNECT_PG_BIN/pg_ctl" ] || die "AIRCONNECT_PG_BIN=$AIRCONNECT_PG_BIN has no pg_ctl"
    echo "$AIRCONNECT_PG_BIN"
    return 0
  fi
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
  if [ -n "$d" ] && [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && [ -x "$d/postgres" ]; then
    echo "$d"
    return 0
  fi
  d=$(command -v pg_ctl 2>/dev/null || true)
  if [ -n "$d" ] && [ -x "$(dirname "$d")/initdb" ] && [ -x "$(dirname "$d")/postgres" ]; then
    dirname "$d"
    return 0
  fi
  die "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found under /usr/lib/postgresql/*/bin: apt-get install postgresql (or set AIRCONNECT_PG_BIN to their folder)"
}

pg_is_root() { [ "$(id -u)" = 0 ]; }

# Runs a command as the user that owns the cluster (postgres when we are root), from a neutral cwd.
pg_as() {
  if pg_is_root; then
    (cd / && runuser -u postgres -- "$@")
  else
    (cd / && "$@")
  fi
}

pg_link() { echo "$STACK/postgres/data"; }

pg_fallback_root() {
  local abs h
  abs=$(realpath -m "$STACK")
  h=$(printf '%s' "$abs" | sha1sum | cut -c1-12)
  echo "/tmp/airconnect-pg-$h"
}

# Prints the folder holding data/ and postgres.log (the real path, symlinks resolved), choosing one
# the first time. With "create", makes it; without, prints nothing if the cluster was never set up.
pg_root() {
  local link mode=${1:-} root sock
  link=$(pg_link)
  if [ -L "$link" ]; then
    root=$(dirname "$(readlink "$link")")
    if [ "$mode" = create ] && [ ! -d "$root" ]; then pg_make_root "$root"; fi
    echo "$root"
    return 0
  fi
  if [ -d "$link" ]; then
    echo "$STACK/postgres"
    return 0
  fi
  [ "$mode" = create ] || return 0
  mkdir -p "$STACK/postgres"
  root="$STACK/postgres"
  sock="$root/data/.s.PGSQL.$AIRCONNECT_POSTGRES_PORT"
  if [ ${#sock} -gt 100 ]; then
    root=$(pg_fallback_root)
  elif pg_is_root && ! runuser -u postgres -- test -x "$STACK/postgres" 2>/dev/null; then
    root=$(pg_fallback_root)
  fi
  if [ "$root" = "$STACK/postgres" ]; then
    pg_is_root && chown postgres: "$root"
  else
    pg_make_root "$root"
    ln -sfn "$root/data" "$link"
    printf 'The PostgreSQL data folder is %s/data (the postgres user cannot reach this folder, or its socket path would be too long).\n' \
      "$root" >"$STACK/postgres/README"
  fi
  echo "$root"
}

pg_make_root() { # dir: a private folder owned by the cluster's user
  local dir=$1 owner
  mkdir -p "$dir"
  if pg_is_root; then chown postgres: "$dir"; fi
  chmod 700 "$dir"
  owner=$(stat -c %U "$dir")
  if pg_is_root; then
    [ "$owner" = postgres ] || die "$dir is owned by $owner, not postgres; remove it"
  else
    [ "$owner" = "$(id -un)" ] || die "$dir is owned by $owner, not $(id -un); remove it"
  fi
}

pg_running() { # bindir datadir
  [ -f "$2/postmaster.pid" ] && pg_as "$1/pg_ctl" -D "$2" status >/dev/null 2>&1
}

pg_psql_admin() { # bindir datadir [psql args...]
  local bin=$1 data=$2
  shift 2
  pg_as "$bin/psql" -X -q -v ON_ERROR_STOP=1 -h "$data" -p "$AIRCONNECT_POSTGRES_PORT" -U postgres -d postgres "$@"
}

start_postgres() {
  local bin root data log port=$AIRCONNECT_POSTGRES_PORT i
  bin=$(pg_bindir)
  if pg_is_root; then
    id postgres >/dev/null 2>&1 || die "running as root needs the 'postgres' OS user (apt-get install postgresql creates it)"
  fi
  root=$(pg_root create)
  data="$root/data"
  log="$root/postgres.log"
  if pg_running "$bin" "$data"; then
    say "postgres already running (pid $(head -1 "$data/postmaster.pid"), port $port)"
    return 0
  fi
  port_open "$port" && die "port $port is busy, so PostgreSQL cannot start. Stop whatever listens there, or choose another port with AIRCONNECT_POSTGRES_PORT=<port>"
  if [ ! -f "$data/PG_VERSION" ]; then
    say "initialising PostgreSQL ($("$bin/postgres" --version | awk '{print $3}')) in $data"
    rm -rf "$data"
    pg_as "$bin/initdb" -D "$data" -U postgres -E UTF8 --locale=C.UTF-8 \
      --auth-local=trust --auth-host=scram-sha-256 >"$root/initdb.log" 2>&1 ||
      pg_as "$bin/initdb" -D "$data" -U postgres -E UTF8 --locale=C \
        --auth-local=trust --auth-host=scram-sha-256 >"$root/initdb.log" 2>&1 ||
      die "initdb failed; see $root/initdb.log"
    printf "\n# airconnect\ninclude_if_exists = 'airconnect.conf'\n" | pg_as tee -a "$data/postgresql.conf" >/dev/null
  fi
  # Settings that follow the environment are rewritten on every start.
  pg_as tee "$data/airconnect.conf" >/dev/null <<CONF
# Written by scripts/stack.d/postgres.sh on every start.
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$data'
timezone = 'UTC'
log_timezone = 'UTC'
password_encryption = 'scram-sha-256'
max_connections = 200
shared_buffers = 128MB
max_wal_size = 2GB
# change data capture (airconnect's cdc source, Debezium): logical decoding through replication slots
wal_level = logical
max_replication_slots = 20
max_wal_senders = 20
CONF
  rm -f "$data/postmaster.pid" # a stale one after a crash; pg_running said no server owns it
  say "starting postgres on 127.0.0.1:$port (data in $data)"
  pg_as "$bin/pg_ctl" -D "$data" -l "$log" -w -t 60 start >/dev/null ||
    die "PostgreSQL did not start; see $log"
  wait_port "$port" 30 postgres "$log"
  for ((i = 0; i < 100; i++)); do
    pg_as "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" && break
    sleep 0.1
  done
  pg_psql_admin "$bin" "$data" >/dev/null <<'SQL' || die "could not create the airconnect role or the ec database; see $log"
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'airconnect') THEN
    CREATE ROLE airconnect LOGIN CREATEDB SUPERUSER PASSWORD 'airconnect';
  END IF;
END $$;
SELECT 'CREATE DATABASE ec OWNER airconnect' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'ec')
\gexec
SELECT 'CREATE DATABASE autoorder OWNER airconnect' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'autoorder')
\gexec
SQL
  PGPASSWORD=airconnect "$bin/psql" -X -q -At -h 127.0.0.1 -p "$port" -U airconnect -d ec -c 'select 1' >/dev/null ||
    die "PostgreSQL started but airconnect@127.0.0.1:$port/ec does not answer; see $log"
  say "postgres ready: postgresql://airconnect:airconnect@127.0.0.1:$port/ec"
}

pg_pid_live() { # pid: a postgres process that is not a zombie (init may reap it a moment later)
  local i st
  for ((i = 0; i < 20; i++)); do
    st=$(ps -o stat=,comm= -p "$1" 2>/dev/null || true)
    case "$st" in
      "" | Z*) return 1 ;;
    esac
    sleep 0.1
  done
  case "$st" in *postgres*) return 0 ;; *) return 1 ;; esac
}

stop_postgres() {
  local bin root data pid
  root=$(pg_root)
  [ -n "$root" ] || return 0
  data="$root/data"
  [ -f "$data/postmaster.pid" ] || return 0
  bin=$(pg_bindir)
  pid=$(head -1 "$data/postmaster.pid")
  if pg_running "$bin" "$data"; then
    say "stopping postgres (pid $pid)"
    pg_as "$bin/pg_ctl" -D "$data" -m fast -w -t 60 stop >/dev/null 2>&1 || true
  fi
  if [ -n "$pid" ] && pg_pid_live "$pid"; then
    say "postgres did not stop within 60 s; killing it"
    pkill -9 -P "$pid" 2>/dev/null || true
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$data/postmaster.pid"
}

status_postgres() {
  local bin root data
  root=$(pg_root)
  if [ -z "$root" ] || [ ! -f "$root/data/PG_VERSION" ]; then
    say "postgres: not set up"
    return 0
  fi
  data="$root/data"
  bin=$(pg_bindir)
  if pg_running "$bin" "$data"; then
    say "postgres: running (pid $(head -1 "$data/postmaster.pid"), port $AIRCONNECT_POSTGRES_PORT, data in $data)"
  else
    say "postgres: stopped"
  fi
}
