#!/usr/bin/env bash
# Does the server's memory come back? Repeated churn runs against one server:
#   scripts/churn-memory.sh [RUNS] [RATE] [DURATION]     # default 4 runs, 1000/s, 40 s each
# Prints, per run, the server's RSS after the warm-up and after the run (both idle), and at the
# end what the hub and dispatcher hold (from /metrics). With HEAPTRACK=1 the server runs under
# heaptrack and is killed (SIGKILL) right after the last run, so that what heaptrack reports as
# "leaked" is exactly what was live then (a clean stop would free most of it first):
#   HEAPTRACK=1 scripts/churn-memory.sh 4 500 15
#   heaptrack_print -f target/churn-memory/heaptrack.*.zst --print-leaks 1
# Whether memory piles up with churn: profile one run and four runs, each into its own folder
# (OUT, default target/churn-memory), and diff what was live at the end:
#   OUT=target/heap-1 HEAPTRACK=1 scripts/churn-memory.sh 1 500 15
#   OUT=target/heap-4 HEAPTRACK=1 scripts/churn-memory.sh 4 500 15
#   heaptrack_print -f target/heap-4/heaptrack.*.zst -d target/heap-1/heaptrack.*.zst --print-leaks 1
# BIN picks the binary (default target/profiling/taskflow, `cargo build --profile profiling`: it
# has the symbols heaptrack needs to name allocation sites). Loopback only; bounded in time.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-4}
rate=${2:-1000}
duration=${3:-40}
bin=${BIN:-target/profiling/taskflow}
out=${OUT:-target/churn-memory}
mkdir -p "$out"
ulimit -n 20000
token=churn-$RANDOM$RANDOM
port=$((20000 + RANDOM % 10000)) # below the ephemeral range the bench's own sockets use
db_dir=$(mktemp -d)
server_pid=
wrapper_pid=
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; fi
  if [ -n "$wrapper_pid" ]; then wait "$wrapper_pid" 2>/dev/null || true; fi
  rm -rf "$db_dir"
}
trap cleanup EXIT

serve=("$bin" serve --database "sqlite://$db_dir/churn.db" --listen "127.0.0.1:$port")
if [ "${HEAPTRACK:-0}" = 1 ]; then
  rm -f "$out"/heaptrack.*
  TASKFLOW_ADMIN_TOKEN=$token TASKFLOW_LOG_LEVEL=warn \
    heaptrack -o "$out/heaptrack.taskflow" "${serve[@]}" >"$out/server.log" 2>&1 &
else
  TASKFLOW_ADMIN_TOKEN=$token TASKFLOW_LOG_LEVEL=warn "${serve[@]}" >"$out/server.log" 2>&1 &
fi
wrapper_pid=$!
for _ in $(seq 300); do curl -sf "127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
curl -sf "127.0.0.1:$port/healthz" >/dev/null || { echo "server did not start" >&2; exit 1; }
# The server itself (under heaptrack, a child of its script): the process listening on the port.
server_pid=$(pgrep -f -- "--listen 127.0.0.1:$port" | while read -r p; do
  [ "$(readlink "/proc/$p/exe")" = "$(readlink -f "$bin")" ] && echo "$p"; done | head -1)
[ -n "$server_pid" ] || { echo "server pid not found" >&2; exit 1; }

rss() { awk '/^VmRSS/ {print $2}' "/proc/$server_pid/status"; }
echo "server pid $server_pid, RSS at start $(rss) kB"
for run in $(seq "$runs"); do
  TASKFLOW_ADMIN_TOKEN=$token "$bin" bench --target "127.0.0.1:$port" --server-pid "$server_pid" \
    --sources 16 --json churn --rate "$rate" --duration "$duration" --warmup 5 --concurrency 200 \
    >"$out/run-$run.json" 2>/dev/null
  jq -r --arg run "$run" '"run \($run): \(.cycles) cycles, \(.errors) errors; RSS baseline \(.baseline.rss_bytes / 1e6 * 100 | round / 100) MB, after \(.after.rss_bytes / 1e6 * 100 | round / 100) MB (\(.rss_change_pct * 100 | round / 100)%)"' \
    "$out/run-$run.json" 2>/dev/null || cat "$out/run-$run.json"
done
sleep 2 # the gauges are set once a second
curl -sf "127.0.0.1:$port/metrics" | grep -E '^(ws_connections|hub_rooms|hub_users|hub_dispatcher_rooms) ' || true
if [ "${HEAPTRACK:-0}" = 1 ]; then
  kill -KILL "$server_pid"
  server_pid=
  wait "$wrapper_pid" 2>/dev/null || true
  wrapper_pid=
  ls "$out"/heaptrack.*
fi
