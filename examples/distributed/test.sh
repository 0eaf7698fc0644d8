#!/usr/bin/env bash
# Non-interactive end-to-end test of the cross-language demo (scenarios 1-6 of the issue, asserted through the
# backend HTTP API by demo.py). Always stops what it started; exits non-zero on any failed assertion.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Distinct default ports so a running ./run.sh does not collide with the test.
export DEMO_TS_PORT=${DEMO_TS_PORT:-16001} DEMO_PY_PORT=${DEMO_PY_PORT:-16002} DEMO_GO_PORT=${DEMO_GO_PORT:-16003}
export DEMO_RUST_PORT=${DEMO_RUST_PORT:-16004} RACEWAY_BACKEND_PORT=${RACEWAY_BACKEND_PORT:-18080}

demo_setup
trap demo_cleanup EXIT
trap 'exit 130' INT TERM
demo_check
demo_install
if ! demo_start; then
  echo "FAILED: start-up"
  exit 1
fi

status=0
python3 "$DEMO_DIR/demo.py" test || status=$?
if ((status != 0)); then
  for f in "$DEMO_STATE"/*.log; do
    echo "--- last lines of $(basename "$f")"
    tail -n 15 "$f"
  done
  echo "FAILED: demo assertions"
  exit 1
fi
echo "demo test: ok"
