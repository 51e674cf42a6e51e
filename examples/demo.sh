#!/usr/bin/env bash
# The distrib demo: installs what is missing, builds, then starts a manager, a relay (a branch
# office) and three agents on loopback addresses with the embedded database, packages
# examples/hello-app, distributes it through the hierarchy, shows progress and the per-host
# result, and stops every process it started.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"

.ci/install-deps build
if [ -x build/daemon/distribd ] && [ -x build/daemon/distribctl ]; then
  echo "== building distribd and distribctl (up to date in seconds)"
else
  echo "== building distribd and distribctl (the first build takes about 7 minutes on two cores)"
fi
SECONDS=0
.ci/build distribd distribctl
echo "   built in ${SECONDS}s"

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
  --event-sink "ops=file:$state/events.jsonl;types=job.*,entry.*,host.registered" \
  >"$state/manager.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [ -s "$state/manager/endpoint" ] && break; sleep 0.1; done
url="$(cat "$state/manager/endpoint")"
export DISTRIB_SERVER="$url" DISTRIB_TOKEN_FILE="$state/manager/admin.token"
echo "   manager at $url (TLS with its own CA: $state/manager/pki/ca.crt)"

echo "== an enrolment bundle for the new hosts: the manager's address, its CA and a token for 4 hosts"
"$bin/distribctl" enrol-bundle --new-token --uses 4 --expires 1h --output "$state/enrol.bundle"

echo "== starting a relay (branch office) on 127.0.0.20 below the manager"
"$bin/distribd" --role relay --state-dir "$state/relay" --listen 127.0.0.20 --port 0 --parent "$url" \
  --enrol-bundle "$state/enrol.bundle" --host-name demo-branch-relay --sync-interval-ms 200 >"$state/relay.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [ -s "$state/relay/endpoint" ] && break; sleep 0.1; done
relay_url="$(cat "$state/relay/endpoint")"
echo "   relay at $relay_url"

# demo-agent1 talks to the manager; demo-agent2 and demo-agent3 sit in the branch office.
for i in 1 2 3; do
  parent="$relay_url"
  [ "$i" = 1 ] && parent="$url"
  "$bin/distribd" --role agent --state-dir "$state/agent$i" --server "$parent" --enrol-bundle "$state/enrol.bundle" \
    --bind-address "127.0.0.$((10 + i))" --host-name "demo-agent$i" >"$state/agent$i.log" 2>&1 &
  pids+=($!)
done
echo "== three agents started on 127.0.0.11-13; waiting for the tree to reach the manager"
for _ in $(seq 100); do
  n=$("$bin/distribctl" hosts list --json | grep -o '"host_id"' | wc -l)
  [ "$n" -ge 4 ] && break
  sleep 0.1
done
"$bin/distribctl" hosts tree
echo "== every host enrolled with the bundle's token: its key, and a certificate of the manager's CA"
"$bin/distribctl" hosts pending --all

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
echo "== content: each chunk left the manager once for the whole branch office"
"$bin/distribctl" stats

echo
echo "== an ID group: the branch office's machines join it by a policy on their names"
"$bin/distribctl" idgroup create branch --match-name 'demo-agent[23]'
cp -r examples/hello-app "$state/hello-app-1.0.1" && echo "1.0.1" >"$state/hello-app-1.0.1/VERSION"
"$bin/distribctl" package create "$state/hello-app-1.0.1" --name hello-app --version 1.0.1 \
  --install-command "sh install.sh" >/dev/null
echo "== a standing job to the group, rolled out in two waves (50 % then everyone)"
job2=$("$bin/distribctl" job create install hello-app 1.0.1 id:branch --waves 50,100 --json \
  | sed -E 's/.*"id":([0-9]+).*/\1/')
"$bin/distribctl" job show "$job2" --wait --timeout 90 >/dev/null || status=$?
echo "== demo-agent1 joins the group from its own machine, and receives the standing job"
"$bin/distribd" --role agent --state-dir "$state/agent1" --server "$url" --bind-address 127.0.0.11 \
  --host-name demo-agent1 --join-group branch --log-level warn
for _ in $(seq 100); do
  "$bin/distribctl" job show "$job2" --json | grep -q '"final":3' && break
  sleep 0.1
done
"$bin/distribctl" job show "$job2" || status=$?

echo
echo "== inventory: the agents running hello-app 1.0.1 (each agent reports right after an install)"
query='software.distrib.hello-app >= 1.0.1'
for _ in $(seq 100); do
  [ "$("$bin/distribctl" inventory query "$query" --json | grep -o '"host_id"' | wc -l)" -ge 3 ] && break
  sleep 0.1
done
"$bin/distribctl" inventory query "$query" --fields software.distrib.hello-app,system.os.pretty_name,system.cpu.count \
  || status=$?

echo
echo "== the newest job events (all of them in $state/events.jsonl; live: distribctl events --follow)"
"$bin/distribctl" events --type 'job.*,entry.*' --limit 8 || status=$?

echo
echo "== who did what (the audit trail)"
"$bin/distribctl" audit --limit 5 || status=$?

echo
echo "== installed on the agents:"
for i in 1 2 3; do
  for v in 1.0.0 1.0.1; do
    dir="$state/agent$i/packages/hello-app/$v"
    printf '   demo-agent%s: %s -> %s\n' "$i" "$dir" "$("$dir/bin/hello" 2>/dev/null || echo missing)"
  done
done
exit $status
