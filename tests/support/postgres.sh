#!/usr/bin/env bash
# A private PostgreSQL server on loopback for tests and benchmarks.
#   postgres.sh start DIR PORT    a new cluster (initdb) and start; role distrib/distrib may create databases
#   postgres.sh stop DIR          stop (fast) and keep the data
#   postgres.sh restart DIR       stop and start again (the same data)
#   postgres.sh destroy DIR       stop and remove the server's files and DIR
# DIR is the control directory that clients read: DIR/port, and DIR/odbc with an odbcinst.ini that
# has the PostgreSQL and SQLite drivers and their logs off (point ODBCSYSINI at it). The server's
# own files (data, socket, log) live in a fresh directory made with mktemp under $TMPDIR (or /tmp)
# and owned by the user the server runs as, named in DIR/server-dir: DIR may be anywhere, even
# under a directory that user cannot enter (a checkout in /root). `start` first destroys a server an
# interrupted run left behind in DIR. Connection string for clients:
# host=127.0.0.1 port=PORT user=distrib password=distrib dbname=...
set -euo pipefail
cmd=${1:?usage: postgres.sh start|stop|restart|destroy DIR [PORT]}
dir=$(realpath -m "${2:?control directory}")
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$bin/pg_ctl" ] || { echo "postgres.sh: PostgreSQL server binaries not found (apt-get install postgresql-15)" >&2; exit 1; }

# initdb refuses to run as root: run the server as the postgres user then.
as_owner() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# The server's directory, when there is one.
server_dir() {
  [ -f "$dir/server-dir" ] && cat "$dir/server-dir" || true
}

launch() {
  local srv port
  srv=$(server_dir)
  port=$(cat "$dir/port")
  as_owner "$bin/pg_ctl" -D "$srv/data" -l "$srv/server.log" -w -t 30 \
    -o "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories=$srv -c fsync=off -c max_connections=300" \
    start >/dev/null || { cat "$srv/server.log" >&2 2>/dev/null; exit 1; }
  echo "PostgreSQL on 127.0.0.1:$port (server files in $srv)"
}

start() {
  local port=${1:?port} srv
  destroy
  mkdir -p "$dir"
  srv=$(mktemp -d "${TMPDIR:-/tmp}/distrib-pg-XXXXXX")
  if [ "$(id -u)" -eq 0 ]; then chown postgres "$srv"; fi
  echo "$srv" >"$dir/server-dir"
  echo "$port" >"$dir/port"
  as_owner "$bin/initdb" -D "$srv/data" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
    --no-sync -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 ||
    { cat "$dir/initdb.log" >&2; exit 1; }
  launch
  as_owner psql -h "$srv" -p "$port" -U postgres -d postgres -qAt -v ON_ERROR_STOP=1 >/dev/null <<SQL
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
}

stop() {
  local srv
  srv=$(server_dir)
  if [ -n "$srv" ] && [ -f "$srv/data/postmaster.pid" ]; then
    as_owner "$bin/pg_ctl" -D "$srv/data" -m fast -w -t 30 stop >/dev/null || true
  fi
}

destroy() {
  local srv
  srv=$(server_dir)
  stop
  # Only ever remove a directory this script made.
  case "$srv" in */distrib-pg-*) rm -rf "$srv" ;; esac
  rm -rf "$dir"
}

case "$cmd" in
  start) start "${3:?port}" ;;
  stop) stop ;;
  restart)
    [ -n "$(server_dir)" ] || { echo "postgres.sh: no server in $dir (start it first)" >&2; exit 1; }
    stop; launch ;;
  destroy) destroy ;;
  *) echo "postgres.sh: unknown command $cmd" >&2; exit 2 ;;
esac
