#!/usr/bin/env bash
# Raceway Python SDK CI: venv, editable install, mypy --strict, pytest, wheel build + fresh-venv import.
set -euo pipefail

SDK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$SDK_DIR"
VENV="${RACEWAY_VENV:-$SDK_DIR/.venv}"
PY="${PYTHON:-python3}"

step() { printf '\n==> %s\n' "$*"; }

step "venv at $VENV"
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -e '.[dev,all]'

step "mypy --strict"
"$VENV/bin/python" -m mypy

step "ruff (pyflakes + bugbear)"
"$VENV/bin/python" -m ruff check src tests interop bench

step "pytest"
set +e
"$VENV/bin/python" -m pytest -q -p no:cacheprovider
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: failing" >&2
  exit 1
fi
if [ "$rc" -ne 0 ]; then
  echo "pytest failed (exit $rc)" >&2
  exit "$rc"
fi

step "wheel build + install into a fresh venv"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
"$VENV/bin/python" -m build --wheel --no-isolation --outdir "$WORK/dist" . >"$WORK/build.log" 2>&1 || { cat "$WORK/build.log"; exit 1; }
WHEEL="$(ls "$WORK"/dist/raceway-*.whl)"
echo "built $(basename "$WHEEL")"
"$PY" -m venv "$WORK/venv"
"$WORK/venv/bin/python" -m pip install -q "$WHEEL"
(cd "$WORK" && "$WORK/venv/bin/python" - <<'PY'
import importlib.resources, raceway
from raceway import propagation as wire
assert importlib.resources.files("raceway").joinpath("py.typed").is_file(), "py.typed missing"
p = wire.ClockPayload("4bf92f35-77b3-4da6-a3ce-929d0e0e4736", "00f067aa0ba902b7", None, "s", "i", (("s#i", 1),))
assert wire.decode_clock(wire.encode_clock(p)).payload == p
sdk = raceway.Raceway()
print("wheel import ok:", raceway.__version__, raceway.__file__)
PY
)

step "all checks passed"
