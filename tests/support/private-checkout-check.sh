#!/usr/bin/env bash
# The tests' PostgreSQL server starts, answers, restarts and is removed when its control directory
# sits where only the owner may enter (a checkout under /root, mode 700): the server's own files must
# live elsewhere, owned by the user it runs as. Usage: private-checkout-check.sh PORT
set -euo pipefail
port=${1:?port}
script="$(dirname "$0")/postgres.sh"
home=$(mktemp -d "${TMPDIR:-/tmp}/distrib-private-home-XXXXXX")
trap '"$script" destroy "$home/checkout/build/tests/postgres" >/dev/null 2>&1 || true; rm -rf "$home"' EXIT
chmod 700 "$home"
ctl="$home/checkout/build/tests/postgres"
"$script" start "$ctl" "$port"
srv=$(cat "$ctl/server-dir")
case "$srv" in "$home"*) echo "FAIL: the server's files are under the private directory ($srv)"; exit 1 ;; esac
answer() { psql "host=127.0.0.1 port=$port user=distrib password=distrib dbname=postgres" -qAtc "SELECT 40 + 2"; }
[ "$(answer)" = 42 ] || { echo "FAIL: the server does not answer"; exit 1; }
"$script" restart "$ctl"
[ "$(answer)" = 42 ] || { echo "FAIL: the server does not answer after a restart"; exit 1; }
# A second start (an interrupted run left the first behind) replaces the first server.
"$script" start "$ctl" "$port"
[ ! -e "$srv" ] || { echo "FAIL: the server of the interrupted run is still there ($srv)"; exit 1; }
srv=$(cat "$ctl/server-dir")
"$script" destroy "$ctl"
[ ! -e "$srv" ] || { echo "FAIL: destroy left the server's files ($srv)"; exit 1; }
[ ! -e "$ctl" ] || { echo "FAIL: destroy left the control directory ($ctl)"; exit 1; }
if answer >/dev/null 2>&1; then echo "FAIL: the server still answers after destroy"; exit 1; fi
echo "ok: PostgreSQL ran from a private checkout with its files in $srv, and was removed"
