#!/usr/bin/env bash
# Install Metis into .venv and run `metis demo`: the simulator, seeded teams,
# caps, traffic, plugin push and provider sync, served on http://127.0.0.1:8080
# until Ctrl-C. Extra arguments go to `metis demo` (e.g. `--port 0`, `--keep`);
# METIS_HOME / METIS_DATABASE_URL are honoured when set (else a temp home).
#   make demo                      # or: scripts/demo.sh --port 9000
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
exec metis demo "$@"
