#!/usr/bin/env bash
# Fails, listing them, when C and C++ sources do not follow .clang-format (clang-format 14).
# Fix with: clang-format -i FILE...
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v clang-format >/dev/null || { echo "check-format: clang-format is not installed (apt-get install clang-format)"; exit 1; }
bad=()
while IFS= read -r -d '' f; do
  clang-format --dry-run -Werror "$f" >/dev/null 2>&1 || bad+=("$f")
done < <(find libdistrib daemon bindings examples tests -type f \( -name '*.cpp' -o -name '*.h' -o -name '*.c' \) \
           -not -path '*/hello-app/*' -print0)
if [ ${#bad[@]} -gt 0 ]; then
  echo "not formatted with .clang-format (${#bad[@]} file(s)); run: clang-format -i ${bad[*]}"
  exit 1
fi
echo "every source follows .clang-format"
