#!/usr/bin/env bash
# Start or stop a throwaway PostgreSQL cluster on a loopback port for tests.
#   scripts/pg.sh start DIR PORT   -> prints the database URL on stdout
#   scripts/pg.sh stop DIR
# Installs Debian's postgresql package when the server binaries are missing
# (needs root, as on CI). As root the server runs as the `postgres` user.
set -euo pipefail
cmd=${1:?start|stop}; dir=${2:?data dir}; port=${3:-55432}

find_bin() {
  local b
  b=$(ls /usr/lib/postgresql/*/bin/"$1" 2>/dev/null | sort -V | tail -n1 || true)
  [ -n "$b" ] && echo "$b"
}

as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

case "$cmd" in
start)
  if [ -z "$(find_bin initdb)" ]; then
    if [ "$(id -u)" = 0 ]; then
      echo "installing postgresql from Debian packages..." >&2
      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) >&2
    else
      echo "error: PostgreSQL server binaries not found; install Debian's postgresql package" >&2
      exit 1
    fi
  fi
  initdb=$(find_bin initdb); pg_ctl=$(find_bin pg_ctl)
  mkdir -p "$dir"
  if [ "$(id -u)" = 0 ]; then chown postgres:postgres "$dir"; fi
  chmod 700 "$dir"
  if [ ! -f "$dir/PG_VERSION" ]; then
    as_pg "$initdb" -D "$dir" -A trust -U metis >/dev/null
  fi
  as_pg "$pg_ctl" -D "$dir" -l "$dir/server.log" -w \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" start >/dev/null
  echo "postgresql+psycopg://metis@127.0.0.1:$port/postgres"
  ;;
stop)
  pg_ctl=$(find_bin pg_ctl)
  [ -f "$dir/postmaster.pid" ] && as_pg "$pg_ctl" -D "$dir" -m fast -w stop >/dev/null || true
  ;;
*) echo "usage: $0 start|stop DIR [PORT]" >&2; exit 2 ;;
esac
