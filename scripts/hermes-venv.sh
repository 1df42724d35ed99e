#!/usr/bin/env bash
# Make .hermes-venv: a venv of its own with hermes-agent, for the real-Hermes plugin test
# (tests/integrations/test_hermes_plugin.py). Its dependencies are not Metis's, so it is
# kept apart from .venv. Prints the venv's python; prints nothing (and exits 0) when
# hermes-agent cannot be installed, in which case that test skips and says why.
set -uo pipefail
cd "$(dirname "$0")/.."
V=${METIS_HERMES_VENV:-.hermes-venv}
HERMES_VERSION=${METIS_HERMES_VERSION:-0.19.0}
if ! "$V/bin/python" -c "import hermes_cli.plugins, run_agent" >/dev/null 2>&1; then
  if ! { python3 -m venv "$V" >&2 &&
         "$V/bin/pip" install -q --disable-pip-version-check "hermes-agent==$HERMES_VERSION" >&2; }; then
    echo "warning: could not install hermes-agent==$HERMES_VERSION; the real-Hermes test will skip" >&2
    exit 0
  fi
fi
echo "$PWD/$V/bin/python"
