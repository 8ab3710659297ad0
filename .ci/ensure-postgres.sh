#!/usr/bin/env bash
# Make sure the PostgreSQL the test suite uses answers at 127.0.0.1:5432 as user `postgres`
# without a password (tests/conftest.py: HOTLINE_TEST_PG). A no-op when it already does.
# Otherwise: start the installed cluster (pg_ctlcluster / service), or install Debian's
# `postgresql` package first, and trust local TCP connections of the user postgres.
# Never stops or reconfigures a server that already answers.
set -euo pipefail

HOST=127.0.0.1
PORT="${ENSURE_POSTGRES_PORT:-5432}"

answers() {
    # A real login, not just an open port: the suite needs `psql -U postgres` to work.
    command -v psql >/dev/null 2>&1 &&
        psql -h "$HOST" -p "$PORT" -U postgres -d postgres -Atqc 'select 1' >/dev/null 2>&1
}

port_open() {
    (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null
}

if answers; then
    echo "ensure-postgres: PostgreSQL answers at $HOST:$PORT"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "ensure-postgres: PostgreSQL does not answer at $HOST:$PORT as user postgres; run as root to set it up" >&2
    exit 1
fi

if ! command -v pg_lsclusters >/dev/null 2>&1 || [ -z "$(pg_lsclusters -h 2>/dev/null)" ]; then
    echo "ensure-postgres: installing Debian's postgresql"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q postgresql postgresql-client
fi

# The newest cluster on our port (Debian creates <version>/main at install time).
read -r version cluster < <(pg_lsclusters -h | awk -v p="$PORT" '$3 == p {print $1, $2}' | sort -V | tail -1) || true
if [ -z "${version:-}" ]; then
    echo "ensure-postgres: no cluster on port $PORT (pg_lsclusters: $(pg_lsclusters -h | tr '\n' ';'))" >&2
    exit 1
fi
hba="/etc/postgresql/$version/$cluster/pg_hba.conf"

# Trust the user postgres over loopback TCP (the suite makes and drops its own databases).
if [ -f "$hba" ] && ! grep -q '^host[[:space:]]\+all[[:space:]]\+postgres[[:space:]]\+127.0.0.1/32[[:space:]]\+trust' "$hba"; then
    echo "ensure-postgres: trusting postgres@127.0.0.1 in $hba"
    sed -i '1i host    all    postgres    127.0.0.1/32    trust' "$hba"
    if port_open; then
        pg_ctlcluster "$version" "$cluster" reload  # re-reads pg_hba.conf; connections stay
    fi
fi
if ! port_open; then
    echo "ensure-postgres: starting cluster $version/$cluster"
    pg_ctlcluster "$version" "$cluster" start || service postgresql start
fi

for _ in $(seq 1 60); do
    if answers; then
        echo "ensure-postgres: PostgreSQL $version/$cluster answers at $HOST:$PORT"
        exit 0
    fi
    sleep 0.5
done
echo "ensure-postgres: PostgreSQL $version/$cluster does not answer at $HOST:$PORT as user postgres (see $hba)" >&2
exit 1
