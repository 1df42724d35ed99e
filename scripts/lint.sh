#!/usr/bin/env bash
# ruff (lint + format check) on src and tests, mypy --strict on src.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
"$PY" -m ruff check src tests bench
"$PY" -m ruff format --check src tests bench
"$PY" -m mypy src
