#!/usr/bin/env bash
# Start a throwaway PostgreSQL server for the `postgres`-marked tests.
#
# Idempotent: installs the Debian server packages only when no initdb is found, then creates a
# fresh cluster in a temporary folder owned by the postgres user, starts it on a free loopback
# port, creates a database and prints the line to export:
#
#   eval "$(infra/postgres/start-test-server.sh)"
#   pytest -m postgres tests/storage
#
# Stop it with: pg_ctl -D "$QMROCT_TEST_PG_DIR" stop (the script prints that variable too).
# The server runs as the postgres user because PostgreSQL refuses to run as root.
set -euo pipefail

DB_NAME="${QMROCT_TEST_PG_DB:-qmroct_test}"

find_bindir() {
    local d
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [[ -x "$d/initdb" && -x "$d/pg_ctl" ]]; then
            echo "$d"
            return 0
        fi
    done
    return 1
}

BINDIR="$(find_bindir || true)"

if [[ "${1:-}" == "--stop" ]]; then
    # Stop the server an earlier call started (its data folder is in QMROCT_TEST_PG_DIR).
    [[ -n "${QMROCT_TEST_PG_DIR:-}" && -n "$BINDIR" ]] || exit 0
    if [[ "$(id -u)" == "0" ]]; then
        runuser -u postgres -- "$BINDIR/pg_ctl" -D "$QMROCT_TEST_PG_DIR" -m fast stop >&2
    else
        "$BINDIR/pg_ctl" -D "$QMROCT_TEST_PG_DIR" -m fast stop >&2
    fi
    exit 0
fi
if [[ -z "$BINDIR" ]]; then
    echo "installing PostgreSQL from Debian" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq postgresql >&2
    BINDIR="$(find_bindir)"
fi

if [[ "$(id -u)" == "0" ]]; then
    id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql postgres
    RUN_AS=(runuser -u postgres --)
    OWNER=postgres
else
    RUN_AS=()
    OWNER="$(id -un)"
fi

# A free loopback port: bind port 0 and read what the kernel chose.
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"

DATA_ROOT="$(mktemp -d -t qmroct-pg-XXXXXX)"
chown "$OWNER" "$DATA_ROOT"
chmod 700 "$DATA_ROOT"
DATA="$DATA_ROOT/data"

"${RUN_AS[@]}" "$BINDIR/initdb" -D "$DATA" -U postgres --auth=trust --encoding=UTF8 \
    --no-instructions >"$DATA_ROOT/initdb.log" 2>&1
"${RUN_AS[@]}" "$BINDIR/pg_ctl" -D "$DATA" -l "$DATA_ROOT/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $PORT -k $DATA_ROOT -c max_connections=200 -c fsync=off" \
    start >&2
"${RUN_AS[@]}" "$BINDIR/createdb" -h 127.0.0.1 -p "$PORT" -U postgres "$DB_NAME"

echo "export QMROCT_TEST_PG_DSN=postgresql://postgres@127.0.0.1:$PORT/$DB_NAME"
echo "export QMROCT_TEST_PG_DIR=$DATA"
