#!/usr/bin/env bash
# Starts and stops airconnect's local stack on loopback, with data under $AIRCONNECT_STACK_DIR.
#
#   scripts/stack.sh fetch                 resolve the Kafka jars (Maven Central, or $KAFKA_HOME/libs) and Debezium's
#   scripts/stack.sh start [SERVICE...]    start services (default: all); starting twice is harmless
#   scripts/stack.sh stop  [SERVICE...]    stop services (default: all); leaves no process behind
#   scripts/stack.sh status                one line per service
#   scripts/stack.sh kill-broker N         SIGKILL Kafka broker N (reliability tests)
#
# Services: kafka, postgres, mariadb, s3, redis (the CeleryExecutor's broker). AIRCONNECT_KAFKA_BROKERS=3 starts a 3-broker KRaft cluster.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

STACK="$AIRCONNECT_STACK_DIR"
KAFKA_LIBS="${AIRCONNECT_KAFKA_LIBS:-$STACK/kafka-libs}"  # shared by a second stack folder (the broker-failure test)
DEBEZIUM_LIBS="${AIRCONNECT_DEBEZIUM_LIBS:-$STACK/debezium-libs}"  # Debezium's connectors, for the CDC comparison
# Debezium's MariaDB connector (3.5.0, its own jar set): a sibling folder, since a worker's plugin
# folder takes every jar beneath it and 3.5.0 must not mix with 3.6.1.
DEBEZIUM_MARIADB_LIBS="${AIRCONNECT_DEBEZIUM_MARIADB_LIBS:-$STACK/debezium-mariadb-libs}"
ALL_SERVICES=(kafka postgres mariadb s3 redis)

say() { printf '[stack] %s\n' "$*"; }
die() { printf '[stack] error: %s\n' "$*" >&2; exit 1; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

wait_port() { # port seconds name logfile
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    port_open "$1" && return 0
    sleep 0.1
  done
  die "$3 did not open port $1 within $2 s; see $4"
}

stop_pid() { # pidfile name
  local pidfile=$1 name=$2 pid i
  if ! pid_alive "$pidfile"; then rm -f "$pidfile"; return 0; fi
  pid=$(cat "$pidfile")
  say "stopping $name (pid $pid)"
  kill "$pid" 2>/dev/null || true
  for ((i = 0; i < 300; i++)); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$pidfile"; return 0; }
    sleep 0.1
  done
  say "$name did not stop within 30 s; killing it"
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$pidfile"
}

# ---------------------------------------------------------------- Kafka (KRaft)

fetch_kafka() {
  if [ -n "${KAFKA_HOME:-}" ]; then
    [ -d "$KAFKA_HOME/libs" ] || die "KAFKA_HOME=$KAFKA_HOME has no libs/ folder"
    return 0
  fi
  if [ -f "$KAFKA_LIBS/.complete" ] && cmp -s "$KAFKA_LIBS/.complete" "$AIRCONNECT_ROOT/scripts/kafka/pom.xml"; then
    return 0
  fi
  command -v mvn >/dev/null || die "Maven (mvn) is needed to fetch Kafka's jars: apt-get install maven, or set KAFKA_HOME to an unpacked Kafka"
  say "fetching Apache Kafka's jars from Maven Central into $KAFKA_LIBS (about 60 MB, first time only)"
  rm -rf "$KAFKA_LIBS"
  mkdir -p "$KAFKA_LIBS"
  (cd "$AIRCONNECT_ROOT/scripts/kafka" &&
    mvn -B -q -Dstyle.color=never dependency:copy-dependencies -DoutputDirectory="$KAFKA_LIBS" -DincludeScope=runtime) ||
    die "mvn could not resolve Kafka's jars (see the output above)"
  cp "$AIRCONNECT_ROOT/scripts/kafka/pom.xml" "$KAFKA_LIBS/.complete"
  say "Kafka jars ready: $(find "$KAFKA_LIBS" -name '*.jar' | wc -l) jars"
}

# Debezium's PostgreSQL and MySQL connectors (scripts/debezium/pom.xml), and its MariaDB connector
# (scripts/debezium/mariadb/pom.xml, 3.5.0: see there why), run in a Kafka Connect worker beside
# airconnect's CDC sources by the comparison tests and benchmarks. Kafka's own jars are left out
# (the worker has them). Each set is fetched again only when its pom changed.
fetch_debezium_set() { # pom-folder target what
  local pom="$1/pom.xml" target="$2"
  if [ -f "$target/.complete" ] && cmp -s "$target/.complete" "$pom"; then
    return 0
  fi
  command -v mvn >/dev/null || die "Maven (mvn) is needed to fetch Debezium's jars: apt-get install maven"
  say "fetching Debezium's $3 from Maven Central into $target (about 25 MB, first time only)"
  rm -rf "$target"
  mkdir -p "$target"
  (cd "$1" &&
    mvn -B -q -Dstyle.color=never dependency:copy-dependencies -DoutputDirectory="$target" \
      -DincludeScope=runtime -DexcludeGroupIds=org.apache.kafka) ||
    die "mvn could not resolve Debezium's jars (see the output above)"
  cp "$pom" "$target/.complete"
  say "Debezium jars ready: $(find "$target" -name '*.jar' | wc -l) jars in $target"
}

fetch_debezium() {
  fetch_debezium_set "$AIRCONNECT_ROOT/scripts/debezium" "$DEBEZIUM_LIBS" "PostgreSQL and MySQL connectors"
  fetch_debezium_set "$AIRCONNECT_ROOT/scripts/debezium/mariadb" "$DEBEZIUM_MARIADB_LIBS" "MariaDB connector"
}

kafka_classpath() {
  if [ -n "${KAFKA_HOME:-}" ]; then echo "$KAFKA_HOME/libs/*"; else echo "$KAFKA_LIBS/*"; fi
}

check_java() {
  command -v java >/dev/null || die "Java 17 or newer is needed to run Kafka: apt-get install openjdk-17-jre-headless"
  local v
  v=$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1)
  [ -n "$v" ] && [ "$v" -ge 17 ] || die "Kafka 4 needs Java 17 or newer; 'java -version' says $v"
}

kafka_broker_port() { echo $((AIRCONNECT_KAFKA_PORT + ($1 - 1) * 2)); }
kafka_controller_port() { echo $((AIRCONNECT_KAFKA_PORT + ($1 - 1) * 2 + 1)); }

kafka_write_config() { # node count dir
  local n=$1 count=$2 dir=$3 voters="" i rf=1 isr=1
  for ((i = 1; i <= count; i++)); do
    voters+="${voters:+,}$i@127.0.0.1:$(kafka_controller_port "$i")"
  done
  if [ "$count" -ge 3 ]; then rf=3; isr=2; fi
  cat >"$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=$n
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:$(kafka_broker_port "$n"),CONTROLLER://127.0.0.1:$(kafka_controller_port "$n")
advertised.listeners=PLAINTEXT://127.0.0.1:$(kafka_broker_port "$n")
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$dir/data
num.partitions=1
default.replication.factor=$rf
min.insync.replicas=$isr
offsets.topic.replication.factor=$rf
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$isr
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$isr
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
message.max.bytes=16777216
replica.fetch.max.bytes=16777216
log.retention.hours=-1
PROPS
  cat >"$dir/log4j2.properties" <<'PROPS'
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = ${sys:kafka.logs.dir}/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = info
logger.state.name = state.change.logger
logger.state.level = warn
PROPS
}

start_kafka() {
  check_java
  fetch_kafka
  local count=$AIRCONNECT_KAFKA_BROKERS n dir port cp cluster_id
  [ "$count" = 1 ] || [ "$count" = 3 ] || die "AIRCONNECT_KAFKA_BROKERS must be 1 or 3, not '$count'"
  cp=$(kafka_classpath)
  mkdir -p "$STACK/kafka"
  # A cluster's shape is fixed when its storage is formatted: a different broker count starts afresh.
  if [ -f "$STACK/kafka/brokers" ] && [ "$(cat "$STACK/kafka/brokers")" != "$count" ]; then
    if ls "$STACK"/kafka/node*/pid >/dev/null 2>&1 && pid_alive "$(ls "$STACK"/kafka/node*/pid | head -1)"; then
      die "a $(cat "$STACK/kafka/brokers")-broker cluster is running; stop it first (scripts/stack.sh stop kafka)"
    fi
    say "broker count changed to $count: formatting a new cluster"
    rm -rf "$STACK"/kafka/node*
  fi
  echo "$count" >"$STACK/kafka/brokers"
  if [ ! -f "$STACK/kafka/cluster.id" ]; then
    java -cp "$cp" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -1 >"$STACK/kafka/cluster.id"
  fi
  cluster_id=$(cat "$STACK/kafka/cluster.id")
  for ((n = 1; n <= count; n++)); do
    dir="$STACK/kafka/node$n"
    port=$(kafka_broker_port "$n")
    mkdir -p "$dir/logs"
    if pid_alive "$dir/pid"; then
      say "kafka broker $n already running (pid $(cat "$dir/pid"), port $port)"
      continue
    fi
    for p in "$port" "$(kafka_controller_port "$n")"; do
      port_open "$p" && die "port $p is busy, so Kafka broker $n cannot start. Stop whatever listens there, or choose other ports with AIRCONNECT_KAFKA_PORT=<port>"
    done
    kafka_write_config "$n" "$count" "$dir"
    if [ ! -f "$dir/data/meta.properties" ]; then
      java -cp "$cp" -Dlog4j2.configurationFile="$dir/log4j2.properties" -Dkafka.logs.dir="$dir/logs" \
        kafka.tools.StorageTool format -t "$cluster_id" -c "$dir/server.properties" >"$dir/logs/format.log" 2>&1 ||
        die "formatting Kafka storage failed; see $dir/logs/format.log"
    fi
    say "starting kafka broker $n on 127.0.0.1:$port (KRaft, data in $dir/data)"
    nohup java -Xms256m -Xmx${AIRCONNECT_KAFKA_HEAP:-768m} -XX:+UseG1GC -Djava.awt.headless=true \
      -Dlog4j2.configurationFile="$dir/log4j2.properties" -Dkafka.logs.dir="$dir/logs" \
      -cp "$cp" kafka.Kafka "$dir/server.properties" >"$dir/logs/stdout.log" 2>&1 &
    echo $! >"$dir/pid"
  done
  for ((n = 1; n <= count; n++)); do
    wait_port "$(kafka_broker_port "$n")" 90 "kafka broker $n" "$STACK/kafka/node$n/logs/server.log"
  done
  say "kafka ready: $AIRCONNECT_KAFKA_BOOTSTRAP"
}

stop_kafka() {
  local d
  for d in "$STACK"/kafka/node*; do
    [ -d "$d" ] || continue
    stop_pid "$d/pid" "kafka broker ${d##*node}"
  done
}

kill_broker() {
  local pidfile="$STACK/kafka/node$1/pid"
  pid_alive "$pidfile" || die "kafka broker $1 is not running"
  kill -9 "$(cat "$pidfile")"
  rm -f "$pidfile"
  say "killed kafka broker $1"
}

status_kafka() {
  local d found=0
  for d in "$STACK"/kafka/node*; do
    [ -d "$d" ] || continue
    found=1
    if pid_alive "$d/pid"; then
      say "kafka broker ${d##*node}: running (pid $(cat "$d/pid"))"
    else
      say "kafka broker ${d##*node}: stopped"
    fi
  done
  [ $found = 1 ] || say "kafka: not set up"
}

# ---------------------------------------------------------------- other services

for lib in "$AIRCONNECT_ROOT"/scripts/stack.d/*.sh; do
  [ -f "$lib" ] && source "$lib"
done

have_service() { declare -F "start_$1" >/dev/null; }

services_from_args() {
  if [ $# -eq 0 ]; then
    for s in "${ALL_SERVICES[@]}"; do have_service "$s" && echo "$s"; done
  else
    for s in "$@"; do
      have_service "$s" || die "unknown service '$s' (known: ${ALL_SERVICES[*]})"
      echo "$s"
    done
  fi
}

cmd=${1:-}
shift || true
case "$cmd" in
  fetch) fetch_kafka; fetch_debezium ;;
  start) for s in $(services_from_args "$@"); do "start_$s"; done ;;
  stop)
    svcs=$(services_from_args "$@")
    for s in $(echo "$svcs" | tac); do "stop_$s"; done
    ;;
  restart)
    svcs=$(services_from_args "$@")
    for s in $(echo "$svcs" | tac); do "stop_$s"; done
    for s in $svcs; do "start_$s"; done
    ;;
  status) for s in $(services_from_args); do "status_$s"; done ;;
  kill-broker) kill_broker "${1:?broker number}" ;;
  *)
    sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
