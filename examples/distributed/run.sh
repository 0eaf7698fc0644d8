#!/usr/bin/env bash
# The cross-language demo: raceway-backend + ts-gateway (TypeScript/Express) → py-orders (Python/Flask) →
# go-inventory (Go net/http) → rust-payments (Rust/axum). Installs what is missing, starts everything, sends the
# scenario requests, prints a summary of the backend's analysis, then keeps running until Ctrl-C.
# See README.md (ports: DEMO_TS_PORT, DEMO_PY_PORT, DEMO_GO_PORT, DEMO_RUST_PORT, RACEWAY_BACKEND_PORT).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

demo_setup
trap demo_cleanup EXIT
trap 'exit 130' INT TERM
demo_check
demo_install
demo_start || { DEMO_KEEP_STATE=1; demo_die "start-up failed (logs above)"; }

python3 "$DEMO_DIR/demo.py" summary || demo_log "sending the scenario requests failed; logs are in $DEMO_STATE"

cat <<MSG

Everything keeps running (logs in $DEMO_STATE):
  backend        $RACEWAY_BACKEND_URL   (GET /api/traces, /api/traces/{id}/analysis, /api/races)
  ts-gateway     http://127.0.0.1:$DEMO_TS_PORT   e.g. curl -X POST http://127.0.0.1:$DEMO_TS_PORT/chain
  py-orders      http://127.0.0.1:$DEMO_PY_PORT
  go-inventory   http://127.0.0.1:$DEMO_GO_PORT
  rust-payments  http://127.0.0.1:$DEMO_RUST_PORT
Press Ctrl-C to stop all of them.
MSG
while true; do sleep 1; done
