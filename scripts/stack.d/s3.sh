# shellcheck shell=bash
# S3 for the local stack: moto's server (sourced by scripts/stack.sh; defines functions only).
# Listens on 127.0.0.1:$AIRCONNECT_S3_PORT; pid file and log in $STACK/s3. moto keeps objects in
# memory, so a restart empties it; the bucket airconnect-forecast is (re)created on every start.

s3_dir() { echo "$STACK/s3"; }

s3_python() { echo "$AIRCONNECT_ROOT/.venv/bin/python"; }

start_s3() {
  local dir port=$AIRCONNECT_S3_PORT moto py pid i
  dir=$(s3_dir)
  moto="$AIRCONNECT_ROOT/.venv/bin/moto_server"
  py=$(s3_python)
  [ -x "$moto" ] && [ -x "$py" ] ||
    die "$moto is missing: create the virtualenv and install moto's server (python -m venv .venv && .venv/bin/pip install 'moto[server]' boto3)"
  if pid_alive "$dir/moto.pid"; then
    say "s3 already running (pid $(cat "$dir/moto.pid"), port $port)"
    return 0
  fi
  port_open "$port" && die "port $port is busy, so the S3 server (moto) cannot start. Stop whatever listens there, or choose another port with AIRCONNECT_S3_PORT=<port>"
  mkdir -p "$dir"
  say "starting s3 (moto) on 127.0.0.1:$port"
  nohup "$moto" -H 127.0.0.1 -p "$port" >"$dir/moto.log" 2>&1 &
  pid=$!
  echo "$pid" >"$dir/moto.pid"
  for ((i = 0; i < 300; i++)); do
    kill -0 "$pid" 2>/dev/null || die "moto_server exited while starting; see $dir/moto.log"
    port_open "$port" && break
    sleep 0.1
  done
  wait_port "$port" 1 s3 "$dir/moto.log"
  AIRCONNECT_S3_ENDPOINT="http://127.0.0.1:$port" "$py" - >>"$dir/moto.log" 2>&1 <<'PY' ||
import os, time
import boto3
from botocore.config import Config

s3 = boto3.client(
    "s3",
    endpoint_url=os.environ["AIRCONNECT_S3_ENDPOINT"],
    aws_access_key_id="airconnect",
    aws_secret_access_key="airconnect-secret",
    region_name="us-east-1",
    config=Config(retries={"max_attempts": 1}),
)
for attempt in range(50):
    try:
        s3.list_buckets()
        break
    except Exception:
        time.sleep(0.2)
try:
    s3.create_bucket(Bucket="airconnect-forecast")
except s3.exceptions.BucketAlreadyOwnedByYou:
    pass
s3.head_bucket(Bucket="airconnect-forecast")
PY
    die "moto answers on port $port but the bucket airconnect-forecast could not be created; see $dir/moto.log"
  say "s3 ready: http://127.0.0.1:$port (bucket airconnect-forecast; key airconnect / airconnect-secret, region us-east-1)"
}

stop_s3() {
  stop_pid "$(s3_dir)/moto.pid" s3
}

status_s3() {
  local dir
  dir=$(s3_dir)
  if pid_alive "$dir/moto.pid"; then
    say "s3: running (pid $(cat "$dir/moto.pid"), port $AIRCONNECT_S3_PORT)"
  elif [ -d "$dir" ]; then
    say "s3: stopped"
  else
    say "s3: not set up"
  fi
}
