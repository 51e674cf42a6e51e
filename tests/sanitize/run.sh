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
ulimit -n 20000 2>/dev/null || true
cleanup() { tests/support/postgres.sh destroy build-sanitize/tests/postgres >/dev/null 2>&1 || true; }
trap cleanup EXIT
# Not here: the fuzzers (they have their own sanitizer build), the format check (no code runs) and
# the install test (it links a consumer built without the sanitizers against the library, which
# ASan refuses: its runtime must come first).
ctest --preset sanitize -j2 --timeout 900 -LE 'fuzz|format|install' "$@"
