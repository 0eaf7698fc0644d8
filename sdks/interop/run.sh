#!/usr/bin/env bash
# Builds the four interop servers and runs the cross-SDK test (pytest). Exits non-zero on any failure.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
STATE=${RACEWAY_STATE_DIR:-$HOME/.cache/raceway}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$STATE/cargo-target}"
mkdir -p "$STATE"
LOGS=$(mktemp -d)
export INTEROP_LOG_DIR=$LOGS

# TypeScript: build the package the interop server imports.
(cd "$ROOT/sdks/typescript" && { [[ -d node_modules ]] || npm ci --no-audit --no-fund; } && npm run build >/dev/null)
export INTEROP_TYPESCRIPT_CMD="node interop/server.mjs" INTEROP_TYPESCRIPT_CWD="$ROOT/sdks/typescript"

# Python: one venv with the SDK (for the server) and the driver's test dependencies.
VENV="$STATE/interop-venv"
[[ -x $VENV/bin/python ]] || python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check -e "$ROOT/sdks/python[all]" pytest requests zstandard
export INTEROP_PYTHON_CMD="$VENV/bin/python interop/server.py" INTEROP_PYTHON_CWD="$ROOT/sdks/python"

# Go.
(cd "$ROOT/sdks/go" && go build -o "$STATE/go-interop-server" ./cmd/interop-server)
export INTEROP_GO_CMD="$STATE/go-interop-server"

# Rust.
if [[ ,${INTEROP_LANGUAGES:-rust}, == *,rust,* ]]; then
  cargo build --quiet -p example-interop-rust --manifest-path "$ROOT/Cargo.toml"
  export INTEROP_RUST_CMD="$CARGO_TARGET_DIR/debug/example-interop-rust"
fi

cd "$HERE"
status=0
"$VENV/bin/python" -m pytest -q -p no:cacheprovider test_cross_sdk.py || status=$?
if ((status != 0)); then
  for f in "$LOGS"/*.log; do echo "--- $f"; tail -n 40 "$f"; done
fi
rm -rf "$LOGS"
exit $status
