# shellcheck shell=bash
# Redis for the local stack: the Celery broker of Airflow's CeleryExecutor (sourced by
# scripts/stack.sh; defines functions only). Listens on 127.0.0.1:$AIRCONNECT_REDIS_PORT; data,
# pid file and log in $STACK/redis. Not used by the default (LocalExecutor) commands; the Celery
# tests and `scripts/stack.sh start redis` use it (README: "Tasks across machines").

redis_dir() { echo "$STACK/redis"; }

start_redis() {
  local dir port=$AIRCONNECT_REDIS_PORT server i
  dir=$(redis_dir)
  server=$(command -v redis-server || true)
  [ -n "$server" ] || die "redis-server is missing: apt-get install redis-server (scripts/setup.sh installs it)"
  if pid_alive "$dir/redis.pid"; then
    say "redis already running (pid $(cat "$dir/redis.pid"), port $port)"
    return 0
  fi
  port_open "$port" && die "port $port is busy, so Redis cannot start. Stop whatever listens there, or choose another port with AIRCONNECT_REDIS_PORT=<port>"
  mkdir -p "$dir"
  say "starting redis on 127.0.0.1:$port (data in $dir)"
  # No daemonize: nohup keeps the pid ours, so stop_pid stops exactly this server.
  nohup "$server" --bind 127.0.0.1 --port "$port" --dir "$dir" --save 60 1000 --appendonly no \
    --protected-mode yes --logfile "$dir/redis.log" >>"$dir/stdout.log" 2>&1 &
  echo "$!" >"$dir/redis.pid"
  for ((i = 0; i < 100; i++)); do
    kill -0 "$(cat "$dir/redis.pid")" 2>/dev/null || die "redis-server exited while starting; see $dir/redis.log"
    port_open "$port" && break
    sleep 0.1
  done
  wait_port "$port" 1 redis "$dir/redis.log"
  say "redis ready: redis://127.0.0.1:$port/0"
}

stop_redis() {
  stop_pid "$(redis_dir)/redis.pid" redis
}

status_redis() {
  local dir
  dir=$(redis_dir)
  if pid_alive "$dir/redis.pid"; then
    say "redis: running (pid $(cat "$dir/redis.pid"), port $AIRCONNECT_REDIS_PORT, data in $dir)"
  elif [ -d "$dir" ]; then
    say "redis: stopped"
  else
    say "redis: not set up"
  fi
}
