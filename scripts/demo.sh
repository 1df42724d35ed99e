#!/usr/bin/env bash
# Install Metis into .venv and run the main job on the embedded default
# (SQLite in METIS_HOME, default ~/.metis).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
metis init
metis workspace list
