#!/usr/bin/env bash
# Run a command beside a throw-away PostgreSQL cluster (for the tests of studies shared by several
# machines): a temporary folder, a free port, a Unix socket only, trust authentication. The command gets
# HW3_TEST_POSTGRES_URL; the cluster is stopped and deleted when the command ends, even on failure.
#   bash .ci/with-postgres.sh python -m pytest tests/test_sweep_workers.py
# Debian's `postgresql` package provides the binaries (/usr/lib/postgresql/N/bin); under CI they are
# installed when missing. The server refuses to run as root, so as root it runs as the `postgres` user.
set -euo pipefail

find_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }
BIN=${PG_BIN:-$(find_bin)}
if [ -z "$BIN" ] && [ -n "${CI:-}" ] && [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  echo "== installing PostgreSQL (Debian's postgresql package)"
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql >/dev/null
  BIN=$(find_bin)
fi
if [ -z "$BIN" ] || [ ! -x "$BIN/initdb" ]; then
  echo "!! no PostgreSQL server binaries: the PostgreSQL tests will skip" >&2
  exec "$@"
fi

dir=$(mktemp -d /tmp/hw3-pg.XXXXXX)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
as_owner=()
if [ "$(id -u)" -eq 0 ]; then
  chown postgres "$dir"
  as_owner=(runuser -u postgres --)
fi
stop() {
  "${as_owner[@]}" "$BIN/pg_ctl" -D "$dir/db" -m fast -w stop >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap stop EXIT
"${as_owner[@]}" "$BIN/initdb" -D "$dir/db" -A trust -U hw3 >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
"${as_owner[@]}" "$BIN/pg_ctl" -D "$dir/db" -o "-p $port -k $dir -c listen_addresses=''" -l "$dir/server.log" -w start >/dev/null \
  || { cat "$dir/server.log" >&2; exit 1; }
"$BIN/createdb" -h "$dir" -p "$port" -U hw3 optuna
export HW3_TEST_POSTGRES_URL="postgresql+psycopg://hw3@/optuna?host=$dir&port=$port"
echo "== PostgreSQL $("$BIN/postgres" --version | awk '{print $3}') on $dir:$port (stopped on exit)"
"$@"
