#!/usr/bin/env python3
"""Medians of the runs scripts/bench-all.sh saved: one line per scenario and figure."""
import json, pathlib, statistics, sys

FIGURES = {
    "connections": [("opened", "opened"), ("rss_per_connection", "RSS/conn B"), ("connect.p99_ms", "connect p99 ms")],
    "fanout": [("failed_connections", "failed to connect"), ("delayed", "delayed (503 followed)"), ("published", "published"), ("publish_errors", "publish errors"), ("delivered", "delivered"), ("lost", "lost"), ("duplicates", "dup"), ("out_of_order", "ooo"),
               ("disconnected", "closed"), ("events_per_sec_per_subscriber", "events/s"),
               ("delivered_per_sec", "deliveries/s"), ("latency.p50_ms", "p50 ms"), ("latency.p99_ms", "p99 ms"),
               ("latency.max_ms", "max ms"), ("server_cpu_us_per_delivery", "CPU us/delivery"),
               ("compressed_subscribers", "compressed subs"), ("wire_bytes_per_delivery", "wire B/delivery")],
    "churn": [("cycles", "cycles"), ("errors", "errors"), ("cycles_per_sec", "cycles/s"),
              ("rss_change_pct", "RSS change %")],
    "storm": [("connect.subscribed_s", "connect s"), ("storm.clients", "resumed"),
              ("storm.subscribed_s", "all subscribed s"), ("storm.caught_up_s", "all caught up s"),
              ("storm.caught_up.p99_ms", "caught up p99 ms"), ("storm.recovered_false", "not recovered"),
              ("failed_connections", "failed"), ("delayed", "delayed (503 followed)"),
              ("lost", "lost"), ("duplicates", "dup"), ("out_of_order", "ooo"),
              ("db_queries_per_connection", "DB queries/conn")],
}

def get(report, path):
    for key in path.split("."):
        report = report.get(key) if isinstance(report, dict) else None
    return report

out = pathlib.Path(sys.argv[1])
runs = {}
for f in sorted(out.glob("*.json")):
    name = f.stem.rsplit("-", 1)[0]
    try:
        runs.setdefault(name, []).append(json.loads(f.read_text()))
    except json.JSONDecodeError:
        print(f"{f.name}: not a report (run failed or still running)", file=sys.stderr)
for name, reports in runs.items():
    kind = reports[0]["scenario"]
    cells = []
    for path, label in FIGURES[kind]:
        values = [v for v in (get(r, path) for r in reports) if isinstance(v, (int, float))]
        if values:
            m = statistics.median(values)
            cells.append(f"{label}={m:.3g}" if isinstance(m, float) else f"{label}={m}")
    print(f"{name} (median of {len(reports)}): " + ", ".join(cells))
