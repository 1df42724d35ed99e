#!/usr/bin/env bash
# Install Metis with its dev tools into .venv and run the test suite twice:
# once on SQLite and once on a throwaway PostgreSQL server started here.
#   scripts/test.sh [pytest args...]
#   METIS_TEST_BACKENDS=sqlite scripts/test.sh    # one backend only
# Exits non-zero if either run fails or collects no tests.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh

backends=${METIS_TEST_BACKENDS:-"sqlite postgresql"}
# A separate venv with hermes-agent for the real-Hermes plugin test (skips without it).
export METIS_HERMES_PYTHON=${METIS_HERMES_PYTHON:-$(scripts/hermes-venv.sh)}
# A separate venv with the FinOps Foundation's focus-validator (pins numpy<2; pyarrow needs 2).
export METIS_FOCUS_VALIDATOR=${METIS_FOCUS_VALIDATOR:-$(scripts/focus-venv.sh)}
# The real agent CLIs (Claude Code, Codex) for tests/clients; without them those tests fail.
scripts/clients.sh >&2 || echo "warning: scripts/clients.sh failed; the client tests will fail" >&2
status=0
pgdir=""
cleanup() { [ -n "$pgdir" ] && scripts/pg.sh stop "$pgdir" || true; [ -n "$pgdir" ] && rm -rf "$pgdir"; }
trap cleanup EXIT

for backend in $backends; do
  echo "=== tests on $backend ==="
  if [ "$backend" = postgresql ]; then
    pgdir=$(mktemp -d /tmp/metis-pg.XXXXXX); chmod 755 "$pgdir"
    port=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    url=$(scripts/pg.sh start "$pgdir/data" "$port")
    METIS_TEST_DATABASE_URL="$url" "$PY" -m pytest "$@" || status=1
  else
    env -u METIS_TEST_DATABASE_URL "$PY" -m pytest "$@" || status=1
  fi
done
exit $status
