#!/usr/bin/env bash
# Runs the benchmarks against a build in ./build and prints their figures (see docs/PERFORMANCE.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
echo "== bench_poll (simulated agents: register + poll)"
build/tests/perf/bench_poll "${AGENTS:-10000}" "${POLL_SECONDS:-10}"
echo
echo "== bench_fleet (registrations at 1,000 and 100,000 stored hosts; one job to 10,000 and 19,000 waiting agents)"
build/tests/perf/bench_fleet "${FLEET_REGISTRATIONS:-5000}" "${FLEET_STORED:-100000}" "${FLEET_AGENTS:-10000,19000}"
echo
echo "== bench_package (distribctl package create vs tar | zstd -T0 -3: 1 GiB of random data, a real tree)"
build/tests/perf/bench_package "${PACKAGE_RANDOM_MIB:-1024}" "${PACKAGE_TREE:-/usr/include/boost}"
echo
echo "== bench_delivery (concurrent package fetch vs nginx)"
build/tests/perf/bench_delivery "${CLIENTS:-50}" "${PAYLOAD_MIB:-100}"
echo
echo "== bench_relay (agents under relays vs straight from the manager)"
build/tests/perf/bench_relay "${RELAY_AGENTS:-200}" "${RELAYS:-4}" "${RELAY_PAYLOAD_MIB:-100}"
echo
echo "== bench_groups (ID group of 100,000 hosts: job expansion vs raw SQLite; late join to first work)"
build/tests/perf/bench_groups "${GROUP_HOSTS:-100000}" "${GROUP_JOINS:-20}"
echo
echo "== bench_transfer (segments vs nginx; rate-limit accuracy; cross-version dedup on a real tree)"
build/tests/perf/bench_transfer "${TRANSFER_CLIENTS:-20}" "${TRANSFER_PAYLOAD_MIB:-200}" "${RATE_MIB:-10}" "${DEDUP_TREE:-/usr/include/boost}"
echo
echo "== bench_inventory (full inventory reports into the embedded database; growth per 10,000 hosts)"
build/tests/perf/bench_inventory "${INVENTORY_HOSTS:-10000}" "${INVENTORY_CLIENTS:-16}" "${INVENTORY_CHANGED:-3}"
echo
echo "== bench_collect (50 collected files of 256 MiB arriving at once: manager memory)"
build/tests/perf/bench_collect "${COLLECT_HOSTS:-50}" "${COLLECT_MIB:-256}"
echo
echo "== bench_databases (job expansion and inventory ingest on SQLite, PostgreSQL, and both through ODBC, vs raw inserts)"
build/tests/perf/bench_databases "${DB_HOSTS:-10000}" "${DB_INVENTORY_HOSTS:-200}"
echo
echo "== bench_failover (kill -9 of the active manager: db-lease on PostgreSQL and etcd, lease 3 s)"
build/tests/perf/bench_failover "${FAILOVER_TRIALS:-10}" "${FAILOVER_AGENTS:-10}"
echo
echo "== bench_events (a 10,000-entry job with and without a JSON event sink; backlog drain)"
build/tests/perf/bench_events "${EVENT_ENTRIES:-10000}" "${EVENT_REPORTERS:-4}" "${EVENT_ROUNDS:-3}"
echo
echo "== bench_orders (signed orders: signing at the manager, checking at the agent, vs unsigned items)"
build/tests/perf/bench_orders "${ORDER_ITEMS:-5000}"
echo
echo "== bench_scrub (content verify: read, decompress and hash every stored chunk, vs sha256sum over the same files)"
build/tests/perf/bench_scrub "${SCRUB_MIB:-512}"
