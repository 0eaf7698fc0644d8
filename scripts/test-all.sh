#!/usr/bin/env bash
# Runs every test of the repository: Rust workspace (fmt, clippy, tests incl. Postgres), the three SDKs, the
# cross-SDK interop test and the four-language demo. Installs what it needs (npm ci, pip in venvs, go mod download,
# a throwaway PostgreSQL). Exits non-zero if anything fails; prints one line per step and a summary.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
export HOME="${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/raceway/cargo-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export RACEWAY_STATE_DIR="${RACEWAY_STATE_DIR:-$HOME/.cache/raceway}"
mkdir -p "$CARGO_TARGET_DIR" "$RACEWAY_STATE_DIR"

passed=0
failed=0
failures=()
step() {
  local name=$1
  shift
  echo
  echo "=== $name: $*"
  local started=$SECONDS
  if "$@"; then
    echo "=== $name: ok ($((SECONDS - started))s)"
    passed=$((passed + 1))
  else
    echo "=== $name: FAILED ($((SECONDS - started))s)"
    failed=$((failed + 1))
    failures+=("$name")
  fi
}

only=${RACEWAY_TEST_ONLY:-}
want() { [[ -z $only || ",$only," == *",$1,"* ]]; }

want rust && step "rust-fmt" cargo fmt --all -- --check
want rust && step "rust-clippy" cargo clippy --workspace --all-targets --locked -- -D warnings
want rust && step "rust-tests" scripts/with-postgres.sh cargo test --workspace --locked
want rust && step "rust-doc" env RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked
want typescript && step "sdk-typescript" sdks/typescript/scripts/ci.sh
want python && step "sdk-python" sdks/python/scripts/ci.sh
want go && step "sdk-go" sdks/go/scripts/ci.sh
want interop && step "cross-sdk-interop" sdks/interop/run.sh
want demo && step "demo-distributed" examples/distributed/test.sh

echo
echo "steps: $passed passed, $failed failed"
if ((failed)); then
  echo "failed steps: ${failures[*]}"
  exit 1
fi
