#!/usr/bin/env bash
# Install Metis (the runtime only, not the dev tools) into .venv and run `metis
# demo`: the simulator, seeded teams, caps, traffic, plugin push and provider
# sync, served on http://127.0.0.1:8080 until Ctrl-C. Extra arguments go to
# `metis demo` (e.g. `--port 0`, `--keep`); METIS_HOME / METIS_DATABASE_URL
# are honoured when set (else a temp home).
#   make demo                      # or: scripts/demo.sh --port 9000
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$(date +%s)
METIS_EXTRAS="" source scripts/venv.sh
echo "Metis installed in .venv ($(( $(date +%s) - t0 )) s); starting the demo..."
exec metis demo "$@"
