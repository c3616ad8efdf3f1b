#!/usr/bin/env bash
# 100,000 WebSocket subscribers over 6 Taskflow nodes sharing one port (SO_REUSEPORT) on this
# machine, with PostgreSQL and Redis; every subscriber must receive every event of its room, in
# order (the fanout report's lost/duplicates/out_of_order must be 0), and every one must get in
# (--max-failed 0: a 503 with Retry-After that it follows is a delay, reported, not a failure).
# A process may hold 20,000 files, so the nodes and the load generator are 6 processes each.
#
#   deploy/bench-cluster.sh [NODES] [BENCHES] [SUBSCRIBERS_PER_BENCH] [RATE_PER_BENCH] [SECONDS]
#
# Needs a release build (cargo build --release), PostgreSQL at 127.0.0.1:5432 (user postgres,
# trust) and Redis at 127.0.0.1:6379. Creates a fresh database and a fresh Redis prefix.
set -euo pipefail
cd "$(dirname "$0")/.."
nodes=${1:-6}
benches=${2:-6}
per_bench=${3:-16667}
rate=${4:-5}
seconds=${5:-20}
bin=target/release/taskflow
port=${PORT:-3900}
run=bench$(date +%s)
out=$(mktemp -d)
psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE $run"
export TASKFLOW_ADMIN_TOKEN=$run TASKFLOW_LOG_LEVEL=${TASKFLOW_LOG_LEVEL:-warn}
# The bench mints its own users (50 connections each), so the per-user limits stay at their
# defaults. Each bench process is one part of the run; `taskflow bench merge` adds them up.
export TASKFLOW_BROKER=redis://127.0.0.1:6379/ TASKFLOW_BROKER_PREFIX=$run
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $run WITH (FORCE)" || true
}
trap cleanup EXIT
for i in $(seq 1 "$nodes"); do
  "$bin" serve --listen "127.0.0.1:$port" --reuse-port --node-id "n$i" \
    --database "postgres://postgres@127.0.0.1:5432/$run" > "$out/node$i.log" 2>&1 &
  pids+=($!)
  until grep -q "listening" "$out/node$i.log"; do sleep 0.2; done
done
echo "nodes up: ${pids[*]} on 127.0.0.1:$port (logs in $out)"
bench_pids=()
for i in $(seq 1 "$benches"); do
  "$bin" bench --part "$i" fanout --target "127.0.0.1:$port" --subscribers "$per_bench" --rooms 20 \
    --rate "$rate" --duration "$seconds" --publishers 2 --sources 16 --max-failed 0 --json > "$out/bench$i.json" 2> "$out/bench$i.err" &
  bench_pids+=($!)
done
# Sample each node's open sockets while the benches run: the kernel spreads the connections.
(
  while :; do
    line=""
    for pid in "${pids[@]}"; do line="$line $(ls /proc/$pid/fd 2>/dev/null | wc -l)"; done
    echo "$(date +%T) fds per node:$line" >> "$out/fds.log"
    sleep 5
  done
) &
sampler=$!
status=0
for pid in "${bench_pids[@]}"; do wait "$pid" || status=1; done
kill "$sampler" 2>/dev/null || true
echo "busiest moment (open files per node):"
awk '{s=0; for (i=5; i<=NF; i++) s+=$i; if (s>max) {max=s; line=$0}} END {print line, "(total", max ")"}' "$out/fds.log"
python3 - "$out" "$benches" <<'PY'
import json, sys, glob
out, n = sys.argv[1], int(sys.argv[2])
tot = {"published": 0, "expected": 0, "delivered": 0, "lost": 0, "duplicates": 0, "out_of_order": 0,
       "failed_connections": 0, "delayed": 0}
for i in range(1, n + 1):
    try:
        r = json.load(open(f"{out}/bench{i}.json"))
    except Exception as e:
        print(f"bench {i}: no report ({e}); stderr: {open(f'{out}/bench{i}.err').read()[-500:]}")
        continue
    for k in tot:
        if k in r:
            tot[k] += r[k]
    print(f"bench {i}: published {r['published']} expected {r['expected']} delivered {r['delivered']} lost {r['lost']} dup {r['duplicates']} ooo {r['out_of_order']} failed {r.get('failed_connections', 0)} {r.get('failures', {})} delayed {r.get('delayed', 0)} {r.get('delays', {})} p50 {r['latency'].get('p50_ms')} p99 {r['latency'].get('p99_ms')}")
print("total:", json.dumps(tot))
PY
echo "merged report:"
"$bin" bench merge "$out"/bench*.json || status=1
exit $status
