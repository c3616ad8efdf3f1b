#!/usr/bin/env bash
# A node drained under load: 3 Taskflow nodes share one port (SO_REUSEPORT) on PostgreSQL and
# Redis; `taskflow bench storm --mode drain` connects CLIENTS clients through the shared port,
# publishes RATE events/s, and sends SIGTERM to node 1. Its clients, closed with 1001, reconnect
# to the same port, land on the two nodes left and resume there. The report says how long until
# the last of them was caught up (storm.caught_up_s), and lost/duplicates/out_of_order (must be 0).
#
#   deploy/storm-drain.sh [CLIENTS] [RATE] [ROOMS]
#
# Needs a release build (cargo build --release), PostgreSQL at 127.0.0.1:5432 (user postgres,
# trust) and Redis at 127.0.0.1:6379. Creates a fresh database and a fresh Redis prefix. One bench
# process holds up to about 19,000 clients (20,000 open files); so does each node.
set -euo pipefail
cd "$(dirname "$0")/.."
clients=${1:-15000}
rate=${2:-20}
rooms=${3:-20}
bin=target/release/taskflow
port=${PORT:-3910}
run=storm$(date +%s)
out=$(mktemp -d)
ulimit -n 20000 2>/dev/null || true
psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE $run"
export TASKFLOW_ADMIN_TOKEN=$run TASKFLOW_LOG_LEVEL=${TASKFLOW_LOG_LEVEL:-warn}
export TASKFLOW_BROKER=redis://127.0.0.1:6379/ TASKFLOW_BROKER_PREFIX=$run
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $run WITH (FORCE)" || true
  redis-cli -h 127.0.0.1 -p 6379 --scan --pattern "$run:*" | xargs -r redis-cli -h 127.0.0.1 -p 6379 del >/dev/null || true
}
trap cleanup EXIT
for i in 1 2 3; do
  "$bin" serve --listen "127.0.0.1:$port" --reuse-port --node-id "n$i" \
    --database "postgres://postgres@127.0.0.1:5432/$run" > "$out/node$i.log" 2>&1 &
  pids+=($!)
  until grep -q "listening" "$out/node$i.log"; do sleep 0.2; done
done
echo "nodes up: ${pids[*]} on 127.0.0.1:$port (logs in $out); draining n1 (${pids[0]})"
status=0
"$bin" bench --target "127.0.0.1:$port" --sources 16 --json \
  storm --clients "$clients" --rooms "$rooms" --rate "$rate" --mode drain --drain-pid "${pids[0]}" \
  > "$out/storm.json" 2> "$out/storm.err" || status=$?
tail -n 5 "$out/storm.err" >&2
python3 - "$out/storm.json" <<'PY' || status=1
import json, sys
r = json.load(open(sys.argv[1]))
s = r["storm"]
print(f"clients {r['clients']}, of them on the drained node {s['clients']}")
print(f"all resumed {s['subscribed_s']:.2f} s, all caught up {s['caught_up_s']:.2f} s after SIGTERM "
      f"(caught up p50 {s['caught_up']['p50_ms']:.0f} ms, p99 {s['caught_up']['p99_ms']:.0f} ms); "
      f"not caught up {s['not_caught_up']}, recovered false {s['recovered_false']}, replayed {s['replayed']}")
print(f"failed {r['failed_connections']} {s['failures']}, delayed {s['delayed']} {s['delays']}, retried {s['retried']}")
print(f"published {r['published']}, lost {r['lost']}, duplicates {r['duplicates']}, out of order {r['out_of_order']}")
print(f"DB queries per (re)connection {r['db_queries_per_connection']} (nodes {s['db']['nodes']})")
sys.exit(0 if r["lost"] == r["duplicates"] == r["out_of_order"] == 0 and r["failed_connections"] == 0 else 1)
PY
echo "report: $out/storm.json"
exit $status
