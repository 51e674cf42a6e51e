#!/usr/bin/env bash
# Builds the whole project with AddressSanitizer and UndefinedBehaviorSanitizer (CMake preset
# "sanitize", into build-sanitize) and runs the test suite under it. A sanitizer finding aborts
# the process that made it: its test fails and its log holds the report. Extra arguments go to
# ctest (for example: tests/sanitize/run.sh -L unit). Slow: the build takes about twice as long as
# the normal one and the suite runs 2-3 times slower; not part of tests/run-all.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
.ci/install-deps all
cmake --preset sanitize >/dev/null
cmake --build --preset sanitize
ulimit -n 65536 2>/dev/null || true
cleanup() { tests/support/postgres.sh destroy build-sanitize/tests/postgres >/dev/null 2>&1 || true; }
trap cleanup EXIT
ctest --preset sanitize -j2 --timeout 900 -LE 'fuzz|format' "$@"
