#!/usr/bin/env bash
# CI for the Raceway Go SDK: download modules, vet, gofmt, race tests, build the
# interop server. Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== go version"; go version
echo "== go mod download"
go mod download
(cd bench && go mod download)

echo "== go vet"
go vet ./...
(cd bench && go vet ./...)

echo "== gofmt -l"
unformatted="$(gofmt -l .)"
if [ -n "$unformatted" ]; then
  echo "gofmt would reformat:"; echo "$unformatted"; exit 1
fi

echo "== go test -race"
log="$(mktemp)"
set +e
go test -race -count=1 -v ./... > "$log" 2>&1
status=$?
set -e
grep -E '^(--- FAIL|FAIL|ok|PASS|panic:|\s+\S+_test\.go:[0-9]+:)' "$log" || true
passed=$(grep -cE '^\s*--- PASS' "$log" || true)
failed=$(grep -cE '^\s*--- FAIL' "$log" || true)
skipped=$(grep -cE '^\s*--- SKIP' "$log" || true)
rm -f "$log"
echo "go: $passed passed, $failed failed, $skipped skipped"
if [ "$status" -ne 0 ]; then
  echo "go test failed (exit $status)"; exit "$status"
fi

echo "== benchmarks compile and run once (bench module, OTel side by side)"
(cd bench && go test -run XXX -bench . -benchtime 1x ./... > /dev/null)

echo "== build interop server"
out="${INTEROP_BIN_DIR:-$(mktemp -d)}"
go build -o "$out/" ./cmd/interop-server
echo "built $out/interop-server"
