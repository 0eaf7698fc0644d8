# Shared start/stop logic of the cross-language demo, sourced by run.sh and test.sh (not executable).
#
#   demo_setup      paths, ports and the state directory (logs, backend working dir)
#   demo_check      required tools present
#   demo_install    npm ci / npm run build, Python venv, go build, cargo build — only what is missing or stale
#   demo_start      backend + the four services (refuses ports already in use), waits for /health
#   demo_stop       stops every process demo_start started (by pid), idempotent
#   demo_cleanup    EXIT trap: demo_stop, keeping the script's exit status
#
# Environment: DEMO_TS_PORT (6001), DEMO_PY_PORT (6002), DEMO_GO_PORT (6003), DEMO_RUST_PORT (6004),
# RACEWAY_BACKEND_PORT (8080), CARGO_TARGET_DIR (default: <repo>/target), DEMO_STORAGE (memory | sqlite:PATH,
# default memory), DEMO_KEEP_STATE=1 keeps the logs directory after stopping.

DEMO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DEMO_ROOT=$(cd "$DEMO_DIR/../.." && pwd)
DEMO_PIDS=()
DEMO_NAMES=()

demo_log() { printf '[demo] %s\n' "$*" >&2; }
demo_die() {
  printf '[demo] error: %s\n' "$*" >&2
  exit 1
}

demo_setup() {
  export DEMO_TS_PORT=${DEMO_TS_PORT:-6001}
  export DEMO_PY_PORT=${DEMO_PY_PORT:-6002}
  export DEMO_GO_PORT=${DEMO_GO_PORT:-6003}
  export DEMO_RUST_PORT=${DEMO_RUST_PORT:-6004}
  export RACEWAY_BACKEND_PORT=${RACEWAY_BACKEND_PORT:-8080}
  export RACEWAY_BACKEND_URL="http://127.0.0.1:$RACEWAY_BACKEND_PORT"
  export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$DEMO_ROOT/target}
  DEMO_STATE=$(mktemp -d "${TMPDIR:-/tmp}/raceway-demo.XXXXXX")
  export DEMO_STATE
  DEMO_VENV="$DEMO_DIR/.venv"
  DEMO_BIN="$DEMO_DIR/.build"
}

demo_check() {
  local missing=() t
  for t in node npm python3 go cargo curl; do
    command -v "$t" >/dev/null 2>&1 || missing+=("$t")
  done
  ((${#missing[@]} == 0)) || demo_die "missing tools: ${missing[*]} (need Node 20+, Python 3.10+, Go 1.23+, Rust 1.85+, curl)"
  local node_major
  node_major=$(node -p 'process.versions.node.split(".")[0]')
  ((node_major >= 20)) || demo_die "Node $node_major found, need 20+"
  python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))' || demo_die "Python 3.10+ needed"
}

# True when $1 is missing or older than any file under the other arguments.
demo_stale() {
  local target=$1
  shift
  [[ ! -e $target ]] && return 0
  [[ -n $(find "$@" -newer "$target" -type f -not -path '*/node_modules/*' -print -quit 2>/dev/null) ]]
}

demo_install() {
  local ts_sdk="$DEMO_ROOT/sdks/typescript"
  if demo_stale "$ts_sdk/node_modules/.package-lock.json" "$ts_sdk/package-lock.json"; then
    demo_log "npm ci (sdks/typescript)"
    (cd "$ts_sdk" && npm ci --no-audit --no-fund --loglevel=error) || demo_die "npm ci failed in sdks/typescript"
  fi
  if demo_stale "$ts_sdk/dist/index.js" "$ts_sdk/src" "$ts_sdk/package.json" "$ts_sdk/tsup.config.ts"; then
    demo_log "npm run build (sdks/typescript)"
    (cd "$ts_sdk" && npm run build --silent >/dev/null) || demo_die "building the TypeScript SDK failed"
  fi
  if demo_stale "$DEMO_DIR/ts-service/node_modules/.package-lock.json" "$DEMO_DIR/ts-service/package-lock.json"; then
    demo_log "npm ci (examples/distributed/ts-service)"
    (cd "$DEMO_DIR/ts-service" && npm ci --no-audit --no-fund --loglevel=error) || demo_die "npm ci failed in ts-service"
  fi

  if [[ ! -x $DEMO_VENV/bin/python ]]; then
    demo_log "python venv ($DEMO_VENV)"
    python3 -m venv "$DEMO_VENV" || demo_die "python3 -m venv failed (install python3-venv)"
  fi
  if demo_stale "$DEMO_VENV/.installed" "$DEMO_ROOT/sdks/python/pyproject.toml" "$DEMO_DIR/py-service/requirements.txt"; then
    demo_log "pip install -e sdks/python[flask,requests]"
    "$DEMO_VENV/bin/python" -m pip install -q -e "$DEMO_ROOT/sdks/python[flask,requests]" \
      -r "$DEMO_DIR/py-service/requirements.txt" || demo_die "pip install failed"
    touch "$DEMO_VENV/.installed"
  fi

  mkdir -p "$DEMO_BIN"
  if demo_stale "$DEMO_BIN/go-inventory" "$DEMO_DIR/go-service" "$DEMO_ROOT/sdks/go"; then
    demo_log "go build (examples/distributed/go-service)"
    (cd "$DEMO_DIR/go-service" && go build -o "$DEMO_BIN/go-inventory" .) || demo_die "go build failed"
  fi

  demo_log "cargo build -p raceway-backend -p demo-rust-payments (CARGO_TARGET_DIR=$CARGO_TARGET_DIR; the first build takes minutes)"
  (cd "$DEMO_ROOT" && cargo build --quiet -p raceway-backend -p demo-rust-payments) || demo_die "cargo build failed"
}

demo_port_free() {
  ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# demo_spawn NAME CMD...: starts CMD in the background (logs in $DEMO_STATE/NAME.log), remembers its pid.
demo_spawn() {
  local name=$1
  shift
  "$@" >"$DEMO_STATE/$name.log" 2>&1 &
  DEMO_PIDS+=("$!")
  DEMO_NAMES+=("$name")
}

demo_wait_health() {
  local name=$1 url=$2 pid=$3 deadline=$((SECONDS + ${DEMO_HEALTH_TIMEOUT:-60}))
  while ((SECONDS < deadline)); do
    if curl -fs -o /dev/null --max-time 2 "$url"; then
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      demo_log "$name exited during start-up; last lines of $DEMO_STATE/$name.log:"
      tail -n 20 "$DEMO_STATE/$name.log" >&2
      return 1
    fi
    sleep 0.2
  done
  demo_log "$name not healthy at $url after ${DEMO_HEALTH_TIMEOUT:-60}s; last lines of its log:"
  tail -n 20 "$DEMO_STATE/$name.log" >&2
  return 1
}

demo_start() {
  local p
  for p in "$RACEWAY_BACKEND_PORT" "$DEMO_TS_PORT" "$DEMO_PY_PORT" "$DEMO_GO_PORT" "$DEMO_RUST_PORT"; do
    demo_port_free "$p" || demo_die "port $p is already in use (set RACEWAY_BACKEND_PORT / DEMO_*_PORT to free ports)"
  done
  local storage=${DEMO_STORAGE:-memory}
  demo_log "starting raceway-backend on :$RACEWAY_BACKEND_PORT (storage $storage), logs in $DEMO_STATE"
  # Run in the state directory so no ./raceway.toml or ./raceway-data of the caller is picked up.
  demo_spawn backend env -C "$DEMO_STATE" RUST_LOG="${RUST_LOG:-warn}" "$CARGO_TARGET_DIR/debug/raceway-backend" serve \
    --listen "127.0.0.1:$RACEWAY_BACKEND_PORT" --storage "$storage"
  demo_wait_health backend "$RACEWAY_BACKEND_URL/health" "${DEMO_PIDS[-1]}" || return 1

  export RACEWAY_ENDPOINT=$RACEWAY_BACKEND_URL
  demo_log "starting ts-gateway :$DEMO_TS_PORT, py-orders :$DEMO_PY_PORT, go-inventory :$DEMO_GO_PORT, rust-payments :$DEMO_RUST_PORT"
  demo_spawn rust-payments env RACEWAY_INSTANCE_ID=rust-1 "$CARGO_TARGET_DIR/debug/demo-rust-payments"
  demo_spawn go-inventory env RACEWAY_INSTANCE_ID=go-1 "$DEMO_BIN/go-inventory"
  demo_spawn py-orders env RACEWAY_INSTANCE_ID=py-1 "$DEMO_VENV/bin/python" "$DEMO_DIR/py-service/server.py"
  demo_spawn ts-gateway env RACEWAY_INSTANCE_ID=ts-1 node "$DEMO_DIR/ts-service/server.mjs"
  local i port
  for i in 1 2 3 4; do
    case ${DEMO_NAMES[$i]} in
      rust-payments) port=$DEMO_RUST_PORT ;;
      go-inventory) port=$DEMO_GO_PORT ;;
      py-orders) port=$DEMO_PY_PORT ;;
      ts-gateway) port=$DEMO_TS_PORT ;;
    esac
    demo_wait_health "${DEMO_NAMES[$i]}" "http://127.0.0.1:$port/health" "${DEMO_PIDS[$i]}" || return 1
  done
  demo_log "all healthy"
}

demo_stop() {
  local i pid deadline sig
  # Services first (in reverse start order) so their exporters flush to a backend that is still up.
  for ((i = ${#DEMO_PIDS[@]} - 1; i >= 0; i--)); do
    pid=${DEMO_PIDS[$i]}
    # The backend shuts down gracefully on SIGINT (it does not handle SIGTERM); the services handle both.
    sig=TERM
    [[ ${DEMO_NAMES[$i]} == backend ]] && sig=INT
    kill -"$sig" "$pid" 2>/dev/null || continue
    deadline=$((SECONDS + 5))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      demo_log "${DEMO_NAMES[$i]} (pid $pid) did not stop on SIGTERM; killing it"
      kill -KILL "$pid" 2>/dev/null
    fi
    wait "$pid" 2>/dev/null || true
  done
  DEMO_PIDS=()
  DEMO_NAMES=()
  if [[ -n ${DEMO_STATE:-} && -d $DEMO_STATE ]]; then
    if [[ ${DEMO_KEEP_STATE:-0} == 1 ]]; then
      demo_log "logs kept in $DEMO_STATE"
    else
      rm -rf "$DEMO_STATE"
    fi
  fi
}

demo_cleanup() {
  local rc=$?
  set +e
  demo_stop
  exit "$rc"
}
