#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the tests, on a unix socket in a temporary folder.
#
#   .ci/postgres.sh start      prints the folder on line 1 and the connection URL on line 2
#   .ci/postgres.sh stop DIR   stops that cluster and removes its folder
#
# Installs the server with apt-get when no initdb is found (as root only). initdb refuses
# to run as root, so as root the server runs as the `postgres` system user (created as
# `langroute-pg` when there is none).
set -euo pipefail

find_bin() {
    local name=$1 dir
    if command -v "$name" >/dev/null 2>&1; then command -v "$name"; return 0; fi
    for dir in /usr/lib/postgresql/*/bin /usr/local/pgsql/bin; do
        if [ -x "$dir/$name" ]; then echo "$dir/$name"; return 0; fi
    done
    return 1
}

as_server_user() {  # run "$@" as the unprivileged server user (or as ourselves if not root)
    if [ "$(id -u)" -ne 0 ]; then "$@"; return; fi
    setpriv --reuid="$PG_USER" --regid="$(id -g "$PG_USER")" --init-groups -- "$@"
}

start() {
    if ! find_bin initdb >/dev/null; then
        if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
            echo "postgres.sh: installing postgresql with apt-get" >&2
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >&2 \
                || { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >&2; }
        fi
    fi
    local initdb pg_ctl
    initdb=$(find_bin initdb) || { echo "postgres.sh: no initdb found and cannot install postgresql" >&2; exit 1; }
    pg_ctl=$(find_bin pg_ctl) || { echo "postgres.sh: no pg_ctl found" >&2; exit 1; }
    PG_USER=$(id -un)
    if [ "$(id -u)" -eq 0 ]; then
        if id postgres >/dev/null 2>&1; then PG_USER=postgres; else
            id langroute-pg >/dev/null 2>&1 || useradd --system --no-create-home langroute-pg
            PG_USER=langroute-pg
        fi
    fi
    local dir
    dir=$(mktemp -d "${TMPDIR:-/tmp}/langroute-pg.XXXXXX")
    chmod 755 "$dir"
    [ "$(id -u)" -eq 0 ] && chown "$PG_USER" "$dir"
    as_server_user "$initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --no-sync >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log" >&2; exit 1; }
    as_server_user "$pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-k $dir -c listen_addresses='' -c fsync=off -c max_connections=200" start >/dev/null \
        || { cat "$dir/server.log" >&2; exit 1; }
    echo "$dir"
    echo "postgresql://postgres@/postgres?host=$dir"
}

stop() {
    local dir=${1:?usage: postgres.sh stop DIR}
    local pg_ctl
    pg_ctl=$(find_bin pg_ctl) || true
    if [ -n "$pg_ctl" ] && [ -f "$dir/data/postmaster.pid" ]; then
        local owner
        owner=$(stat -c %U "$dir/data")
        if [ "$(id -u)" -eq 0 ]; then
            setpriv --reuid="$owner" --regid="$(id -g "$owner")" --init-groups -- \
                "$pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null || true
        else
            "$pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null || true
        fi
    fi
    rm -rf "$dir"
}

case "${1:-}" in
    start) start ;;
    stop) shift; stop "$@" ;;
    *) echo "usage: $0 start | stop DIR" >&2; exit 2 ;;
esac
