#!/usr/bin/env bash
# The main job: sets up what is missing, starts the local stack and runs the scenario end to end.
#   Flow 1: writes the tutorial's four inventory lines, runs one pass of inventory_sync
#   (`airflow dags test`), shows the EC file; then starts Airflow's scheduler, appends two lines
#   and shows them arrive in the EC file within seconds.
#   Flow 2: generates 25 months of EC (PostgreSQL) and POS (MariaDB) sales, exports October 2018
#   (`airflow dags test monthly_forecast_export 2018-11-01`) and lists the month's S3 objects.
#   Flow 3: forecasts November 2018 (`sales_forecast`), then a shop's stock runs low and
#   `auto_order` (its JDBC sinks bring the forecast and the inventory into the auto-order
#   database) orders it, once (a re-run orders nothing).
#   The tutorial: its own curl commands create, list and delete its two connectors over the REST
#   API (each runs in a DAG of its own), with a console consumer and tail -f watching.
# State lives in .airflow/ (Airflow), data/ (files) and the stack; each run of the demo starts afresh.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$AIRCONNECT_ROOT"
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

scripts/setup.sh
scripts/stack.sh start
trap 'scripts/airflow-services.sh stop >/dev/null 2>&1 || true' EXIT

# Forget a DAG's run history (earlier demos); a DAG that was never run is fine, any other error is not.
forget_dag() {
  local out
  out=$(airflow dags delete "$1" --yes 2>&1) && return 0
  grep -q "DagNotFound" <<<"$out" && return 0
  printf '%s\n' "$out" >&2; echo "airflow dags delete $1 failed" >&2; return 1
}

INVENTORY="$AIRCONNECT_DATA_DIR/zaiko/latest.txt"
EC="$AIRCONNECT_DATA_DIR/ec/zaiko-latest.txt"

say "Flow 1: starting afresh (offsets reset, topic zaiko-data deleted, data files removed)"
scripts/airflow-services.sh stop >/dev/null
forget_dag inventory_sync
rm -f "$INVENTORY" "$EC"
airconnect reset load-zaiko-data sink-zaiko-data --delete-topics
mkdir -p "$(dirname "$INVENTORY")"

say "Flow 1: the inventory system writes four lines to $INVENTORY"
cat <<LINES >"$INVENTORY"
ITEM001,SHOP001,929,2018-10-01 01:01:01
ITEM002,SHOP001,480,2018-10-01 01:01:01
ITEM001,SHOP001,25,2018-10-02 02:02:02
ITEM003,SHOP001,6902,2018-10-02 02:02:02
LINES
cat "$INVENTORY"

say "Flow 1: one pass of the DAG (airflow dags test inventory_sync)"
airflow dags test inventory_sync >"$AIRFLOW_HOME/demo-dags-test.log" 2>&1 ||
  { tail -40 "$AIRFLOW_HOME/demo-dags-test.log"; exit 1; }
grep -o "connector '[a-z-]*': done, [^[]*" "$AIRFLOW_HOME/demo-dags-test.log" || true

say "Flow 1: records on topic zaiko-data (as a console consumer shows them)"
python - <<'PY'
import os, sys
sys.path.insert(0, os.path.join(os.environ["AIRCONNECT_ROOT"], "tests"))
from helpers import read_topic
for value in read_topic({"bootstrap.servers": os.environ["AIRCONNECT_KAFKA_BOOTSTRAP"]}, "zaiko-data"):
    print(value.decode())
PY

say "Flow 1: the EC site's file $EC"
cat "$EC"
cmp -s "$INVENTORY" "$EC" && echo "(identical to the inventory file)"

say "Flow 1: near-continuous sync with the scheduler running"
scripts/airflow-services.sh start
airflow dags unpause inventory_sync >/dev/null
printf 'waiting for the first continuous run to wait on the inventory file'
for _ in $(seq 1 120); do
  python - <<'PY' && break
import os, sqlite3, sys
db = sqlite3.connect(os.path.join(os.environ["AIRFLOW_HOME"], "airflow.db"))
n = db.execute("select count(*) from task_instance where dag_id='inventory_sync' and state='deferred'").fetchone()[0]
sys.exit(0 if n else 1)
PY
  printf '.'; sleep 1
done
echo
echo "appending two lines (as the tutorial does), then watching the EC file (like tail -f):"
start=$(date +%s.%N)
cat <<LINES >>"$INVENTORY"
ITEM001,SHOP001,6090,2018-10-03 03:00:00
ITEM004,SHOP001,256,2018-10-03 03:00:00
LINES
for _ in $(seq 1 600); do
  if [ "$(wc -l <"$EC")" -ge 6 ]; then break; fi
  sleep 0.1
done
end=$(date +%s.%N)
tail -n 2 "$EC"
if cmp -s "$INVENTORY" "$EC"; then
  printf 'the two lines arrived in %s s; the EC file is identical to the inventory file\n' "$(python -c "print(round($end - $start, 1))")"
else
  echo "the EC file did not catch up within 60 s; see $AIRFLOW_HOME/logs" >&2
  exit 1
fi
airflow dags pause inventory_sync >/dev/null
scripts/airflow-services.sh stop >/dev/null  # flows 2 and 3 run one pass each, like flow 1's first
say "done (flow 1)"

show() { python scripts/demo_show.py "$@" | sed '/ \[info  /d'; }  # (without the providers' info logs)

dags_test() {  # airflow dags test, its log kept; print the lines that say what the tasks did
  local log="$AIRFLOW_HOME/demo-$1.log"
  airflow dags test "$@" >"$log" 2>&1 || { tail -60 "$log"; echo "airflow dags test $* failed; log: $log" >&2; exit 1; }
  grep -ho "connector '[a-z0-9-]*': done, [^[]*\|connector '[a-z0-9-]*' ([^)]*-> database): done, [^[]*\|wrote s3://[^ ]*manifest.json[^[]*\|forecast for [0-9-]* (from[^[]*\|orders: [^[]*" "$log" | sed 's/ *$//' | awk '!seen[$0]++' || true
}

say "Flow 2: starting afresh (offsets, topics, the bucket's objects and the order tables)"
forget_dag monthly_forecast_export
forget_dag sales_forecast
forget_dag auto_order
show fresh

say "Flow 2: 25 months of sales (2016-10..2018-10): EC order lines into PostgreSQL, store sales into MariaDB"
python include/generate_sales.py --months 25 --end 2018-10 --rows-per-month 2000 --reset

say "Flow 2: the run of 2018-11-01 exports October (airflow dags test monthly_forecast_export 2018-11-01)"
dags_test monthly_forecast_export 2018-11-01

say "Flow 2: October 2018 in S3, one folder per topic and month, and the month's manifest"
show month 2018-10

say "Flow 3: forecast November 2018 from the exports (airflow dags test sales_forecast -c '{\"month\": \"2018-10\"}')"
dags_test sales_forecast -c '{"month": "2018-10"}'
show forecast 2018-11

say "Flow 3: SHOP001 sells its ITEM002 down to 3; inventory_sync carries the line to zaiko-data"
echo "ITEM002,SHOP001,3,2018-10-31 21:00:00" | tee -a "$INVENTORY"
dags_test inventory_sync

say "Flow 3: automatic ordering (airflow dags test auto_order)"
dags_test auto_order
show orders

say "Flow 3: auto_order again: a re-run orders nothing twice"
dags_test auto_order
show orders | grep -E "^auto_orders|^topic"
say "done: flows 1, 2 and 3"

# The tutorial's own commands against Kafka Connect's REST API, served by Airflow at /airconnect
# (only the address and the auth header differ). Its two connectors have the names of the folder's
# flow-1 definitions, so for this section the services read a copy of the folder without those two
# (inventory_sync and auto_order, which name them, do not load meanwhile).
if mkdir -p /zaiko /ec 2>/dev/null && [ -w /zaiko ] && [ -w /ec ]; then
  say "The tutorial: connectors created over REST (curl -X POST .../connectors), each run by a DAG of its own"
  airconnect reset load-zaiko-data sink-zaiko-data --delete-topics
  TUTORIAL_DEFS="$AIRFLOW_HOME/tutorial-connectors"
  rm -rf "$TUTORIAL_DEFS" && mkdir -p "$TUTORIAL_DEFS"
  cp "$AIRCONNECT_CONNECTORS_DIR"/*.json "$TUTORIAL_DEFS"/
  rm -f "$TUTORIAL_DEFS/load-zaiko-data.json" "$TUTORIAL_DEFS/sink-zaiko-data.json"
  rm -f /ec/zaiko-latest.txt
  printf 'ITEM001,SHOP001,929,2018-10-01 01:01:01\nITEM002,SHOP001,480,2018-10-01 01:01:01\nITEM001,SHOP001,25,2018-10-02 02:02:02\nITEM003,SHOP001,6902,2018-10-02 02:02:02\n' >/zaiko/latest.txt
  AIRCONNECT_CONNECTORS_DIR="$TUTORIAL_DEFS" scripts/airflow-services.sh start >/dev/null
  for _ in $(seq 1 180); do
    curl -s "localhost:$AIRCONNECT_API_PORT/api/v2/monitor/health" | python -c 'import json,sys; h=json.load(sys.stdin); sys.exit(0 if all(h[k]["status"] == "healthy" for k in ("scheduler", "triggerer", "dag_processor")) else 1)' 2>/dev/null && break
    sleep 1
  done
  TOKEN=$(curl -s -X POST "localhost:$AIRCONNECT_API_PORT/auth/token" -H 'Content-Type: application/json' \
          -d '{"username": "admin", "password": "admin"}' | python -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
  API="localhost:$AIRCONNECT_API_PORT/airconnect"
  AUTH="Authorization: Bearer $TOKEN"
  echo "\$ curl $API/connector-plugins"
  curl -s -H "$AUTH" "$API/connector-plugins"; echo
  start=$(date +%s.%N)
  echo "\$ curl -X POST -H 'Content-Type: application/json' --data '{\"name\": \"load-zaiko-data\", ...}' $API/connectors"
  curl -s -H "$AUTH" -X POST -H "Content-Type: application/json" --data '{"name": "load-zaiko-data", "config": {"connector.class": "org.apache.kafka.connect.file.FileStreamSourceConnector", "file": "/zaiko/latest.txt", "topic": "zaiko-data"}}' "$API/connectors"; echo
  echo "\$ curl -X POST -H 'Content-Type: application/json' --data '{\"name\": \"sink-zaiko-data\", ...}' $API/connectors"
  curl -s -H "$AUTH" -X POST -H "Content-Type: application/json" --data '{"name": "sink-zaiko-data", "config": {"connector.class": "org.apache.kafka.connect.file.FileStreamSinkConnector", "file": "/ec/zaiko-latest.txt", "topics": "zaiko-data"}}' "$API/connectors"; echo
  echo "\$ curl $API/connectors"
  curl -s -H "$AUTH" "$API/connectors"; echo
  for _ in $(seq 1 1200); do [ -f /ec/zaiko-latest.txt ] && [ "$(wc -l </ec/zaiko-latest.txt)" -ge 4 ] && break; sleep 0.1; done
  printf '(the EC file was complete %s s after the first POST)\n' "$(python -c "print(round($(date +%s.%N) - $start, 1))")"
  echo "\$ kafka-console-consumer --bootstrap-server $AIRCONNECT_KAFKA_BOOTSTRAP --topic zaiko-data --from-beginning"
  java -cp "$AIRCONNECT_ROOT/.stack/kafka-libs/*" org.apache.kafka.tools.consumer.ConsoleConsumer \
    --bootstrap-server "$AIRCONNECT_KAFKA_BOOTSTRAP" --topic zaiko-data --from-beginning --max-messages 4 \
    --timeout-ms 30000 2>/dev/null
  echo "\$ tail -f /ec/zaiko-latest.txt   (while two lines are appended to /zaiko/latest.txt)"
  tail -n 0 -f /ec/zaiko-latest.txt & TAIL=$!
  sleep 0.5
  printf 'ITEM001,SHOP001,6090,2018-10-03 03:00:00\nITEM004,SHOP001,256,2018-10-03 03:00:00\n' >>/zaiko/latest.txt
  for _ in $(seq 1 600); do [ "$(wc -l </ec/zaiko-latest.txt)" -ge 6 ] && break; sleep 0.1; done
  sleep 0.3; kill "$TAIL"; wait "$TAIL" 2>/dev/null || true
  cmp -s /zaiko/latest.txt /ec/zaiko-latest.txt || { echo "the EC file did not catch up" >&2; exit 1; }
  for name in load-zaiko-data sink-zaiko-data; do
    echo "\$ curl -X DELETE $API/connectors/$name"
    curl -s -H "$AUTH" -X DELETE "$API/connectors/$name" -w '%{http_code}\n'
  done
  echo "\$ curl $API/connectors"
  curl -s -H "$AUTH" "$API/connectors"; echo
  scripts/airflow-services.sh stop >/dev/null
  say "done: the tutorial"
else
  say "The tutorial's REST section is skipped: /zaiko and /ec cannot be created (run the demo as root, as CI does)"
fi
