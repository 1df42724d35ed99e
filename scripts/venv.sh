# Sourced by the scripts: make .venv with Metis and its dev extra installed.
# Re-installs only when pyproject.toml changed since the last install.
set -euo pipefail
VENV=${METIS_VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
PY="$VENV/bin/python"
stamp="$VENV/.metis-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  "$PY" -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null
  "$PY" -m pip install -q --disable-pip-version-check -e '.[dev]'
  touch "$stamp"
fi
export PATH="$PWD/$VENV/bin:$PATH"
