#!/usr/bin/env bash
# Make .focus-venv: a venv of its own with the FinOps Foundation's focus-validator, for
# tests/analytics/test_focus.py (it validates `metis export focus --version 1.0`).
# focus-validator 1.0.0 (the FOCUS 1.0 rules) pins numpy<2 through its pandas/pandera
# pins and breaks with multimethod 2, while pyarrow (Metis's Parquet writer) needs
# numpy>=2, so it is kept apart from .venv. Prints the path of the focus-validator
# executable; exits non-zero (the test then fails, saying why) when it cannot be installed.
set -uo pipefail
cd "$(dirname "$0")/.."
V=${METIS_FOCUS_VENV:-.focus-venv}
if ! "$V/bin/python" -c "import focus_validator.main, multimethod" >/dev/null 2>&1; then
  if ! { python3 -m venv "$V" >&2 &&
         "$V/bin/pip" install -q --disable-pip-version-check \
           "focus-validator==1.0.0" "multimethod<2" >&2; }; then
    echo "error: could not install focus-validator==1.0.0 into $V" >&2
    exit 1
  fi
fi
echo "$PWD/$V/bin/focus-validator"
