#!/usr/bin/env bash
# Starts and stops Airflow's long-running processes for the local stack, in $AIRFLOW_HOME.
#   scripts/airflow-services.sh start [api-server scheduler triggerer dag-processor]
#   scripts/airflow-services.sh stop
# Default: all four. Tasks report to the API server's Execution API, so the scheduler needs it.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$AIRCONNECT_ROOT"
PIDS="$AIRFLOW_HOME/pids"
LOGS="$AIRFLOW_HOME/logs"
mkdir -p "$PIDS" "$LOGS"
say() { printf '[airflow] %s\n' "$*"; }

alive() { [ -f "$PIDS/$1.pid" ] && kill -0 "$(cat "$PIDS/$1.pid")" 2>/dev/null; }

start() {
  local svc
  for svc in "$@"; do
    if alive "$svc"; then say "$svc already running (pid $(cat "$PIDS/$svc.pid"))"; continue; fi
    case "$svc" in
      scheduler | triggerer | dag-processor | api-server) ;;
      *) say "unknown service '$svc'"; exit 2 ;;
    esac
    args=("$svc")
    [ "$svc" = api-server ] && args+=(--host 127.0.0.1 --port "${AIRCONNECT_API_PORT:-8080}")
    setsid nohup .venv/bin/airflow "${args[@]}" >"$LOGS/$svc.out" 2>&1 &
    echo $! >"$PIDS/$svc.pid"
    say "started $svc (pid $!, log $LOGS/$svc.out)"
  done
}

stop() {
  local f svc pid i
  for f in "$PIDS"/*.pid; do
    [ -f "$f" ] || continue
    svc=$(basename "$f" .pid)
    pid=$(cat "$f")
    if kill -0 "$pid" 2>/dev/null; then
      say "stopping $svc (pid $pid)"
      kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
      for ((i = 0; i < 150; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
      kill -KILL -- "-$pid" 2>/dev/null || true
    fi
    rm -f "$f"
  done
}

cmd=${1:-}
shift || true
case "$cmd" in
  start)
    if [ $# -eq 0 ]; then set -- api-server scheduler triggerer dag-processor; fi
    start "$@"
    if [[ " $* " == *" api-server "* ]]; then
      for ((i = 0; i < 600; i++)); do
        (exec 3<>"/dev/tcp/127.0.0.1/$AIRCONNECT_API_PORT") 2>/dev/null && break
        sleep 0.1
      done
      say "api-server: http://127.0.0.1:$AIRCONNECT_API_PORT (login admin / admin)"
    fi
    ;;
  stop) stop ;;
  *) sed -n '2,5p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
