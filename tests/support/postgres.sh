#!/usr/bin/env bash
# A private PostgreSQL server on loopback for tests and benchmarks.
#   postgres.sh start DIR PORT    initdb (first time) and start; role distrib/distrib may create databases
#   postgres.sh stop DIR          stop (fast) and keep the data
#   postgres.sh restart DIR       stop and start again (the same data)
#   postgres.sh destroy DIR       stop and remove DIR
# Connection string for clients: host=127.0.0.1 port=PORT user=distrib password=distrib dbname=...
# DIR/odbc holds an odbcinst.ini with the PostgreSQL and SQLite drivers and their logs off: point
# ODBCSYSINI at it.
set -euo pipefail
cmd=${1:?usage: postgres.sh start|stop|restart|destroy DIR [PORT]}
dir=$(realpath -m "${2:?data directory}")
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$bin/pg_ctl" ] || { echo "postgres.sh: PostgreSQL server binaries not found (apt-get install postgresql-15)" >&2; exit 1; }

# initdb refuses to run as root: run the server as the postgres user then.
as_owner() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start() {
  local port=${1:?port}
  mkdir -p "$dir"
  if [ "$(id -u)" -eq 0 ]; then chown postgres "$dir"; fi
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    as_owner "$bin/initdb" -D "$dir/data" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
      --no-sync -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 ||
      { cat "$dir/initdb.log" >&2; exit 1; }
    echo "$port" >"$dir/port"
  fi
  port=$(cat "$dir/port")
  as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
    -o "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories=$dir -c fsync=off -c max_connections=300" \
    start >/dev/null
  as_owner psql -h "$dir" -p "$port" -U postgres -d postgres -qAt -v ON_ERROR_STOP=1 >/dev/null <<SQL
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'distrib') THEN
    CREATE ROLE distrib LOGIN CREATEDB PASSWORD 'distrib';
  END IF;
END \$\$;
SQL
  mkdir -p "$dir/odbc"
  cat >"$dir/odbc/odbcinst.ini" <<INI
[PostgreSQL Unicode]
Description=PostgreSQL ODBC driver (Unicode version)
Driver=psqlodbcw.so
CommLog=0
Debug=0

[SQLite3]
Description=SQLite3 ODBC Driver
Driver=libsqlite3odbc.so
INI
  echo "PostgreSQL on 127.0.0.1:$port (data in $dir/data)"
}

stop() {
  if [ -f "$dir/data/postmaster.pid" ]; then
    as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w -t 30 stop >/dev/null || true
  fi
}

case "$cmd" in
  start) stop; start "${3:?port}" ;;
  stop) stop ;;
  restart) stop; start "$(cat "$dir/port")" ;;
  destroy) stop; rm -rf "$dir" ;;
  *) echo "postgres.sh: unknown command $cmd" >&2; exit 2 ;;
esac
