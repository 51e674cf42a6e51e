#!/usr/bin/env bash
# The distrib demo: installs what is missing, builds, then starts a manager and three agents on
# loopback addresses with the embedded database, packages examples/hello-app, distributes it,
# shows progress and the per-host result, and stops every process it started.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"

.ci/install-deps
echo "== building (first build takes several minutes on two cores)"
.ci/build

bin="$root/build/daemon"
state="$(mktemp -d /tmp/distrib-demo-XXXXXX)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  echo "== stopped ${#pids[@]} process(es); state and logs kept in $state"
}
trap cleanup EXIT INT TERM

echo "== starting the manager on 127.0.0.1 (embedded SQLite in $state/manager)"
"$bin/distribd" --role manager --state-dir "$state/manager" --listen 127.0.0.1 --port 0 \
  >"$state/manager.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [ -s "$state/manager/endpoint" ] && break; sleep 0.1; done
url="$(cat "$state/manager/endpoint")"
export DISTRIB_SERVER="$url" DISTRIB_TOKEN_FILE="$state/manager/admin.token"
echo "   manager at $url"

for i in 1 2 3; do
  "$bin/distribd" --role agent --state-dir "$state/agent$i" --server "$url" \
    --bind-address "127.0.0.$((10 + i))" --host-name "demo-agent$i" >"$state/agent$i.log" 2>&1 &
  pids+=($!)
done
echo "== three agents started on 127.0.0.11-13; waiting for them to register"
for _ in $(seq 100); do
  n=$("$bin/distribctl" hosts list --json | grep -o '"host_id"' | wc -l)
  [ "$n" -ge 3 ] && break
  sleep 0.1
done
"$bin/distribctl" hosts list

echo
echo "== packaging examples/hello-app"
"$bin/distribctl" package create examples/hello-app --name hello-app --version 1.0.0 \
  --install-command "sh install.sh"
"$bin/distribctl" package list

echo
echo "== distributing hello-app 1.0.0 to demo-agent1 demo-agent2 demo-agent3"
job=$("$bin/distribctl" job create install hello-app 1.0.0 demo-agent1 demo-agent2 demo-agent3 --json \
  | sed -E 's/.*"id":([0-9]+).*/\1/')
echo "   job $job created"
status=0
"$bin/distribctl" job show "$job" --wait --timeout 90 || status=$?

echo
echo "== installed on the agents:"
for i in 1 2 3; do
  dir="$state/agent$i/packages/hello-app/1.0.0"
  printf '   demo-agent%s: %s -> %s\n' "$i" "$dir" "$("$dir/bin/hello" 2>/dev/null || echo missing)"
done
exit $status
