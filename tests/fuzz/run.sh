#!/usr/bin/env bash
# Builds the libFuzzer harnesses (clang, AddressSanitizer, UndefinedBehaviorSanitizer) into
# build/fuzz and runs each for a bounded time, two at a time, from its seed corpus in
# tests/fuzz/corpus. Prints executions and findings per harness; exits 1 when any harness found
# a crash, a leak or undefined behaviour (the input is kept in build/fuzz/findings/).
#   tests/fuzz/run.sh [SECONDS] [HARNESS...]     default: 30 s each, every harness
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds="${1:-30}"
shift || true
all=(json_messages manifest inventory_query specs http_request tar_extract signed_statements)
if [ $# -gt 0 ]; then harnesses=("$@"); else harnesses=("${all[@]}"); fi
out=build/fuzz
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
cmake -S tests/fuzz -B "$out" -G Ninja -DCMAKE_CXX_COMPILER=clang++ "${launcher[@]}" >/dev/null
echo "fuzz: building ${#harnesses[@]} harness(es) with clang, ASan and UBSan"
mkdir -p "$out/logs"
if ! cmake --build "$out" -j2 --target "${harnesses[@]/#/fuzz_}" >"$out/logs/build.log" 2>&1; then
  grep -E -A5 "error|FAILED" "$out/logs/build.log" | head -40 >&2
  echo "fuzz: the harnesses do not build (log: $out/logs/build.log)" >&2
  exit 1
fi
rm -rf "$out/findings"
mkdir -p "$out/findings"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

run_one() {
  local h="$1" work="$out/corpus/$1"
  mkdir -p "$work"
  # New inputs go to the work corpus; the seeds in the repository are only read.
  "$out/fuzz_$h" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
    -print_final_stats=1 -artifact_prefix="$out/findings/$h-" "$work" "tests/fuzz/corpus/$h" \
    >"$out/logs/$h.log" 2>&1
}

status=0
pids=()
names=()
for h in "${harnesses[@]}"; do
  run_one "$h" &
  pids+=($!)
  names+=("$h")
  if [ ${#pids[@]} -eq 2 ]; then
    wait "${pids[0]}" || true
    pids=("${pids[@]:1}")
  fi
done
wait || true
printf '%-20s %12s %10s %8s %9s\n' HARNESS EXECUTIONS EXEC/S CORPUS FINDINGS
for h in "${harnesses[@]}"; do
  log="$out/logs/$h.log"
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  corpus=$(find "$out/corpus/$h" -type f | wc -l)
  found=$(find "$out/findings" -name "$h-*" -type f | wc -l)
  printf '%-20s %12s %10s %8s %9s\n' "$h" "${execs:-?}" "${rate:-?}" "$corpus" "$found"
  if [ "$found" -gt 0 ] || [ -z "$execs" ]; then
    status=1
    echo "fuzz: $h found something (or did not run); its log:" >&2
    grep -E "ERROR|SUMMARY|runtime error|==[0-9]+==" "$log" | head -20 >&2 || tail -20 "$log" >&2
  fi
done
exit $status
