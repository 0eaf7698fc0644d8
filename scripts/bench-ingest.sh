#!/usr/bin/env bash
# Ingestion throughput of the backend over real HTTP, one store after the other, on this machine:
#   scripts/bench-ingest.sh [memory] [sqlite] [postgres]      (default: all three)
# Builds the release binaries, starts `raceway-backend serve` on a free loopback port for each store (SQLite in a
# fresh temp directory; PostgreSQL as a throwaway cluster through scripts/with-postgres.sh), runs
# `raceway-loadgen` against it, and prints one line per store: events/s as the load generator measured it and the
# server's CPU time per event (utime + stime from /proc over the run). Load generator, backend and PostgreSQL
# share the machine's cores. Tunables: EVENTS (default 1000000), BATCH (500), CONCURRENCY (8).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/raceway/cargo-target}"
EVENTS=${EVENTS:-1000000}
BATCH=${BATCH:-500}
CONCURRENCY=${CONCURRENCY:-8}
stores=("$@")
[ ${#stores[@]} -gt 0 ] || stores=(memory sqlite postgres)

cargo build --release --locked -q -p raceway-backend --bins
BIN="$CARGO_TARGET_DIR/release"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# run_one NAME STORAGE: serve, load, report, stop.
run_one() {
    local name=$1 storage=$2 port pid before after ticks
    port=$(free_port)
    RUST_LOG=warn "$BIN/raceway-backend" serve --listen "127.0.0.1:$port" --storage "$storage" >"$work/$name.log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do
        curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
        sleep 0.1
    done
    before=$(cpu_ticks "$pid")
    "$BIN/raceway-loadgen" --url "http://127.0.0.1:$port" --events "$EVENTS" --batch "$BATCH" \
        --concurrency "$CONCURRENCY" --json 2>"$work/$name.loadgen.log" | tail -n 1 >"$work/$name.json"
    after=$(cpu_ticks "$pid")
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    ticks=$((after - before))
    python3 - "$name" "$work/$name.json" "$ticks" "$(getconf CLK_TCK)" <<'PY'
import json, sys
name, path, ticks, hz = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
r = json.load(open(path))
cpu_us = ticks / hz * 1e6 / max(r["accepted"], 1)
print(f"{name:<9} {r['events_per_sec']:>10,.0f} events/s   {r['accepted']:,} of {r['events']:,} accepted in "
      f"{r['seconds']:.2f} s   server CPU {cpu_us:.2f} us/event")
PY
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "ingest: events=$EVENTS batch=$BATCH concurrency=$CONCURRENCY $(nproc) cores, $(date -u +%FT%TZ)"
for store in "${stores[@]}"; do
    case $store in
        memory) run_one memory memory ;;
        sqlite) run_one sqlite "sqlite:$work/sqlite/raceway.db" ;;
        postgres)
            # The throwaway cluster lives as long as this inner run.
            scripts/with-postgres.sh bash -c "$(declare -f free_port cpu_ticks run_one); \
                BIN='$BIN' EVENTS=$EVENTS BATCH=$BATCH CONCURRENCY=$CONCURRENCY work='$work'; \
                run_one postgres \"\$RACEWAY_TEST_POSTGRES_URL\"" ;;
        *) echo "unknown store: $store" >&2; exit 2 ;;
    esac
done
