#!/usr/bin/env bash
# The one command that runs every test on a fresh Debian 12 machine: installs what is missing,
# builds, and runs the whole CTest suite (unit, integration, install). Extra arguments go to ctest
# (for example: tests/run-all.sh -L unit).
set -euo pipefail
cd "$(dirname "$0")/.."
.ci/install-deps all
.ci/build
ulimit -n 65536 2>/dev/null || true
# CTest stops the tests' PostgreSQL server after the last test that needs it; when the run is
# interrupted it does not, so stop it and remove its files here too.
cleanup() { tests/support/postgres.sh destroy build/tests/postgres >/dev/null 2>&1 || true; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
ctest --preset ci -j2 --timeout 600 "$@"
