#!/usr/bin/env bash
# The whole test suite on any machine, fresh or not: installs and starts what the tests need
# (each step is skipped when it is already there), then runs `cargo test --workspace` and ends
# with one total, `summary: N passed, N failed`, and cargo's exit status.
#
#   scripts/test.sh              install what is missing, then run the suite
#   scripts/test.sh --deps-only  only install and start what the suite needs
#
# What the suite needs: PostgreSQL at 127.0.0.1:5432 (postgres without a password), Redis at
# 127.0.0.1:6379 and the redis-server binary, nginx, Python 3 with `websockets`, schemathesis and
# openapi-spec-validator, Chromium, and
# node/npm with `npm ci` in tests/browser and tests/contract. Installing uses apt-get (Debian/Ubuntu) and so needs
# root; on a machine that has everything, nothing is installed and no root is needed.
set -euo pipefail
cd "$(dirname "$0")/.."

deps_only=0
case "${1:-}" in
  --deps-only) deps_only=1 ;;
  "") ;;
  *) echo "usage: scripts/test.sh [--deps-only]" >&2; exit 2 ;;
esac

log() { printf '\n== %s\n' "$*"; }

apt_updated=0
apt_install() {
  if [ "$apt_updated" = 0 ]; then apt-get update -qq; apt_updated=1; fi
  echo "installing: $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

log "PostgreSQL at 127.0.0.1:5432"
if ! command -v pg_ctlcluster >/dev/null 2>&1; then
  apt_install postgresql
  # The tests connect as postgres over TCP without a password, as on the project's machines.
  for hba in /etc/postgresql/*/main/pg_hba.conf; do
    sed -i -E 's/^(host\s+all\s+all\s+(127\.0\.0\.1\/32|::1\/128)\s+)\S+/\1trust/' "$hba"
  done
fi
if ! pg_isready -h 127.0.0.1 -p 5432 -q; then
  for version in $(ls /etc/postgresql); do
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  done
  for _ in $(seq 1 30); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 1; done
fi
pg_isready -h 127.0.0.1 -p 5432

log "Redis at 127.0.0.1:6379 (the cluster tests' broker; one test also runs its own redis-server)"
if ! command -v redis-server >/dev/null 2>&1; then
  apt_install redis-server
fi
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  for _ in $(seq 1 30); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 1; done
fi
redis-cli -h 127.0.0.1 -p 6379 ping

log "nginx (the cluster tests' load balancer; run by the test itself, not as a service)"
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
  apt_install nginx
fi
PATH="$PATH:/usr/sbin" nginx -v

log "Python websockets (a WebSocket client not written in Rust, for one test)"
if ! python3 -c 'import websockets' >/dev/null 2>&1; then
  command -v python3 >/dev/null 2>&1 || apt_install python3 python3-pip
  python3 -m pip install --quiet websockets || apt_install python3-websockets
fi
python3 -c 'import websockets; print("websockets", websockets.__version__)'

log "schemathesis and openapi-spec-validator (the contract test of /openapi.json, tests/contract.rs)"
# Pinned: a new schemathesis release may add checks, and the contract run must be the same run
# on every machine until someone raises the pin on purpose.
if ! schemathesis --version 2>/dev/null | grep -q "4.32.5" ||
  ! python3 -c 'import openapi_spec_validator' >/dev/null 2>&1; then
  python3 -m pip install --quiet "schemathesis==4.32.5" "openapi-spec-validator==0.9.0"
fi
schemathesis --version

log "Chromium, playwright-core and axe-core (browser tests of web/taskflow.js and the board)"
if [ ! -x /usr/bin/chromium ]; then
  apt_install chromium
fi
dpkg-query -W chromium 2>/dev/null || echo "chromium: $(command -v chromium)"
command -v node >/dev/null 2>&1 || apt_install nodejs npm
# `npm ci` wipes and reinstalls node_modules; skip it when the installed tree already matches
# the lock file (npm records what it installed in node_modules/.package-lock.json).
if [ -f tests/browser/node_modules/.package-lock.json ] &&
  [ tests/browser/node_modules/.package-lock.json -nt tests/browser/package-lock.json ]; then
  echo "tests/browser/node_modules is up to date"
else
  (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)
fi

# The generated-client example of docs/api.md (openapi-typescript, openapi-fetch, TypeScript).
if [ -f tests/contract/node_modules/.package-lock.json ] &&
  [ tests/contract/node_modules/.package-lock.json -nt tests/contract/package-lock.json ]; then
  echo "tests/contract/node_modules is up to date"
else
  (cd tests/contract && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
fi

if [ "$deps_only" = 1 ]; then
  exit 0
fi

log "tests (SQLite and PostgreSQL): cargo test --workspace"
# Its output is kept to print one closing total: cargo ends with the doc-test binaries, which
# have no tests, and that last line should not stand for the whole run.
out=$(mktemp)
trap 'rm -f "$out"' EXIT
set +e
PATH="$PATH:/usr/sbin" cargo test --workspace 2>&1 | tee "$out"
status=${PIPESTATUS[0]}
set -e
passed=$(grep -Eo '^test result: [A-Za-z]+\. [0-9]+ passed' "$out" | awk '{s+=$4} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed;' "$out" | awk '{s+=$1} END {print s+0}')
echo
echo "summary: $passed passed, $failed failed"
exit "$status"
