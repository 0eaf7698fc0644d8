#!/usr/bin/env bash
# CI for the TypeScript SDK, from a fresh clone: npm ci, build, typecheck, tests (golden vectors from
# ../../spec/vectors, properties, Express/fetch/axios on loopback, exporter resilience, schema validation,
# interop server), then the npm pack / install / require+import check. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== npm ci"
npm ci --no-audit --no-fund

echo "== build (tsup: ESM + CJS + .d.ts)"
npm run build

echo "== typecheck (tsc --noEmit, strict; sources and tests)"
npm run typecheck

echo "== tests (node:test via tsx)"
TAP="$(mktemp)"
trap 'rm -f "$TAP"' EXIT
set +e
node --import tsx --test --test-concurrency=1 \
  --test-reporter=spec --test-reporter-destination=stdout \
  --test-reporter=tap --test-reporter-destination="$TAP" \
  test/*.test.ts
status=$?
set -e
pass=$(grep -E '^# pass ' "$TAP" | awk '{print $3}')
fail=$(grep -E '^# fail ' "$TAP" | awk '{print $3}')
skip=$(grep -E '^# skipped ' "$TAP" | awk '{print $3}')
echo "# tests $((pass + fail + skip))"
echo "# pass ${pass:-0}"
echo "# fail ${fail:-0}"
echo "typescript: ${pass:-0} passed, ${fail:-0} failed, ${skip:-0} skipped"
if [ "$status" -ne 0 ] || [ "${fail:-1}" != "0" ] || [ "${pass:-0}" = "0" ]; then
  echo "tests failed" >&2
  exit 1
fi

echo "== npm pack / install / require + import"
bash scripts/pack-check.sh

echo "== ci ok"
