#!/usr/bin/env bash
# Every figure of docs/performance.md, from one command:
#   scripts/bench-all.sh [ROUNDS] [OUTDIR]
# Builds the release binary, then for each scenario starts a fresh server on a new SQLite file
# pinned to core 0 and runs `taskflow bench` pinned to core 1, ROUNDS times (default 3). Each
# run's JSON report goes to OUTDIR (default target/bench-results/<time>); a summary of medians is
# printed at the end (scripts/bench-summary.py). Loopback only; every run is bounded in time.
# The tls-* scenarios repeat the idle and fan-out figures over wss://, with a CA and a server
# certificate made by openssl for the run. ONLY=PATTERN runs only the scenarios whose name
# matches (a bash extended glob, e.g. ONLY='tls-*' or ONLY='@(idle-19k|tls-idle-19k)').
set -euo pipefail
shopt -s extglob # ONLY may be an extended glob: ONLY="@(idle-19k|tls-*)"
cd "$(dirname "$0")/.."
rounds=${1:-3}
out=${2:-target/bench-results/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out"
cargo build --release --quiet
bin=$PWD/target/release/taskflow
ulimit -n 20000 # the hard limit on these machines; the server and the bench each need ~19,000
token=bench-$RANDOM$RANDOM
port=$((20000 + RANDOM % 10000)) # below the ephemeral range (32768+), which the bench's own sockets use
db_dir=$(mktemp -d)
server_pid=
# A private CA and a certificate for 127.0.0.1 (ECDSA P-256, as an ACME client issues by default).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=bench-ca \
  -keyout "$db_dir/ca.key" -out "$db_dir/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=127.0.0.1 \
  -keyout "$db_dir/key.pem" -out "$db_dir/req.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\n' >"$db_dir/ext.cnf"
openssl x509 -req -in "$db_dir/req.csr" -CA "$db_dir/ca.pem" -CAkey "$db_dir/ca.key" -CAcreateserial \
  -days 2 -extfile "$db_dir/ext.cnf" -out "$db_dir/cert.pem" 2>/dev/null
tls_server_env="TASKFLOW_TLS_CERT=$db_dir/cert.pem TASKFLOW_TLS_KEY=$db_dir/key.pem"
stop_server() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  server_pid=
}

pg_db=
drop_pg() {
  if [ -n "$pg_db" ]; then psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $pg_db WITH (FORCE)" || true; fi
  pg_db=
}
trap 'stop_server; drop_pg; rm -rf "$db_dir"' EXIT

start_server() {
  stop_server
  rm -f "$db_dir"/bench.db*
  local database="sqlite://$db_dir/bench.db"
  if [ "${SERVER_DB:-sqlite}" = postgres ]; then
    # A fresh database per run, on the PostgreSQL that scripts/test.sh starts (127.0.0.1:5432).
    drop_pg
    pg_db=bench_$RANDOM$RANDOM
    psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE $pg_db"
    database="postgres://postgres@127.0.0.1:5432/$pg_db"
  fi
  TASKFLOW_ADMIN_TOKEN=$token TASKFLOW_LOG_LEVEL=warn env ${SERVER_ENV:-} \
    taskset -c 0 "$bin" serve --database "$database" --listen "127.0.0.1:$port" \
    >"$out/server.log" 2>&1 &
  server_pid=$!
  local scheme=http
  case "${SERVER_ENV:-}" in *TASKFLOW_TLS_CERT*) scheme=https ;; esac
  for _ in $(seq 100); do
    curl -sf --cacert "$db_dir/ca.pem" "$scheme://127.0.0.1:$port/healthz" >/dev/null && return
    sleep 0.1
  done
  echo "server did not start" >&2; exit 1
}

bench() { # name, then bench arguments; the server gets $SERVER_ENV (VAR=value ...) if set
  local name=$1; shift
  # shellcheck disable=SC2053 # ONLY is a glob on purpose
  [[ $name == ${ONLY:-*} ]] || return 0
  for round in $(seq "$rounds"); do
    start_server
    echo "== $name (round $round of $rounds)" >&2
    TASKFLOW_ADMIN_TOKEN=$token taskset -c 1 "$bin" bench --target "127.0.0.1:$port" \
      --server-pid "$server_pid" --sources 16 --json --plot "$out/$name-$round.svg" "$@" \
      >"$out/$name-$round.json"
  done
}

bench idle-19k connections --count 19000 --rate 2000 --concurrency 200 --hold 5
bench fanout-10k-5 fanout --subscribers 10000 --rooms 1 --rate 5 --duration 20
bench fanout-10k-20 fanout --subscribers 10000 --rooms 1 --rate 20 --duration 20
bench fanout-10k-saturation fanout --subscribers 10000 --rooms 1 --rate 0 --publishers 64 --duration 15
bench fanout-1k-50 fanout --subscribers 1000 --rooms 1 --rate 50 --duration 20
bench rest-writes fanout --subscribers 0 --rate 0 --publishers 64 --duration 10
# The same two fan-outs with connection tasks sharing the request runtime (ws_threads = 0).
SERVER_ENV=TASKFLOW_WS_THREADS=0 bench shared-10k-20 fanout --subscribers 10000 --rooms 1 --rate 20 --duration 20
SERVER_ENV=TASKFLOW_WS_THREADS=0 bench shared-10k-saturation fanout --subscribers 10000 --rooms 1 --rate 0 --publishers 64 --duration 15
bench churn-1000 churn --rate 1000 --duration 60 --warmup 5 --concurrency 200
# A reconnect storm: 19,000 clients connect at once, then all drop and resume at once under load.
bench storm-19k storm --clients 19000 --rooms 20 --rate 20
# The same on PostgreSQL (a fresh database per run).
SERVER_DB=postgres bench storm-19k-pg storm --clients 19000 --rooms 20 --rate 20
# Over TLS: the same idle connections and 10,000-subscriber fan-outs, the bench trusting the CA.
SERVER_ENV=$tls_server_env bench tls-idle-19k --ca-cert "$db_dir/ca.pem" connections --count 19000 --rate 2000 --concurrency 200 --hold 5
SERVER_ENV=$tls_server_env bench tls-fanout-10k-20 --ca-cert "$db_dir/ca.pem" fanout --subscribers 10000 --rooms 1 --rate 20 --duration 20
SERVER_ENV=$tls_server_env bench tls-fanout-10k-saturation --ca-cert "$db_dir/ca.pem" fanout --subscribers 10000 --rooms 1 --rate 0 --publishers 64 --duration 15
# Compressed broadcast (permessage-deflate): the bench offers it, the server accepts it. The same
# scenarios as above, to compare on the same day (docs/performance.md, "Compressed broadcast").
deflate_env=TASKFLOW_WS_COMPRESSION=on
SERVER_ENV=$deflate_env bench deflate-idle-19k connections --count 19000 --rate 2000 --concurrency 200 --hold 5
SERVER_ENV=$deflate_env bench deflate-10k-5 fanout --subscribers 10000 --rooms 1 --rate 5 --duration 20
SERVER_ENV=$deflate_env bench deflate-10k-saturation fanout --subscribers 10000 --rooms 1 --rate 0 --publishers 64 --duration 15
# At saturation the compressed server accepts events faster than the plain one (it writes 40%
# fewer bytes) and outruns the single bench core, which then falls behind and is cut as a slow
# consumer: the CPU per delivery is compared at 250 events/s (2.5M deliveries/s), which both
# sustain on these two cores.
bench fanout-10k-250 fanout --subscribers 10000 --rooms 1 --rate 250 --publishers 64 --duration 15
SERVER_ENV=$deflate_env bench deflate-10k-250 fanout --subscribers 10000 --rooms 1 --rate 250 --publishers 64 --duration 15
# Realistic tasks (a title, a few sentences of description, a priority), plain and compressed.
bench realistic-10k-5 fanout --payload realistic --subscribers 10000 --rooms 1 --rate 5 --duration 20
SERVER_ENV=$deflate_env bench deflate-realistic-10k-5 fanout --payload realistic --subscribers 10000 --rooms 1 --rate 5 --duration 20
stop_server
python3 scripts/bench-summary.py "$out"
