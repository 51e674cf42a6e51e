#!/usr/bin/env bash
# The one command that runs every test on a fresh Debian 12 machine: installs what is missing,
# builds, and runs the whole CTest suite (unit, integration, install). Extra arguments go to ctest
# (for example: tests/run-all.sh -L unit).
set -euo pipefail
cd "$(dirname "$0")/.."
.ci/install-deps
.ci/build
ulimit -n 65536 2>/dev/null || true
ctest --preset ci -j2 --timeout 600 "$@"
