#!/usr/bin/env bash
# Runs a command with a throwaway Postgres cluster:
#   scripts/with-postgres.sh cargo test -p raceway-backend
# Finds initdb/pg_ctl (PATH or /usr/lib/postgresql/*/bin), creates a cluster in a temp dir on a free port
# (unix socket in the temp dir too, listen_addresses=127.0.0.1), creates database `raceway`, exports
# RACEWAY_TEST_POSTGRES_URL, runs "$@", and always stops and deletes the cluster.
# As root (initdb refuses root) the cluster runs as the `postgres` user, created if missing.
set -euo pipefail

if [ "$#" -eq 0 ]; then
    echo "usage: $0 COMMAND [ARGS...]" >&2
    exit 2
fi

find_bin() {
    local name=$1
    if command -v "$name" >/dev/null 2>&1; then
        command -v "$name"
        return 0
    fi
    local c
    for c in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [ -x "$c/$name" ]; then
            echo "$c/$name"
            return 0
        fi
    done
    return 1
}

INITDB=$(find_bin initdb) || { echo "with-postgres: initdb not found (install postgresql)" >&2; exit 1; }
PG_CTL=$(find_bin pg_ctl) || { echo "with-postgres: pg_ctl not found (install postgresql)" >&2; exit 1; }
PG_BIN=$(dirname "$(readlink -f "$PG_CTL")")
PSQL=$(find_bin psql || echo "$PG_BIN/psql")
CREATEDB="$PG_BIN/createdb"
[ -x "$CREATEDB" ] || CREATEDB=$(find_bin createdb)

free_port() {
    python3 - <<'PY' 2>/dev/null || echo $((20000 + RANDOM % 20000))
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
PY
}

TMP=$(mktemp -d "${TMPDIR:-/tmp}/raceway-pg.XXXXXX")
PORT=$(free_port)
DATA="$TMP/data"
LOG="$TMP/postgres.log"

RUN_AS=()
if [ "$(id -u)" -eq 0 ]; then
    PGUSER_OS=postgres
    if ! id "$PGUSER_OS" >/dev/null 2>&1; then
        useradd --system --no-create-home --shell /usr/sbin/nologin "$PGUSER_OS"
    fi
    chown "$PGUSER_OS" "$TMP"
    chmod 700 "$TMP"
    if command -v runuser >/dev/null 2>&1; then
        RUN_AS=(runuser -u "$PGUSER_OS" --)
    else
        RUN_AS=(su -s /bin/sh "$PGUSER_OS" -c)
    fi
fi

as_pg() {
    if [ "${#RUN_AS[@]}" -eq 0 ]; then
        "$@"
    elif [ "${RUN_AS[0]}" = runuser ]; then
        "${RUN_AS[@]}" "$@"
    else
        "${RUN_AS[@]}" "$(printf '%q ' "$@")"
    fi
}

cleanup() {
    local rc=$?
    as_pg "$PG_CTL" -D "$DATA" -m immediate -w stop >/dev/null 2>&1 || true
    rm -rf "$TMP"
    exit $rc
}
trap cleanup EXIT INT TERM

as_pg "$INITDB" -D "$DATA" -U raceway --auth=trust --encoding=UTF8 --no-sync >"$TMP/initdb.log" 2>&1 || {
    cat "$TMP/initdb.log" >&2
    exit 1
}
as_pg "$PG_CTL" -D "$DATA" -l "$LOG" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $PORT -k $TMP -c max_connections=200 ${WITH_POSTGRES_OPTS:-}" \
    start >/dev/null || {
    cat "$LOG" >&2
    exit 1
}
as_pg "$CREATEDB" -h 127.0.0.1 -p "$PORT" -U raceway raceway

export RACEWAY_TEST_POSTGRES_URL="postgres://raceway@127.0.0.1:$PORT/raceway"
echo "with-postgres: $RACEWAY_TEST_POSTGRES_URL (cluster in $TMP)" >&2
set +e
"$@"
rc=$?
set -e
exit $rc
