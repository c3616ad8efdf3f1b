#!/usr/bin/env bash
# The tutorial's `bash scripts/full-demo.sh`: runs `taskflow demo` with the arguments given.
#
#   bash scripts/full-demo.sh                                  # against a server of its own
#   bash scripts/full-demo.sh --target http://127.0.0.1:3000   # against a running server
#                                                              # (TASKFLOW_ADMIN_TOKEN set)
#
# With cargo it runs `cargo run --release -- demo`, which rebuilds the binary first if the
# sources changed; without cargo, the release binary already built (target/release/taskflow, or
# under $CARGO_TARGET_DIR). The exit status is the demo's: non-zero if any chapter did not behave
# as it says.
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v cargo >/dev/null; then
  exec cargo run --release --quiet -- demo "$@"
fi
binary="${CARGO_TARGET_DIR:-target}/release/taskflow"
if [ -x "$binary" ]; then
  exec "$binary" demo "$@"
fi
echo "full-demo.sh: neither cargo nor $binary found; build with: cargo build --release" >&2
exit 1
