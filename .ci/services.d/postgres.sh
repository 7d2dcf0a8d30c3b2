# Sourced by .ci/run: a throwaway PostgreSQL cluster on loopback for the storage tests.
# Runs as the postgres user (Debian's `postgresql` package, see .ci/apt.txt), in a temp dir,
# on port 54329 (or the next free one); exports CAREPATH_TEST_PG_URL; stops it on exit.
# Usage by hand:  source .ci/services.d/postgres.sh && python -m pytest tests/service
set -euo pipefail

_pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)
if [ -z "$_pg_bin" ] || [ ! -x "$_pg_bin/initdb" ]; then
  echo "postgres.sh: PostgreSQL server binaries not found (apt-get install postgresql)" >&2
  return 1 2>/dev/null || exit 1
fi

if [ "$(id -u)" = 0 ]; then
  _pg_as() { runuser -u postgres -- "$@"; }
else
  _pg_as() { "$@"; }  # a developer without root runs the cluster as themselves
fi

_pg_dir=$(mktemp -d /tmp/carepath-pg.XXXXXX)
chmod 755 "$_pg_dir"
[ "$(id -u)" = 0 ] && chown postgres:postgres "$_pg_dir"
_pg_as "$_pg_bin/initdb" -D "$_pg_dir/data" -U postgres -A trust -E UTF8 --no-sync >"$_pg_dir/initdb.log" 2>&1 \
  || { cat "$_pg_dir/initdb.log" >&2; return 1 2>/dev/null || exit 1; }

_pg_port=54329
while (exec 3<>"/dev/tcp/127.0.0.1/$_pg_port") 2>/dev/null; do _pg_port=$((_pg_port + 1)); done

_pg_as "$_pg_bin/pg_ctl" -D "$_pg_dir/data" -l "$_pg_dir/server.log" -w -t 60 start \
  -o "-p $_pg_port -c listen_addresses=127.0.0.1 -k $_pg_dir -c fsync=off -c max_connections=200" >/dev/null \
  || { cat "$_pg_dir/server.log" >&2; return 1 2>/dev/null || exit 1; }

_pg_as psql -h 127.0.0.1 -p "$_pg_port" -U postgres -d postgres -v ON_ERROR_STOP=1 -qc "CREATE DATABASE carepath_test" >/dev/null

export CAREPATH_TEST_PG_URL="postgresql+psycopg://postgres@127.0.0.1:$_pg_port/carepath_test"
export CAREPATH_TEST_PG_DIR="$_pg_dir"
echo "postgres.sh: PostgreSQL $("$_pg_bin/postgres" -V | awk '{print $3}') on 127.0.0.1:$_pg_port (CAREPATH_TEST_PG_URL exported)"

carepath_pg_stop() {
  [ -n "${CAREPATH_TEST_PG_DIR:-}" ] && [ -d "$CAREPATH_TEST_PG_DIR/data" ] || return 0
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$_pg_bin/pg_ctl" -D "$CAREPATH_TEST_PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true
  else
    "$_pg_bin/pg_ctl" -D "$CAREPATH_TEST_PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true
  fi
  rm -rf "$CAREPATH_TEST_PG_DIR"
}
# CAREPATH_PG_KEEP=1 leaves it running (stop later with carepath_pg_stop or pg_ctl).
[ "${CAREPATH_PG_KEEP:-}" = 1 ] || trap 'carepath_pg_stop' EXIT
