# shellcheck shell=bash
# MariaDB for the local stack (sourced by scripts/stack.sh; defines functions only).
# Data in $STACK/mariadb/data; listens on 127.0.0.1:$AIRCONNECT_MARIADB_PORT, socket $STACK/mariadb/mysqld.sock.
# Database `pos` and user airconnect/airconnect (127.0.0.1 and localhost, all privileges) are created
# on start (idempotent). The server ignores /etc/mysql (--no-defaults), so the system service is untouched.

maria_bin() { # name...: the first of these programs found on PATH or in /usr/sbin, /usr/libexec
  local n d
  for n in "$@"; do
    for d in $(printf '%s' "$PATH" | tr ':' ' ') /usr/sbin /usr/libexec /usr/local/sbin; do
      if [ -x "$d/$n" ]; then
        echo "$d/$n"
        return 0
      fi
    done
  done
  return 1
}

maria_dir() { echo "$STACK/mariadb"; }

maria_client() { # args...: the command-line client as the admin user, over the socket
  local client
  client=$(maria_bin mariadb mysql) || die "the MariaDB client is missing: apt-get install mariadb-client"
  "$client" --no-defaults --socket="$(maria_dir)/mysqld.sock" -u "$(id -un)" "$@"
}

start_mariadb() {
  local dir server installdb port=$AIRCONNECT_MARIADB_PORT log pid i user_opt=()
  dir=$(maria_dir)
  log="$dir/mariadb.log"
  server=$(maria_bin mariadbd mysqld) || die "the MariaDB server (mariadbd) is missing: apt-get install mariadb-server"
  installdb=$(maria_bin mariadb-install-db mysql_install_db) ||
    die "mariadb-install-db is missing: apt-get install mariadb-server"
  if pid_alive "$dir/mariadbd.pid"; then
    say "mariadb already running (pid $(cat "$dir/mariadbd.pid"), port $port)"
    return 0
  fi
  port_open "$port" && die "port $port is busy, so MariaDB cannot start. Stop whatever listens there, or choose another port with AIRCONNECT_MARIADB_PORT=<port>"
  local sock="$dir/mysqld.sock"
  [ ${#sock} -le 100 ] || die "the MariaDB socket path $sock is too long for a Unix socket; set AIRCONNECT_STACK_DIR to a shorter folder"
  mkdir -p "$dir"
  [ "$(id -u)" = 0 ] && user_opt=(--user=root)
  if [ ! -d "$dir/data/mysql" ]; then
    say "initialising MariaDB in $dir/data"
    rm -rf "$dir/data"
    "$installdb" --no-defaults --datadir="$dir/data" "${user_opt[@]}" --skip-test-db \
      --auth-root-authentication-method=socket >"$dir/install-db.log" 2>&1 ||
      die "mariadb-install-db failed; see $dir/install-db.log"
  fi
  rm -f "$sock" "$dir/mariadbd.pid"
  say "starting mariadb on 127.0.0.1:$port (data in $dir/data)"
  nohup "$server" --no-defaults "${user_opt[@]}" \
    --datadir="$dir/data" --socket="$sock" --pid-file="$dir/mariadbd.pid" \
    --port="$port" --bind-address=127.0.0.1 --skip-name-resolve \
    --default-time-zone='+00:00' --character-set-server=utf8mb4 --collation-server=utf8mb4_unicode_ci \
    --innodb-buffer-pool-size=128M --innodb-log-file-size=256M --max-connections=200 \
    --server-id=1 --log-bin="$dir/data/binlog" --binlog-format=ROW --binlog-row-image=FULL --binlog-row-metadata=FULL --expire-logs-days=1 \
    --log-error="$log" >>"$dir/stdout.log" 2>&1 &
  pid=$!
  echo "$pid" >"$dir/mariadbd.pid"
  for ((i = 0; i < 600; i++)); do
    kill -0 "$pid" 2>/dev/null || die "MariaDB exited while starting; see $log"
    port_open "$port" && maria_client -e 'select 1' >/dev/null 2>&1 && break
    sleep 0.1
  done
  wait_port "$port" 1 mariadb "$log"
  maria_client >/dev/null <<'SQL' || die "could not create the pos database or the airconnect user; see $log"
CREATE DATABASE IF NOT EXISTS pos CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
CREATE USER IF NOT EXISTS 'airconnect'@'127.0.0.1' IDENTIFIED BY 'airconnect';
CREATE USER IF NOT EXISTS 'airconnect'@'localhost' IDENTIFIED BY 'airconnect';
GRANT ALL PRIVILEGES ON *.* TO 'airconnect'@'127.0.0.1' WITH GRANT OPTION;
GRANT ALL PRIVILEGES ON *.* TO 'airconnect'@'localhost' WITH GRANT OPTION;
-- The CDC source reads the binlog as a replica (ALL holds these; named for a narrower user's sake).
GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO 'airconnect'@'127.0.0.1';
GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO 'airconnect'@'localhost';
SQL
  "$(maria_bin mariadb mysql)" --no-defaults -h127.0.0.1 -P"$port" -uairconnect -pairconnect pos -e 'select 1' >/dev/null ||
    die "MariaDB started but airconnect@127.0.0.1:$port/pos does not answer; see $log"
  say "mariadb ready: mysql://airconnect:airconnect@127.0.0.1:$port/pos"
}

stop_mariadb() {
  stop_pid "$(maria_dir)/mariadbd.pid" mariadb
}

status_mariadb() {
  local dir
  dir=$(maria_dir)
  if [ ! -d "$dir/data/mysql" ]; then
    say "mariadb: not set up"
  elif pid_alive "$dir/mariadbd.pid"; then
    say "mariadb: running (pid $(cat "$dir/mariadbd.pid"), port $AIRCONNECT_MARIADB_PORT, data in $dir/data)"
  else
    say "mariadb: stopped"
  fi
}
