#!/usr/bin/env bash
# One-time (and repeatable) set-up of a development machine: Debian packages, the project's
# virtualenv with Airflow and the providers, Kafka's jars, and Airflow's SQLite database.
# Safe to run again: each step skips what is already there.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$AIRCONNECT_ROOT"
say() { printf '[setup] %s\n' "$*"; }

# Debian packages: Java for Kafka, Maven to fetch its jars, the database servers, what
# mysqlclient needs to build, Chromium for the UI test, a Japanese font for the forecast charts,
# PostgreSQL's wal2json output plugin for change data capture, and javac for the test that runs
# Kafka Connect's own transforms (tests/smt/SmtHarness.java).
DEB_PACKAGES=(openjdk-17-jre-headless openjdk-17-jdk-headless maven postgresql "postgresql-$(ls /usr/lib/postgresql 2>/dev/null | sort -V | tail -1 || echo 15)-wal2json" mariadb-server mariadb-client libmariadb-dev redis-server pkg-config gcc python3-venv chromium fonts-ipafont-gothic)
missing=()
for p in "${DEB_PACKAGES[@]}"; do
  case "$p" in
    openjdk-17-jre-headless) command -v java >/dev/null && continue ;;
    openjdk-17-jdk-headless) command -v javac >/dev/null && continue ;;
    maven) command -v mvn >/dev/null && continue ;;
    postgresql) ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && continue ;;
    python3-venv) python3 -c 'import ensurepip, venv' 2>/dev/null && continue ;;
    chromium) command -v chromium >/dev/null && continue ;;
  esac
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ] && ! command -v sudo >/dev/null; then
    say "missing Debian packages: ${missing[*]}; install them as root (apt-get install ${missing[*]})"
    exit 1
  fi
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  say "installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # The Debian packages may start system services; the stack runs its own, on its own ports.
  for svc in mariadb postgresql; do $SUDO service "$svc" stop >/dev/null 2>&1 || true; done
fi

# Python: a project-local virtualenv; uv makes the Airflow install take seconds, not minutes.
if [ ! -x .venv/bin/python ]; then
  say "creating the virtualenv .venv ($(python3 --version))"
  python3 -m venv .venv
fi
if [ ! -x .venv/bin/uv ]; then .venv/bin/pip install -q uv; fi
stamp=.venv/.airconnect-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  say "installing airconnect and its dependencies (Airflow 3, providers, confluent-kafka) into .venv"
  .venv/bin/uv pip install -q --python .venv/bin/python -e ".[retail,test]"
  touch "$stamp"
fi

# Kafka's jars from Maven Central (or $KAFKA_HOME).
scripts/stack.sh fetch

# Airflow's metadata database (SQLite in $AIRFLOW_HOME).
mkdir -p "$AIRFLOW_HOME" "$AIRCONNECT_DATA_DIR"
[ -f "$AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE" ] || echo '{"admin": "admin"}' >"$AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"
say "migrating Airflow's database in $AIRFLOW_HOME"
.venv/bin/airflow db migrate >"$AIRFLOW_HOME/db-migrate.log" 2>&1 || { tail -20 "$AIRFLOW_HOME/db-migrate.log"; exit 1; }
say "ready"
